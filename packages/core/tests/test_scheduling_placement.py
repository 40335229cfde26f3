"""Unit tests for distcore._private.scheduling.placement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest

from distcore._private.scheduling import placement
from distcore._private.scheduling.placement import (
    VALID_STRATEGIES,
    PlacementResult,
    PlacementStrategy,
    place_bundles,
    validate_bundles,
)
from distcore._private.scheduling.policy import NodeView
from distcore._private.scheduling.resources import ResourceSet

R = ResourceSet


def make_nodes(
    **specs: Mapping[str, float] | tuple[Mapping[str, float], Mapping[str, float]],
) -> dict[str, NodeView]:
    """``a={"CPU": 4}`` is an idle node; ``a=({"CPU": 4}, {"CPU": 1})`` has 1 CPU in use."""
    nodes = {}
    for node_id, spec in specs.items():
        total, used = spec if isinstance(spec, tuple) else (spec, {})
        nodes[node_id] = NodeView(node_id, R(total), R(total) - R(used))
    return nodes


def cpus(*amounts: float) -> list[ResourceSet]:
    return [R({"CPU": a}) for a in amounts]


def placed(result: PlacementResult) -> list[str]:
    assert result.kind == "placed", result.reason
    assert result.assignment is not None
    return result.assignment


# ------------------------------------------------------------------ validation


def test_strategy_is_validated_listing_valid_ones() -> None:
    assert VALID_STRATEGIES == ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
    with pytest.raises(ValueError, match="PACK, SPREAD, STRICT_PACK, STRICT_SPREAD") as info:
        place_bundles(cpus(1), "pack", make_nodes(a={"CPU": 1}))  # type: ignore[arg-type]
    assert "'pack'" in str(info.value)


def test_empty_bundle_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one bundle"):
        place_bundles([], "PACK", make_nodes(a={"CPU": 1}))


@pytest.mark.parametrize("bundle", [{}, {"CPU": 0}, R()])
def test_empty_bundle_is_rejected(bundle: dict[str, float] | ResourceSet) -> None:
    with pytest.raises(ValueError, match=r"bundle 1 .* is empty.*> 0"):
        place_bundles([{"CPU": 1}, bundle], "SPREAD", make_nodes(a={"CPU": 1}))


def test_bad_bundle_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="'CPU'"):
        validate_bundles([{"CPU": -1}], "PACK")
    with pytest.raises(ValueError, match=r"bundle 1: invalid GPU request 1\.5"):
        validate_bundles([{"GPU": 1}, {"GPU": 1.5}], "PACK")


def test_plain_dict_bundles_are_accepted() -> None:
    assert validate_bundles([{"CPU": 1, "GPU": 0}], "PACK") == [R({"CPU": 1})]
    result = place_bundles([{"CPU": 1}], "STRICT_PACK", make_nodes(a={"CPU": 1}))
    assert result == PlacementResult("placed", ["a"], "STRICT_PACK: 1 bundle(s) on 1 node(s)")


def test_no_alive_nodes_is_infeasible() -> None:
    nodes = make_nodes(a={"CPU": 4})
    nodes["a"].alive = False
    for strategy in VALID_STRATEGIES:
        result = place_bundles(cpus(1), strategy, nodes)
        assert result == PlacementResult("infeasible", None, "no alive nodes to place bundles on")
    assert place_bundles(cpus(1), "PACK", {}).kind == "infeasible"


# ---------------------------------------------------------------- one node


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK"])
def test_one_node_holds_several_bundles(strategy: PlacementStrategy) -> None:
    assert placed(place_bundles(cpus(1, 2), strategy, make_nodes(a={"CPU": 4}))) == ["a", "a"]


def test_one_node_strict_spread() -> None:
    nodes = make_nodes(a={"CPU": 4})
    assert placed(place_bundles(cpus(1), "STRICT_SPREAD", nodes)) == ["a"]
    result = place_bundles(cpus(1, 1), "STRICT_SPREAD", nodes)
    assert result == PlacementResult(
        "infeasible",
        None,
        "STRICT_SPREAD needs 2 distinct nodes for 2 bundles but only 1 alive node(s) exist",
    )


@pytest.mark.parametrize("strategy", VALID_STRATEGIES)
def test_one_node_bundle_larger_than_node_is_infeasible(strategy: PlacementStrategy) -> None:
    result = place_bundles(
        [R({"CPU": 1}), R({"CPU": 1, "GPU": 1})], strategy, make_nodes(a={"CPU": 4})
    )
    assert result.kind == "infeasible"
    assert result.assignment is None
    assert (
        result.reason == "bundle 1 {CPU: 1, GPU: 1} fits on no alive node (node totals: a {CPU: 4})"
    )


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK"])
def test_one_busy_node_means_wait(strategy: PlacementStrategy) -> None:
    result = place_bundles(cpus(1, 1), strategy, make_nodes(a=({"CPU": 4}, {"CPU": 3})))
    assert result.kind == "wait"
    assert result.assignment is None
    assert "fit the cluster's totals but not what is available now (a {CPU: 1})" in result.reason


def test_one_node_fractional_bundles_add_up_exactly() -> None:
    nodes = make_nodes(a={"CPU": 1})
    assert placed(place_bundles(cpus(*[0.1] * 10), "STRICT_PACK", nodes)) == ["a"] * 10
    assert place_bundles(cpus(*[0.1] * 11), "STRICT_PACK", nodes).kind == "infeasible"


# ---------------------------------------------------------------- two nodes


def test_two_nodes_pack_uses_one_node_when_it_can() -> None:
    nodes = make_nodes(a={"CPU": 4}, b={"CPU": 4})
    assert placed(place_bundles(cpus(2, 2), "PACK", nodes)) == ["a", "a"]
    result = place_bundles(cpus(3, 3), "PACK", nodes)
    assert sorted(placed(result)) == ["a", "b"]
    assert result.reason == "PACK: 2 bundle(s) on 2 node(s)"


def test_two_nodes_pack_prefers_the_tightest_fit() -> None:
    nodes = make_nodes(a={"CPU": 4}, b=({"CPU": 4}, {"CPU": 2}))
    assert placed(place_bundles(cpus(1, 1), "PACK", nodes)) == ["b", "b"]
    assert placed(place_bundles(cpus(1, 1), "STRICT_PACK", nodes)) == ["b", "b"]


def test_two_nodes_strict_pack_wait_and_infeasible() -> None:
    nodes = make_nodes(a=({"CPU": 4}, {"CPU": 1}), b=({"CPU": 4}, {"CPU": 1}))
    result = place_bundles(cpus(2, 2), "STRICT_PACK", nodes)
    assert result.kind == "wait"
    assert place_bundles(cpus(2, 2), "PACK", nodes).kind == "placed"  # PACK may span
    result = place_bundles(cpus(3, 3), "STRICT_PACK", nodes)
    assert result == PlacementResult(
        "infeasible",
        None,
        "STRICT_PACK needs {CPU: 6} on a single node; no alive node has that "
        "(node totals: a {CPU: 4}, b {CPU: 4})",
    )


def test_two_nodes_spread_and_strict_spread() -> None:
    nodes = make_nodes(a={"CPU": 4}, b={"CPU": 4})
    assert sorted(placed(place_bundles(cpus(1, 1), "SPREAD", nodes))) == ["a", "b"]
    assert sorted(placed(place_bundles(cpus(1, 1), "STRICT_SPREAD", nodes))) == ["a", "b"]
    assert Counter(placed(place_bundles(cpus(1, 1, 1), "SPREAD", nodes))) == {"a": 2, "b": 1}
    assert place_bundles(cpus(1, 1, 1), "STRICT_SPREAD", nodes).kind == "infeasible"


def test_two_nodes_accounts_for_bundles_placed_in_the_same_call() -> None:
    nodes = make_nodes(a=({"CPU": 4}, {"CPU": 2}), b={"CPU": 4})
    assert Counter(placed(place_bundles(cpus(2, 2, 2), "PACK", nodes))) == {"a": 1, "b": 2}
    assert place_bundles(cpus(2, 2, 2, 2), "PACK", nodes).kind == "wait"
    result = place_bundles(cpus(3, 3), "STRICT_SPREAD", nodes)
    assert result.kind == "wait"


def test_two_nodes_strict_spread_without_a_matching_is_infeasible() -> None:
    nodes = make_nodes(a={"CPU": 4, "GPU": 2}, b={"CPU": 4})
    result = place_bundles([R({"GPU": 1}), R({"GPU": 1})], "STRICT_SPREAD", nodes)
    assert result.kind == "infeasible"
    assert result.reason.startswith("STRICT_SPREAD: the 2 bundles cannot each get their own node")
    assert "{GPU: 1}" in result.reason


def test_two_nodes_spread_skips_dead_nodes() -> None:
    nodes = make_nodes(a={"CPU": 4}, b={"CPU": 4})
    nodes["b"].alive = False
    assert placed(place_bundles(cpus(1, 1), "SPREAD", nodes)) == ["a", "a"]
    assert "only 1 alive node" in place_bundles(cpus(1, 1), "STRICT_SPREAD", nodes).reason


# -------------------------------------------------------------- three nodes


def test_three_nodes_pack_uses_as_few_nodes_as_possible() -> None:
    nodes = make_nodes(a={"CPU": 2}, b={"CPU": 2}, c={"CPU": 2})
    assert len(set(placed(place_bundles(cpus(1, 1, 1, 1), "PACK", nodes)))) == 2
    assert len(set(placed(place_bundles(cpus(2, 2, 2), "PACK", nodes)))) == 3
    result = place_bundles(cpus(1, 1, 1, 1, 1, 1, 1), "PACK", nodes)
    assert result == PlacementResult(
        "infeasible", None, "the bundles need {CPU: 7} in total but the alive nodes have {CPU: 6}"
    )


def test_three_nodes_pack_backtracks_where_first_fit_fails() -> None:
    nodes = make_nodes(a={"CPU": 3}, b={"CPU": 3}, c={"CPU": 1})
    assignment = placed(place_bundles(cpus(1, 1, 2, 2, 1), "PACK", nodes))
    load: Counter[str] = Counter()
    for amount, node in zip([1, 1, 2, 2, 1], assignment, strict=True):
        load[node] += amount
    assert all(load[n] <= nodes[n].total["CPU"] for n in load)


def test_three_nodes_strict_pack() -> None:
    nodes = make_nodes(a={"CPU": 3}, b={"CPU": 8}, c=({"CPU": 8}, {"CPU": 6}))
    assert placed(place_bundles(cpus(1, 1), "STRICT_PACK", nodes)) == ["c", "c"]
    assert placed(place_bundles(cpus(3, 3), "STRICT_PACK", nodes)) == ["b", "b"]
    assert place_bundles(cpus(3, 3, 3), "STRICT_PACK", nodes).kind == "infeasible"
    nodes = make_nodes(a={"CPU": 2}, b=({"CPU": 8}, {"CPU": 4}), c=({"CPU": 8}, {"CPU": 6}))
    assert place_bundles(cpus(3, 3), "STRICT_PACK", nodes).kind == "wait"


def test_three_nodes_spread_reuses_only_when_it_must() -> None:
    nodes = make_nodes(a={"CPU": 4}, b={"CPU": 4}, c={"CPU": 4})
    assert sorted(placed(place_bundles(cpus(1, 1, 1), "SPREAD", nodes))) == ["a", "b", "c"]
    assert sorted(Counter(placed(place_bundles(cpus(1, 1, 1, 1), "SPREAD", nodes))).values()) == [
        1,
        1,
        2,
    ]
    nodes = make_nodes(a={"CPU": 4}, b={"CPU": 4}, c=({"CPU": 4}, {"CPU": 4}))
    assert sorted(placed(place_bundles(cpus(1, 1, 1), "SPREAD", nodes))) == ["a", "a", "b"]


def test_three_nodes_strict_spread_needs_a_matching() -> None:
    nodes = make_nodes(a={"CPU": 4, "GPU": 1}, b={"CPU": 4}, c={"CPU": 4, "GPU": 1})
    bundles = [R({"CPU": 1}), R({"GPU": 1}), R({"GPU": 1})]
    assignment = placed(place_bundles(bundles, "STRICT_SPREAD", nodes))
    assert len(set(assignment)) == 3
    assert assignment[0] == "b"
    assert sorted(assignment[1:]) == ["a", "c"]
    assert sorted(placed(place_bundles(bundles, "SPREAD", nodes))) == ["a", "b", "c"]


def test_three_nodes_strict_spread_wait_infeasible_and_dead() -> None:
    nodes = make_nodes(a={"CPU": 2}, b={"CPU": 2}, c=({"CPU": 2}, {"CPU": 2}))
    assert place_bundles(cpus(1, 1, 1), "STRICT_SPREAD", nodes).kind == "wait"
    assert place_bundles(cpus(1, 1, 1, 1), "STRICT_SPREAD", nodes).kind == "infeasible"
    nodes["c"].alive = False
    result = place_bundles(cpus(1, 1, 1), "STRICT_SPREAD", nodes)
    assert result.kind == "infeasible"
    assert "only 2 alive node(s)" in result.reason


def test_infeasible_bin_packing_is_proved_quickly_on_identical_nodes() -> None:
    nodes = make_nodes(**{f"n{i:02}": {"CPU": 3} for i in range(10)})
    strategies: tuple[PlacementStrategy, ...] = ("PACK", "SPREAD")
    for strategy in strategies:
        result = place_bundles(cpus(*[2] * 15), strategy, nodes)
        assert result.kind == "infeasible"
        assert result.reason.startswith(f"{strategy}: bundles ")
        assert "cannot be fitted onto the alive nodes even when idle" in result.reason


def test_search_budget_exhaustion_answers_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "_MAX_STEPS", 0)
    nodes = make_nodes(a={"CPU": 2}, b={"CPU": 2})
    result = place_bundles(cpus(2, 2), "PACK", nodes)
    assert result.kind == "wait"


def test_large_group_does_not_hit_the_recursion_limit() -> None:
    nodes = make_nodes(**{f"n{i:04}": {"CPU": 4} for i in range(300)})
    assignment = placed(place_bundles(cpus(*[1] * 1100), "PACK", nodes))
    assert len(set(assignment)) == 275
    assignment = placed(place_bundles(cpus(*[1] * 1100), "SPREAD", nodes))
    assert sorted(set(Counter(assignment).values())) == [3, 4]


def test_strict_spread_finds_long_augmenting_paths() -> None:
    # Bundle i fits nodes i and i+1 and goes to node i first; the last bundle
    # fits only node 0, so placing it shifts every other bundle one node along
    # (an augmenting path longer than Python's recursion limit).
    m = 1050
    nodes = make_nodes(
        **{f"n{j:04}": {f"k{j - 1}": 1, f"k{j}": 1, "last": float(j == 0)} for j in range(m + 1)}
    )
    bundles = [R({f"k{i}": 1}) for i in range(m)] + [R({"last": 1})]
    assignment = placed(place_bundles(bundles, "STRICT_SPREAD", nodes))
    assert assignment == [f"n{i + 1:04}" for i in range(m)] + ["n0000"]
