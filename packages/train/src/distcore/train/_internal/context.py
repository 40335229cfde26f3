"""``TrainContext``: who this worker is in the gang, and where the run lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distcore.train._internal.storage import StorageContext


@dataclass(frozen=True)
class TrainContext:
    """What ``train.get_context()`` returns inside a training function.

    Example::

        ctx = train.get_context()
        if ctx.get_world_rank() == 0:
            print("training on", ctx.get_world_size(), "workers")
    """

    world_rank: int = 0
    local_rank: int = 0
    node_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    experiment_name: str | None = None
    trial_name: str | None = None
    trial_id: str | None = None
    trial_dir: str | None = None
    storage: StorageContext | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    trial_resources: Any = None

    def get_world_rank(self) -> int:
        return self.world_rank

    def get_local_rank(self) -> int:
        return self.local_rank

    def get_node_rank(self) -> int:
        return self.node_rank

    def get_world_size(self) -> int:
        return self.world_size

    def get_local_world_size(self) -> int:
        return self.local_world_size

    def get_experiment_name(self) -> str | None:
        return self.experiment_name

    def get_trial_name(self) -> str | None:
        return self.trial_name

    def get_trial_id(self) -> str | None:
        return self.trial_id

    def get_trial_dir(self) -> str | None:
        return self.trial_dir

    def get_trial_resources(self) -> Any:
        return self.trial_resources

    def get_storage(self) -> StorageContext | None:
        return self.storage

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)
