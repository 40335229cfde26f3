"""Tests for distcore._private.core_worker.locality: ranking nodes by argument bytes."""

from __future__ import annotations

from distcore._private import protocol as p
from distcore._private.core_worker.locality import (
    LOCALITY_MIN_BYTES,
    argument_bytes_by_node,
    leases_follow_locality,
    preferred_nodes,
)
from distcore._private.scheduling.policy import (
    DefaultStrategy,
    NodeAffinityStrategy,
    SpreadStrategy,
)

MB = 1024 * 1024
OWNER = p.Address("127.0.0.1", 1, "w" * 28, "n" * 28)


def _spec(args: list[p.TaskArg], kwargs: dict[str, p.TaskArg] | None = None, **fields) -> p.TaskSpec:
    return p.TaskSpec(
        "t" * 24, "00000001", p.NORMAL_TASK, "f", "fid", args, kwargs or {}, 1, ["r" * 28], OWNER, {"CPU": 1.0},
        **fields,
    )


def _in_store(object_id: str, node: str) -> p.TaskArg:
    return p.TaskArg(object_id=object_id, owner=OWNER, in_plasma_node=node)


SIZES = {"o1": 100 * MB, "o2": 30 * MB, "o3": 40 * MB, "tiny": 200 * 1024, "edge": LOCALITY_MIN_BYTES}


def test_nodes_ranked_by_bytes_of_large_arguments():
    spec = _spec(
        [_in_store("o1", "B"), _in_store("o2", "C"), _in_store("tiny", "D"), p.TaskArg(value=p.SerializedValue(b"x"))],
        {"k": _in_store("o3", "C")},
    )
    assert argument_bytes_by_node(spec, SIZES.__getitem__) == {"B": 100 * MB, "C": 70 * MB}
    assert preferred_nodes(spec, SIZES.__getitem__) == ["B", "C"]


def test_small_unknown_and_inline_arguments_prefer_nothing():
    spec = _spec([_in_store("tiny", "B"), _in_store("gone", "C"), p.TaskArg(object_id="o1", owner=OWNER)])
    assert preferred_nodes(spec, lambda oid: SIZES.get(oid, 0)) == []


def test_an_argument_passed_twice_counts_once_and_ties_go_by_node_id():
    spec = _spec([_in_store("o2", "C"), _in_store("o2", "C"), _in_store("edge", "A"), _in_store("o3", "B")])
    sizes = {"o2": 40 * MB, "o3": 40 * MB, "edge": LOCALITY_MIN_BYTES}
    assert argument_bytes_by_node(spec, sizes.__getitem__) == {"C": 40 * MB, "A": LOCALITY_MIN_BYTES, "B": 40 * MB}
    assert preferred_nodes(spec, sizes.__getitem__) == ["B", "C", "A"]


def test_only_the_default_strategy_sends_the_lease_request_to_the_data():
    assert leases_follow_locality(_spec([], strategy=DefaultStrategy()))
    assert leases_follow_locality(_spec([], strategy=None))
    assert not leases_follow_locality(_spec([], strategy=SpreadStrategy()))
    assert not leases_follow_locality(_spec([], strategy=NodeAffinityStrategy("B", soft=True)))
    assert not leases_follow_locality(_spec([], strategy=None, placement=("pg", 0)))
