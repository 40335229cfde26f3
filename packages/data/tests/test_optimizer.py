"""Each optimizer rule on its own, on hand-built logical plans, plus the listing of rules."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

import distcore.data as dd
from distcore.data._internal import optimizer as opt
from distcore.data._internal.logical import (
    ActorPoolStrategy,
    Limit,
    LogicalPlan,
    MapLike,
    Read,
)
from distcore.data._internal.transforms import (
    FilterStage,
    MapBatchesStage,
    MapRowsStage,
    ProjectStage,
    RandomSampleStage,
    SliceStage,
)


class FakeSource:
    """A datasource that records which pushdowns it received."""

    supports_projection = supports_filter = supports_limit = True

    def __init__(self, columns=None, filters=(), limit=None):
        self.columns, self.filters, self.limit = columns, tuple(filters), limit

    def get_name(self):
        return "Fake"

    def with_columns(self, columns):
        return FakeSource(columns, self.filters, self.limit)

    def with_filter(self, expr):
        return FakeSource(self.columns, self.filters + (expr,), self.limit)

    def with_limit(self, n):
        return FakeSource(self.columns, self.filters, n)


def _map(inp, stage, **kw):
    return MapLike(stage.name, inp, [stage], **kw)


def _ident(b):
    return b


def test_rules_are_listed_in_order() -> None:
    assert opt.rules() == ["drop_noops", "push_projection", "push_filter", "push_limit", "fuse_maps", "fuse_read",
                           "fuse_limit_into_map"]
    assert all(r.doc for r in opt.RULES)


def test_drop_noops() -> None:
    read = Read(FakeSource())
    noop = _map(read, ProjectStage(rename={}))
    assert opt.RULES[0].apply(noop) is read
    sample = _map(read, RandomSampleStage(1.0, None))
    assert opt.drop_noops(sample) is read
    nested = opt.RULES[0].apply(Limit(Limit(read, 5), 3))
    assert isinstance(nested, Limit) and nested.n == 3 and nested.input is read
    kept = _map(read, ProjectStage(drop=["x"]))
    assert opt.drop_noops(kept) is kept


def test_push_limit_below_row_preserving_maps_and_into_read() -> None:
    read = Read(FakeSource())
    plan = Limit(_map(read, MapRowsStage(_ident)), 10)
    out = opt.RULES[3].apply(plan)
    assert isinstance(out, MapLike)
    assert isinstance(out.input, Limit) and out.input.n == 10
    assert isinstance(out.input.input, Read) and out.input.input.datasource.limit == 10
    # map_batches can change the row count: the limit stays above it
    mb = _map(read, MapBatchesStage(_ident, batch_size=None, batch_format="numpy"))
    out = opt.RULES[3].apply(Limit(mb, 10))
    assert isinstance(out, Limit) and out.input is mb


def test_push_projection_into_read() -> None:
    read = Read(FakeSource())
    out = opt.RULES[1].apply(_map(read, ProjectStage(select=["a", "b"])))
    assert isinstance(out, Read) and out.datasource.columns == ["a", "b"]
    # a rename is not a pure projection
    renamed = _map(read, ProjectStage(rename={"a": "b"}))
    assert opt.RULES[1].apply(renamed) is renamed


def test_push_filter_into_read_only_for_expressions() -> None:
    read = Read(FakeSource())
    expr = pc.field("x") > 3
    out = opt.RULES[2].apply(_map(read, FilterStage(expr=expr)))
    assert isinstance(out, Read) and len(out.datasource.filters) == 1
    udf = _map(read, FilterStage(fn=lambda r: True))
    assert opt.RULES[2].apply(udf) is udf


def test_no_pushdown_when_source_cannot() -> None:
    class Plain(FakeSource):
        supports_projection = supports_filter = supports_limit = False

    read = Read(Plain())
    proj = _map(read, ProjectStage(select=["a"]))
    assert opt.push_projection(proj) is proj
    lim = Limit(read, 3)
    assert opt.push_limit(lim) is lim


def test_fuse_maps_and_read() -> None:
    read = Read(FakeSource())
    a = _map(read, MapRowsStage(_ident, name="Map(a)"))
    b = _map(a, MapBatchesStage(_ident, batch_size=None, batch_format="numpy", name="MapBatches(b)"))
    fused = opt.RULES[4].apply(b)
    assert isinstance(fused, MapLike) and len(fused.stages) == 2 and fused.input is read
    with_read = opt.RULES[5].apply(fused)
    assert with_read.read is read and not with_read.inputs
    assert with_read.name == "ReadFake->Map(a)->MapBatches(b)"


def test_fusion_respects_resources_and_actor_pools() -> None:
    read = Read(FakeSource())
    a = _map(read, MapRowsStage(_ident), num_cpus=2)
    b = _map(a, MapRowsStage(_ident))
    assert opt.fuse_maps(b) is b  # different CPU needs stay apart
    class_stage = MapBatchesStage(type("C", (), {"__call__": lambda s, b: b}), batch_size=None,
                                  batch_format="numpy")
    pool = _map(_map(read, MapRowsStage(_ident)), class_stage, compute=ActorPoolStrategy(size=2))
    fused = opt.fuse_maps(pool)
    assert fused.is_actor and len(fused.stages) == 2  # the task map runs inside the pool
    after_pool = _map(pool, MapRowsStage(_ident))
    assert opt.fuse_maps(after_pool) is after_pool  # a UDF task after an actor pool stays a task
    light = opt.fuse_maps(_map(pool, ProjectStage(select=["a"])))
    assert light.is_actor and isinstance(light.stages[-1], ProjectStage)  # a projection runs in the pool


def test_fuse_limit_into_map() -> None:
    read = Read(FakeSource())
    mb = _map(read, MapBatchesStage(_ident, batch_size=None, batch_format="numpy"))
    out = opt.RULES[6].apply(Limit(mb, 4))
    assert isinstance(out, Limit) and isinstance(out.input.stages[-1], SliceStage)


def test_optimize_end_to_end_plan_and_explain() -> None:
    read = Read(FakeSource())
    plan = LogicalPlan(Limit(_map(_map(read, ProjectStage(select=["a"])), MapRowsStage(_ident)), 5))
    out = opt.optimize(plan).dag
    # projection went into the read, the limit below the row-preserving map and into the read too
    assert isinstance(out, MapLike) and isinstance(out.input, Limit) and out.input.n == 5
    src = out.input.input
    assert isinstance(src, Read) and src.datasource.columns == ["a"] and src.datasource.limit == 5
    assert opt.optimize(plan, enabled=False).dag is plan.dag


@pytest.mark.usefixtures("shared_cluster")
def test_optimized_and_unoptimized_results_match() -> None:
    ds = dd.range(100, override_num_blocks=4).map(lambda r: {"id": r["id"] * 3}).filter(
        expr=pc.field("id") > 30).limit(10)
    fast = ds.take_all()
    ctx = dd.DataContext.get_current()
    ctx.enable_optimizer = False
    try:
        slow = ds.take_all()
    finally:
        ctx.enable_optimizer = True
    assert fast == slow == [{"id": 3 * i} for i in range(11, 21)]
    assert "Optimized plan" in ds.explain()
