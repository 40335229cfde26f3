"""The autoscaling configuration: node types, limits, the idle timeout.

It is read from the cluster YAML of ``distcore up`` (Ray's field names) or
given as a dict to ``Cluster(autoscaling_config=...)``::

    cluster_name: demo
    max_workers: 4                  # all worker types together
    idle_timeout_s: 60              # or idle_timeout_minutes: 1
    provider: {type: local}
    head_node: {resources: {CPU: 0}}
    available_node_types:
      cpu_worker:
        resources: {CPU: 2}
        min_workers: 0
        max_workers: 4
        # cost: 2                   # optional; the cheapest fitting type is launched

:func:`AutoscalingConfig.from_dict` validates it and says which field is
wrong, with its value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IDLE_TIMEOUT_S = 300.0
DEFAULT_MAX_WORKERS = 8
DEFAULT_UPDATE_INTERVAL_S = 1.0
DEFAULT_OBJECT_STORE_MEMORY = 128 * 1024 * 1024

# Where ``request_resources`` keeps the standing request in the control store's key-value store.
REQUEST_KV_NAMESPACE = "autoscaler"
REQUEST_KV_KEY = "resource_request"

# Resources a node type may leave out: the node gets this machine's default.
UNDECLARED_UNLIMITED = ("memory", "object_store_memory")


class AutoscalingConfigError(ValueError):
    """The autoscaling configuration is malformed (the message names the field)."""


@dataclass(frozen=True)
class NodeTypeConfig:
    """One kind of worker node the autoscaler may launch."""

    name: str
    resources: Mapping[str, float]
    min_workers: int = 0
    max_workers: int = DEFAULT_MAX_WORKERS
    cost: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    object_store_memory: int = DEFAULT_OBJECT_STORE_MEMORY

    @property
    def effective_cost(self) -> float:
        """``cost`` when given, else CPU + 10 x GPU + the other custom resources."""
        if self.cost is not None:
            return self.cost
        total = 0.0
        for name, value in self.resources.items():
            if name in UNDECLARED_UNLIMITED:
                continue
            total += 10.0 * value if name == "GPU" else value
        return total

    def capacity(self) -> dict[str, float]:
        """What a fresh node of this type offers; undeclared memory is unlimited."""
        out = dict(self.resources)
        for name in UNDECLARED_UNLIMITED:
            out.setdefault(name, math.inf)
        return out


@dataclass(frozen=True)
class AutoscalingConfig:
    """Everything the decision policy and the autoscaler loop need to know."""

    node_types: Mapping[str, NodeTypeConfig]
    max_workers: int = DEFAULT_MAX_WORKERS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    update_interval_s: float = DEFAULT_UPDATE_INTERVAL_S
    cluster_name: str = "default"
    head_resources: Mapping[str, float] | None = None
    provider: Mapping[str, Any] = field(default_factory=lambda: {"type": "local"})
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoscalingConfig:
        """Validate a config dict (Ray's cluster YAML fields) into a config.

        Example::

            AutoscalingConfig.from_dict({
                "max_workers": 2, "idle_timeout_s": 3,
                "available_node_types": {"cpu": {"resources": {"CPU": 1}, "max_workers": 2}},
            })
        """
        if isinstance(data, AutoscalingConfig):
            return data
        if not isinstance(data, Mapping):
            raise AutoscalingConfigError(f"the autoscaling config must be a mapping, got {type(data).__name__}")
        known = {"cluster_name", "max_workers", "idle_timeout_s", "idle_timeout_minutes", "available_node_types",
                 "head_node_type", "head_node", "provider", "update_interval_s", "dashboard_port", "head_port",
                 "upscaling_speed", "auth", "setup_commands", "file_mounts"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AutoscalingConfigError(
                f"unknown field(s) {', '.join(map(repr, unknown))} in the autoscaling config; known: {', '.join(sorted(known))}"
            )
        types_raw = data.get("available_node_types")
        if not isinstance(types_raw, Mapping) or not types_raw:
            raise AutoscalingConfigError(
                "available_node_types must map node type names to {resources, min_workers, max_workers}, "
                f"got {types_raw!r}"
            )
        head_type = data.get("head_node_type")
        if head_type is not None and head_type not in types_raw:
            raise AutoscalingConfigError(
                f"head_node_type {head_type!r} is not one of available_node_types ({', '.join(types_raw)})"
            )
        max_workers = _int(data.get("max_workers", DEFAULT_MAX_WORKERS), "max_workers")
        node_types = {
            name: _node_type(str(name), spec, max_workers)
            for name, spec in types_raw.items() if name != head_type
        }
        head_resources = None
        if head_type is not None:
            head_resources = _resources(types_raw[head_type].get("resources", {}), f"available_node_types.{head_type}")
        if "head_node" in data:
            head = data["head_node"]
            if not isinstance(head, Mapping):
                raise AutoscalingConfigError(f"head_node must be a mapping like {{resources: {{CPU: 1}}}}, got {head!r}")
            head_resources = _resources(head.get("resources", {}), "head_node")
        if "idle_timeout_s" in data and "idle_timeout_minutes" in data:
            raise AutoscalingConfigError("give idle_timeout_s or idle_timeout_minutes, not both")
        if "idle_timeout_minutes" in data:
            idle = _number(data["idle_timeout_minutes"], "idle_timeout_minutes") * 60.0
        else:
            idle = _number(data.get("idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S), "idle_timeout_s")
        interval = _number(data.get("update_interval_s", DEFAULT_UPDATE_INTERVAL_S), "update_interval_s")
        if interval <= 0:
            raise AutoscalingConfigError(f"update_interval_s must be > 0, got {interval}")
        provider = data.get("provider") or {"type": "local"}
        if not isinstance(provider, Mapping) or provider.get("type", "local") != "local":
            raise AutoscalingConfigError(
                f"provider {provider!r} is not supported here: this build ships the local provider only "
                "(provider: {type: local}); other providers plug in through NodeProvider"
            )
        return cls(
            node_types=node_types, max_workers=max_workers, idle_timeout_s=idle, update_interval_s=interval,
            cluster_name=str(data.get("cluster_name", "default")), head_resources=head_resources,
            provider=dict(provider), raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` reads back into an equal config."""
        out: dict[str, Any] = {
            "cluster_name": self.cluster_name, "max_workers": self.max_workers,
            "idle_timeout_s": self.idle_timeout_s, "update_interval_s": self.update_interval_s,
            "provider": dict(self.provider),
            "available_node_types": {
                t.name: {"resources": dict(t.resources), "min_workers": t.min_workers, "max_workers": t.max_workers,
                         **({"cost": t.cost} if t.cost is not None else {}),
                         **({"labels": dict(t.labels)} if t.labels else {}),
                         "object_store_memory": t.object_store_memory}
                for t in self.node_types.values()
            },
        }
        if self.head_resources is not None:
            out["head_node"] = {"resources": dict(self.head_resources)}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _node_type(name: str, spec: Any, global_max: int) -> NodeTypeConfig:
    where = f"available_node_types.{name}"
    if not isinstance(spec, Mapping):
        raise AutoscalingConfigError(f"{where} must be a mapping with resources/min_workers/max_workers, got {spec!r}")
    unknown = sorted(set(spec) - {"resources", "min_workers", "max_workers", "cost", "labels", "object_store_memory",
                                  "node_config"})
    if unknown:
        raise AutoscalingConfigError(f"unknown field(s) {', '.join(map(repr, unknown))} in {where}")
    resources = _resources(spec.get("resources"), where)
    if not any(v > 0 for k, v in resources.items() if k not in UNDECLARED_UNLIMITED):
        raise AutoscalingConfigError(f"{where}.resources offers nothing to run tasks on: {dict(resources)!r}")
    min_workers = _int(spec.get("min_workers", 0), f"{where}.min_workers")
    max_workers = _int(spec.get("max_workers", global_max), f"{where}.max_workers")
    if min_workers > max_workers:
        raise AutoscalingConfigError(f"{where}: min_workers ({min_workers}) is above max_workers ({max_workers})")
    cost = spec.get("cost")
    if cost is not None:
        cost = _number(cost, f"{where}.cost")
    labels = spec.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise AutoscalingConfigError(f"{where}.labels must map strings to strings, got {labels!r}")
    store = _int(spec.get("object_store_memory", DEFAULT_OBJECT_STORE_MEMORY), f"{where}.object_store_memory")
    return NodeTypeConfig(name, resources, min_workers, max_workers, cost,
                          {str(k): str(v) for k, v in labels.items()}, store)


def _resources(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise AutoscalingConfigError(f"{where}.resources must map resource names to numbers, got {value!r}")
    out = {}
    for name, amount in value.items():
        out[str(name)] = _number(amount, f"{where}.resources.{name}")
    return out


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or math.isnan(value):
        raise AutoscalingConfigError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AutoscalingConfigError(f"{where} must be an integer >= 0, got {value!r}")
    return value
