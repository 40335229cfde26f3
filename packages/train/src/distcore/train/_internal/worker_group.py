"""The gang: a placement group, one worker actor per bundle, ranks by node."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import distcore
from distcore.train._internal.config import ScalingConfig
from distcore.train._internal.errors import InsufficientResourcesError
from distcore.train._internal.worker import TrainWorker
from distcore.util import PlacementGroupSchedulingStrategy, placement_group, remove_placement_group

PLACEMENT_TIMEOUT_ENV = "DISTCORE_TRAIN_PLACEMENT_TIMEOUT_S"
START_TIMEOUT_S = 120.0


@dataclass
class WorkerInfo:
    """A placed worker: where it runs and its ranks."""

    actor: Any
    node_id: str
    node_ip: str
    pid: int
    gpu_ids: list[str]
    hostname: str = ""
    world_rank: int = 0
    local_rank: int = 0
    node_rank: int = 0
    local_world_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def check_fits(scaling: ScalingConfig) -> None:
    """Fail fast when the gang can never fit the cluster's alive nodes, naming the shortfall."""
    nodes = [n["Resources"] for n in distcore.nodes() if n["Alive"]]
    bundles = scaling.bundles
    total: dict[str, float] = {}
    for res in nodes:
        for k, v in res.items():
            total[k] = total.get(k, 0.0) + v
    need = scaling.total_resources
    short = {k: v - total.get(k, 0.0) for k, v in need.items() if v > total.get(k, 0.0) + 1e-9}
    if short:
        raise InsufficientResourcesError(
            f"the training gang can never fit this cluster: it needs {_fmt(need)} "
            f"({scaling.num_workers} workers x {_fmt(scaling.worker_resources)}"
            + (f" + trainer {_fmt(scaling.trainer_resources_dict)}" if scaling.trainer_resources_dict else "")
            + f") but the cluster has {_fmt({k: total.get(k, 0.0) for k in need})}: short by {_fmt(short)}. "
            "Lower ScalingConfig.num_workers or resources_per_worker, or add nodes.")
    for bundle in bundles:
        if not any(all(res.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items()) for res in nodes):
            raise InsufficientResourcesError(
                f"no node can hold one worker's resources {_fmt(bundle)}; the largest node has "
                f"{_fmt(max(nodes, key=lambda r: r.get('CPU', 0)) if nodes else {})}.")
    if scaling.placement_strategy == "STRICT_PACK" and not any(
            all(res.get(k, 0.0) + 1e-9 >= v for k, v in need.items()) for res in nodes):
        raise InsufficientResourcesError(
            f"placement_strategy='STRICT_PACK' needs one node with {_fmt(need)}; no node has that much. "
            "Use placement_strategy='PACK' or fewer workers.")
    if scaling.placement_strategy == "STRICT_SPREAD" and len(bundles) > len(nodes):
        raise InsufficientResourcesError(
            f"placement_strategy='STRICT_SPREAD' needs {len(bundles)} nodes; the cluster has {len(nodes)}.")


