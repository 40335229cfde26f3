"""Optimizer rules over the logical plan; each is a named, separately testable rewrite.

``RULES`` lists them in the order :func:`optimize` applies them; ``rules()`` returns their names.
Each rule is a function ``LogicalOperator -> LogicalOperator`` applied bottom-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distcore.data._internal.logical import Limit, LogicalOperator, LogicalPlan, MapLike, Read
from distcore.data._internal.transforms import (
    FilterStage,
    MapBatchesStage,
    ProjectStage,
    RandomSampleStage,
    SliceStage,
)


@dataclass(frozen=True)
class Rule:
    name: str
    doc: str
    fn: Callable[[LogicalOperator], LogicalOperator]

    def apply(self, dag: LogicalOperator) -> LogicalOperator:
        return _bottom_up(dag, self.fn)


def _bottom_up(op: LogicalOperator, fn: Callable[[LogicalOperator], LogicalOperator]) -> LogicalOperator:
    new_inputs = [_bottom_up(i, fn) for i in op.inputs]
    if any(a is not b for a, b in zip(new_inputs, op.inputs, strict=True)):
        op = op.with_inputs(new_inputs)
    return fn(op)


def _single_stage(op: LogicalOperator, stage_type: type) -> bool:
    return (isinstance(op, MapLike) and op.read is None and len(op.stages) == 1
            and type(op.stages[0]) is stage_type and not op.is_actor)


# --------------------------------------------------------------------------- drop no-ops


def _is_noop(op: LogicalOperator) -> bool:
    if not isinstance(op, MapLike) or op.read is not None or len(op.stages) != 1 or op.is_actor:
        return False
    stage = op.stages[0]
    if isinstance(stage, ProjectStage):
        return stage.select is None and not stage.drop and not stage.rename
    if isinstance(stage, RandomSampleStage):
        return stage.fraction >= 1.0
    if isinstance(stage, FilterStage):
        return stage.fn is None and stage.expr is None
    return False


def drop_noops(op: LogicalOperator) -> LogicalOperator:
    """Remove operators that cannot change their input (empty rename/drop, sample of 1.0, Limit of Limit)."""
    if _is_noop(op):
        return op.input
    if isinstance(op, Limit) and isinstance(op.input, Limit):
        return Limit(op.input.input, min(op.n, op.input.n))
    return op


# --------------------------------------------------------------------------- limit pushdown


def push_limit(op: LogicalOperator) -> LogicalOperator:
    """Move a Limit below row-preserving maps (map, select/rename, add_column) and into reads."""
    if not isinstance(op, Limit):
        return op
    child = op.input
    if isinstance(child, MapLike) and child.read is None and not child.is_actor and \
            all(s.row_preserving for s in child.stages):
        return child.with_inputs([push_limit(Limit(child.input, op.n))])
    if isinstance(child, Read) and getattr(child.datasource, "supports_limit", False):
        pushed = Read(child.datasource.with_limit(op.n), child.parallelism, child.name)
        return Limit(pushed, op.n)
    if isinstance(child, Limit):
        return Limit(child.input, min(op.n, child.n))
    return op


# --------------------------------------------------------------------------- projection / filter pushdown


def push_projection(op: LogicalOperator) -> LogicalOperator:
    """A ``select_columns`` right after a read that supports projection becomes part of the read."""
    if _single_stage(op, ProjectStage) and isinstance(op.input, Read):
        stage: ProjectStage = op.stages[0]
        read = op.input
        if stage.select is not None and not stage.drop and not stage.rename and \
                getattr(read.datasource, "supports_projection", False):
            return Read(read.datasource.with_columns(list(stage.select)), read.parallelism, read.name)
    return op


def push_filter(op: LogicalOperator) -> LogicalOperator:
    """A ``filter(expr=...)`` right after a read that supports filters becomes part of the read."""
    if _single_stage(op, FilterStage) and isinstance(op.input, Read):
        stage: FilterStage = op.stages[0]
        read = op.input
        if stage.expr is not None and getattr(read.datasource, "supports_filter", False):
            return Read(read.datasource.with_filter(stage.expr), read.parallelism, read.name)
    return op


# --------------------------------------------------------------------------- fusion


_LIGHT_STAGES = (ProjectStage, RandomSampleStage, SliceStage)


def _light(op: MapLike) -> bool:
    """Cheap column/row selection with default resources (runs wherever its input is)."""
    return (not op.is_actor and not op.remote_args and op.num_cpus is None and op.num_gpus is None
            and op.compute.size is None and all(isinstance(s, _LIGHT_STAGES) or
                                                 (isinstance(s, FilterStage) and s.expr is not None)
                                                 for s in op.stages))


def _compatible(up: MapLike, down: MapLike) -> bool:
    if up.is_actor:
        # select/drop/rename and expression filters after a pool run in the pool's actors
        return _light(down)
    if up.remote_args or down.remote_args:
        return up.remote_args == down.remote_args and up.resources() == down.resources() and not down.is_actor
    if down.is_actor:
        # A task-pool map before an actor-pool map runs inside the pool's actors (so reads on a
        # small cluster never wait for CPUs the pool holds).
        up_cpu, up_gpu = up.resources()
        down_cpu, down_gpu = down.resources()
        return up_gpu <= down_gpu and (up_cpu <= down_cpu or up_gpu > 0 or down_gpu > 0) and \
            up.compute.size is None
    return up.resources() == down.resources() and up.compute == down.compute


def fuse_maps(op: LogicalOperator) -> LogicalOperator:
    """Fuse consecutive compatible map-like operators (and a task map into a following actor pool)."""
    if not isinstance(op, MapLike) or not op.inputs:
        return op
    up = op.input
    if isinstance(up, MapLike) and _compatible(up, op):
        keep = up if up.is_actor else op  # the operator whose compute and resources the fused one uses
        fused = MapLike(f"{up.name}->{op.name}", up.inputs[0] if up.inputs else None, up.stages + op.stages,
                        compute=keep.compute, num_cpus=keep.num_cpus, num_gpus=keep.num_gpus,
                        remote_args=keep.remote_args, kind="fused", read=up.read,
                        min_rows_per_bundle=op.min_rows_per_bundle or up.min_rows_per_bundle)
        return fused
    return op


def fuse_read(op: LogicalOperator) -> LogicalOperator:
    """Fuse a Read into the map that consumes it: read tasks run the map's stages on what they read."""
    if isinstance(op, MapLike) and op.inputs and isinstance(op.input, Read) and op.read is None:
        if op.remote_args and not op.is_actor:
            return op
        return MapLike(f"{op.input.name}->{op.name}", None, op.stages, compute=op.compute,
                       num_cpus=op.num_cpus, num_gpus=op.num_gpus, remote_args=op.remote_args,
                       kind="fused", read=op.input, min_rows_per_bundle=op.min_rows_per_bundle)
    return op


