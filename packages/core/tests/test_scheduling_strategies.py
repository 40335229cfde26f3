"""Tests for distcore.util.scheduling_strategies."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from distcore.util import scheduling_strategies as ss
from distcore.util.scheduling_strategies import (
    DoesNotExist,
    Exists,
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    NotIn,
    PlacementGroupSchedulingStrategy,
)


def test_public_surface() -> None:
    assert sorted(ss.__all__) == sorted(
        [
            "PlacementGroupSchedulingStrategy",
            "NodeAffinitySchedulingStrategy",
            "NodeLabelSchedulingStrategy",
            "In",
            "NotIn",
            "Exists",
            "DoesNotExist",
            "SchedulingStrategyT",
        ]
    )


class _PG:
    def __init__(self, id: str = "pg1", bundle_count: int | None = None) -> None:
        self.id = id
        if bundle_count is not None:
            self.bundle_count = bundle_count


def test_placement_group_strategy_defaults_and_frozen() -> None:
    pg = _PG()
    s = PlacementGroupSchedulingStrategy(pg)
    assert s.placement_group is pg
    assert s.placement_group_bundle_index == -1
    assert s.placement_group_capture_child_tasks is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.placement_group_bundle_index = 2  # type: ignore[misc]
    assert PlacementGroupSchedulingStrategy(pg, 0, True) == PlacementGroupSchedulingStrategy(pg, 0, True)


def test_placement_group_strategy_duck_typed() -> None:
    s = PlacementGroupSchedulingStrategy(SimpleNamespace(id=b"x"), placement_group_bundle_index=3)
    assert s.placement_group_bundle_index == 3
    assert PlacementGroupSchedulingStrategy(None).placement_group is None


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"placement_group": "not-a-pg"}, TypeError, "'not-a-pg'"),
        ({"placement_group": _PG(), "placement_group_bundle_index": -2}, ValueError, "-2"),
        ({"placement_group": _PG(), "placement_group_bundle_index": 1.0}, TypeError, "1.0"),
        ({"placement_group": _PG(), "placement_group_bundle_index": True}, TypeError, "True"),
        ({"placement_group": _PG(bundle_count=2), "placement_group_bundle_index": 2}, ValueError, "2 bundle"),
        ({"placement_group": _PG(), "placement_group_capture_child_tasks": "yes"}, TypeError, "'yes'"),
    ],
)
def test_placement_group_strategy_errors(kwargs: dict, exc: type[Exception], text: str) -> None:
    with pytest.raises(exc, match="PlacementGroupSchedulingStrategy") as info:
        PlacementGroupSchedulingStrategy(**kwargs)
    assert text in str(info.value)


def test_node_affinity() -> None:
    s = NodeAffinitySchedulingStrategy("abc123", soft=True)
    assert (s.node_id, s.soft, s._spill_on_unavailable, s._fail_on_unavailable) == ("abc123", True, False, False)
    s2 = NodeAffinitySchedulingStrategy(node_id="n", soft=False, _spill_on_unavailable=True, _fail_on_unavailable=True)
    assert s2._spill_on_unavailable and s2._fail_on_unavailable
    assert hash(s) == hash(NodeAffinitySchedulingStrategy("abc123", True))


def test_node_affinity_converts_id_objects() -> None:
    class NodeID:
        def hex(self) -> str:
            return "ff00"

    assert NodeAffinitySchedulingStrategy(NodeID(), soft=False).node_id == "ff00"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("", True), "node_id"),
        ((123, True), "node_id"),
        (("n", "yes"), "'soft'"),
        (("n", True, 1), "_spill_on_unavailable"),
        (("n", False, False, None), "_fail_on_unavailable"),
    ],
)
def test_node_affinity_errors(args: tuple, text: str) -> None:
    with pytest.raises(TypeError, match=text):
        NodeAffinitySchedulingStrategy(*args)


def test_node_affinity_soft_is_required() -> None:
    with pytest.raises(TypeError):
        NodeAffinitySchedulingStrategy("n")  # type: ignore[call-arg]


def test_label_operators() -> None:
    assert In("a", "b").values == ("a", "b")
    assert NotIn("x").values == ("x",)
    assert Exists() == Exists()
    assert DoesNotExist() == DoesNotExist()
    assert In("a") != NotIn("a")
    for op in (In, NotIn):
        with pytest.raises(ValueError, match=op.__name__):
            op()
        with pytest.raises(TypeError, match="position 1"):
            op("a", 2)


def test_node_label_strategy() -> None:
    s = NodeLabelSchedulingStrategy({"region": In("us")}, soft={"gpu": Exists()})
    assert s.hard == {"region": In("us")}
    assert s.soft == {"gpu": Exists()}
    only_soft = NodeLabelSchedulingStrategy({}, soft={"ssd": DoesNotExist()})
    assert only_soft.hard == {}
    assert NodeLabelSchedulingStrategy({"a": NotIn("b")}).soft == {}
    # Hashable and equal by value despite holding dicts.
    assert hash(s) == hash(NodeLabelSchedulingStrategy({"region": In("us")}, {"gpu": Exists()}))
    assert len({s, NodeLabelSchedulingStrategy({"region": In("us")}, {"gpu": Exists()})}) == 1


def test_node_label_strategy_copies_input() -> None:
    hard = {"region": In("us")}
    s = NodeLabelSchedulingStrategy(hard)
    hard["zone"] = Exists()
    assert "zone" not in s.hard


@pytest.mark.parametrize(
    ("hard", "soft", "exc", "text"),
    [
        ({}, None, ValueError, "cannot both be empty"),
        (None, {}, ValueError, "cannot both be empty"),
        (["region"], None, TypeError, "'hard'"),
        ({"region": "us"}, None, TypeError, "'us'"),
        ({1: Exists()}, None, TypeError, "1"),
        ({"a": Exists()}, {"b": 3}, TypeError, "'soft'"),
    ],
)
def test_node_label_strategy_errors(hard: object, soft: object, exc: type[Exception], text: str) -> None:
    with pytest.raises(exc) as info:
        NodeLabelSchedulingStrategy(hard, soft)  # type: ignore[arg-type]
    assert text in str(info.value)