def _fmt(res: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"


class WorkerGroup:
    """Places the gang and runs calls on it. ``workers`` are in world-rank order."""

    def __init__(self, scaling: ScalingConfig, env: dict[str, str] | None = None,
                 preload: tuple[str, ...] = ()) -> None:
        self.scaling = scaling
        self.workers: list[WorkerInfo] = []
        self.pg: Any = None
        self._preload = tuple(preload)
        self._start(env or {})

    def __len__(self) -> int:
        return len(self.workers)

    def _start(self, env: dict[str, str]) -> None:
        scaling = self.scaling
        check_fits(scaling)
        self.pg = placement_group(scaling.bundles, strategy=scaling.placement_strategy)
        timeout = float(os.environ.get(PLACEMENT_TIMEOUT_ENV, "120"))
        if not self.pg.wait(timeout_seconds=timeout):
            avail = distcore.available_resources()
            self.shutdown()
            raise InsufficientResourcesError(
                f"the training gang ({scaling.num_workers} workers x {_fmt(scaling.worker_resources)}) "
                f"was not placed within {timeout:g} s: available now {_fmt(avail)}; other jobs hold the rest. "
                f"Set {PLACEMENT_TIMEOUT_ENV} to wait longer.")
        res = scaling.worker_resources
        offset = 1 if scaling.trainer_resources_dict else 0
        options: dict[str, Any] = {
            "num_cpus": res.get("CPU", 0), "num_gpus": res.get("GPU", 0), "max_concurrency": 4,
            "resources": {k: v for k, v in res.items() if k not in ("CPU", "GPU", "memory")} or None,
        }
        if "memory" in res:
            options["memory"] = res["memory"]
        # One intra-op thread per reserved CPU (as torchrun and Ray do), unless the environment says otherwise.
        default_env = {"OMP_NUM_THREADS": str(max(1, int(res.get("CPU", 1))))}
        cls = distcore.remote(TrainWorker)
        actors = [
            cls.options(**options, scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=i + offset)).remote(env, self._preload, default_env)
            for i in range(scaling.num_workers)
        ]
        metas = distcore.get([a.metadata.remote() for a in actors], timeout=START_TIMEOUT_S)
        infos = [WorkerInfo(actor=a, **m) for a, m in zip(actors, metas, strict=True)]
        self.workers = assign_ranks(infos)

    def execute(self, fn: Any, *args: Any, timeout: float | None = START_TIMEOUT_S, **kwargs: Any) -> list[Any]:
        refs = [w.actor.execute.remote(fn, *args, **kwargs) for w in self.workers]
        return distcore.get(refs, timeout=timeout)

    def execute_single(self, rank: int, fn: Any, *args: Any, timeout: float | None = START_TIMEOUT_S,
                       **kwargs: Any) -> Any:
        return distcore.get(self.workers[rank].actor.execute.remote(fn, *args, **kwargs), timeout=timeout)

    def execute_each(self, fn: Any, per_rank_args: list[tuple[Any, ...]],
                     timeout: float | None = START_TIMEOUT_S) -> list[Any]:
        """Run ``fn(*per_rank_args[rank])`` on every worker at once."""
        refs = [w.actor.execute.remote(fn, *args) for w, args in zip(self.workers, per_rank_args, strict=True)]
        return distcore.get(refs, timeout=timeout)

    def shutdown(self) -> None:
        for w in self.workers:
            try:
                distcore.kill(w.actor)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
        self.workers = []
        if self.pg is not None:
            try:
                remove_placement_group(self.pg)
            except Exception:  # noqa: BLE001
                pass
            self.pg = None


def assign_ranks(infos: list[WorkerInfo]) -> list[WorkerInfo]:
    """World ranks grouped by node (nodes in order of first appearance), local ranks within a node."""
    node_order: list[str] = []
    for info in infos:
        if info.node_id not in node_order:
            node_order.append(info.node_id)
    ordered = sorted(infos, key=lambda i: node_order.index(i.node_id))
    counts = {n: sum(1 for i in infos if i.node_id == n) for n in node_order}
    seen: dict[str, int] = {}
    for rank, info in enumerate(ordered):
        info.world_rank = rank
        info.node_rank = node_order.index(info.node_id)
        info.local_rank = seen.get(info.node_id, 0)
        seen[info.node_id] = info.local_rank + 1
        info.local_world_size = counts[info.node_id]
    return ordered


def leave_room_for_data(scaling: ScalingConfig) -> tuple[ScalingConfig, str | None]:
    """With ``datasets=``, keep one CPU of the cluster free for the dataset's read/map tasks.

    Workers whose CPUs the user left at the default (``resources_per_worker``
    without "CPU") reserve less when the gang would otherwise hold every CPU,
    so the data pipeline feeding them cannot starve (2 workers on a 2-CPU
    machine reserve 0.5 CPU each). Returns the config to use and a note, or
    the config unchanged and None.
    """
    if scaling.resources_per_worker and "CPU" in scaling.resources_per_worker:
        return scaling, None
    cluster_cpus = distcore.cluster_resources().get("CPU", 0.0)
    gang_cpus = scaling.total_resources.get("CPU", 0.0)
    if cluster_cpus - gang_cpus >= 1.0:
        return scaling, None
    share = max(0.0, (cluster_cpus - scaling.trainer_resources_dict.get("CPU", 0.0) - 1.0) / scaling.num_workers)
    share = int(share * 100) / 100
    per_worker = dict(scaling.resources_per_worker or {})
    per_worker["CPU"] = share
    adjusted = ScalingConfig(
        num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=per_worker,
        placement_strategy=scaling.placement_strategy, trainer_resources=scaling.trainer_resources,
        accelerator_type=scaling.accelerator_type,
    )
    note = (f"each worker reserves {share:g} CPU instead of 1 so that the dataset's tasks keep one of the "
            f"cluster's {cluster_cpus:g} CPUs (set resources_per_worker={{'CPU': ...}} to choose)")
    return adjusted, note