def fuse_limit_into_map(op: LogicalOperator) -> LogicalOperator:
    """A Limit right after a task map also truncates inside each task (less data leaves the task)."""
    if isinstance(op, Limit) and isinstance(op.input, MapLike) and not op.input.is_actor:
        child = op.input
        if not (child.stages and isinstance(child.stages[-1], SliceStage)):
            stages = child.stages + [SliceStage(op.n)]
            new_child = MapLike(child.name, child.inputs[0] if child.inputs else None, stages,
                                compute=child.compute, num_cpus=child.num_cpus, num_gpus=child.num_gpus,
                                remote_args=child.remote_args, kind=child.kind, read=child.read,
                                min_rows_per_bundle=child.min_rows_per_bundle)
            return Limit(new_child, op.n)
    return op


RULES: list[Rule] = [
    Rule("drop_noops", drop_noops.__doc__ or "", drop_noops),
    Rule("push_projection", push_projection.__doc__ or "", push_projection),
    Rule("push_filter", push_filter.__doc__ or "", push_filter),
    Rule("push_limit", push_limit.__doc__ or "", push_limit),
    Rule("fuse_maps", fuse_maps.__doc__ or "", fuse_maps),
    Rule("fuse_read", fuse_read.__doc__ or "", fuse_read),
    Rule("fuse_limit_into_map", fuse_limit_into_map.__doc__ or "", fuse_limit_into_map),
]


def rules() -> list[str]:
    """The names of the optimizer rules, in the order they run."""
    return [r.name for r in RULES]


def optimize(plan: LogicalPlan, enabled: bool = True, fusion: bool = True) -> LogicalPlan:
    dag = plan.dag
    if not enabled:
        return LogicalPlan(dag)
    for rule in RULES:
        if not fusion and rule.name.startswith("fuse"):
            continue
        dag = rule.apply(dag)
    return LogicalPlan(dag)


__all__ = ["RULES", "Rule", "optimize", "rules", "MapBatchesStage"]
