"""What the controller is asked to run: plain records, pickled into its checkpoint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from distcore.serve._internal.config import DeploymentConfig


@dataclass
class DeploymentSpec:
    name: str
    serialized_def: bytes
    init_args: tuple
    init_kwargs: dict
    is_function: bool
    config: DeploymentConfig
    # the deployment's code version: config.version, or a digest of its code and arguments
    code_version: str = ""
    import_path: str | None = None

    def __post_init__(self) -> None:
        if not self.code_version:
            self.code_version = self.config.version or digest(self.serialized_def, self.init_args, self.init_kwargs)

    def replica_version(self) -> str:
        """Replicas must restart when this changes (code, args, actor options, max_ongoing)."""
        c = self.config
        return digest(self.code_version, sorted(c.ray_actor_options.items(), key=str), c.max_ongoing_requests)


@dataclass
class AppSpec:
    name: str
    route_prefix: str | None
    ingress: str
    deployments: list[DeploymentSpec] = field(default_factory=list)
    import_path: str | None = None


def digest(*parts: Any) -> str:
    import cloudpickle

    h = hashlib.sha1()
    for part in parts:
        try:
            h.update(part if isinstance(part, bytes) else cloudpickle.dumps(part))
        except Exception:
            h.update(repr(part).encode())
    return h.hexdigest()[:12]
