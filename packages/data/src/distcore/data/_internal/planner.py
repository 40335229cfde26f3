"""Logical plan -> physical operators (after the optimizer has run)."""

from __future__ import annotations

import math
from typing import Any

from distcore.data._internal.logical import (
    ActorPoolStrategy,
    AllToAll,
    InputData,
    Limit,
    LogicalOperator,
    MapLike,
    Read,
    Union,
)
from distcore.data._internal.physical import (
    ActorPoolMapOp,
    AllToAllOp,
    Bundle,
    InputDataOp,
    LimitOp,
    MapOp,
    PhysicalOp,
    UnionOp,
)


def default_parallelism(datasource: Any, requested: int, ctx: Any, cpus: float) -> int:
    if requested is not None and requested > 0:
        return int(requested)
    floor = max(2, int(2 * cpus))
    size = None
    try:
        size = datasource.estimate_inmemory_data_size()
    except Exception:  # noqa: BLE001 - an estimate is optional
        size = None
    if not size:
        return floor
    by_size = math.ceil(size / max(1, ctx.target_min_block_size * 16))
    return int(max(floor, min(ctx.read_op_min_num_blocks, by_size)))


def _read_tasks(read: Read, ctx: Any, cpus: float) -> list:
    n = default_parallelism(read.datasource, read.parallelism, ctx, cpus)
    return list(read.datasource.get_read_tasks(n))


class Planner:
    def __init__(self, ctx: Any, cpus: float) -> None:
        self.ctx = ctx
        self.cpus = cpus
        self.ops: list[PhysicalOp] = []
        self._memo: dict[int, PhysicalOp] = {}

    def plan(self, dag: LogicalOperator) -> list[PhysicalOp]:
        self._visit(dag)
        return self.ops

    def _visit(self, op: LogicalOperator) -> PhysicalOp:
        if id(op) in self._memo:
            return self._memo[id(op)]
        deps = [self._visit(i) for i in op.inputs]
        phys = self._make(op, deps)
        self._memo[id(op)] = phys
        self.ops.append(phys)
        return phys

    def _make(self, op: LogicalOperator, deps: list[PhysicalOp]) -> PhysicalOp:
        ctx = self.ctx
        if isinstance(op, InputData):
            return InputDataOp(op.name, [Bundle(r, m) for r, m in op.bundles])
        if isinstance(op, Read):
            read = MapOp(op.name, [], [], cpus=1.0, gpus=0.0, remote_args={}, max_concurrency=None,
                         min_rows_per_bundle=None, min_bundle_bytes=0, max_block_bytes=ctx.target_max_block_size,
                         read_tasks=_read_tasks(op, ctx, self.cpus))
            read.default_resources = True
            return read
        if isinstance(op, MapLike):
            cpus, gpus = op.resources()
            read_tasks = _read_tasks(op.read, ctx, self.cpus) if op.read is not None else None
            common = dict(cpus=cpus, gpus=gpus, remote_args=op.remote_args,
                          min_rows_per_bundle=op.min_rows_per_bundle,
                          min_bundle_bytes=0 if op.min_rows_per_bundle else 0,
                          max_block_bytes=ctx.target_max_block_size, read_tasks=read_tasks)
            if isinstance(op.compute, ActorPoolStrategy):
                c = op.compute
                max_size = c.max_size if c.max_size is not None else max(c.min_size, int(self.cpus // max(cpus, 1e-9))
                                                                         if cpus else c.min_size)
                return ActorPoolMapOp(op.name, deps, op.stages, max_concurrency=None,
                                      min_size=c.min_size, max_size=max_size,
                                      max_in_flight=c.max_tasks_in_flight_per_actor or ctx.max_tasks_in_flight_per_actor,
                                      scale_ratio=ctx.actor_pool_scale_up_queue_ratio,
                                      start_timeout_s=ctx.wait_for_actors_timeout_s, **common)
            task_op = MapOp(op.name, deps, op.stages, max_concurrency=op.compute.size, **common)
            task_op.default_resources = op.num_cpus is None and op.num_gpus is None and not op.remote_args
            return task_op
        if isinstance(op, Limit):
            return LimitOp(op.name, deps, op.n)
        if isinstance(op, Union):
            return UnionOp(op.name, deps)
        if isinstance(op, AllToAll):
            if op.exchange is not None:
                from distcore.data._internal.physical_exchange import StreamingExchangeOp
                from distcore.data._internal.physical_sort import SortSpec, StreamingSortOp

                cls = StreamingSortOp if isinstance(op.exchange, SortSpec) else StreamingExchangeOp
                return cls(op.name, deps, op.exchange, budget=ctx.effective_memory_budget(),
                                           cpus=self.cpus)
            return AllToAllOp(op.name, deps, op.fn)
        raise TypeError(f"no physical operator for {type(op).__name__}")
