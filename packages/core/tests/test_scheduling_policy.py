"""Unit tests for distcore._private.scheduling.policy."""

from __future__ import annotations

import pytest

from distcore._private.scheduling.policy import (
    Decision,
    DefaultStrategy,
    NodeAffinityStrategy,
    NodeView,
    PlacementGroupStrategy,
    SchedulingPolicy,
    SpreadStrategy,
    infeasible_reason,
)
from distcore._private.scheduling.resources import ResourceSet

R = ResourceSet
CPU1 = R({"CPU": 1})
DEFAULT = DefaultStrategy()
SPREAD = SpreadStrategy()


def view(
    node_id: str, total: dict[str, float], used: dict[str, float] | None = None, alive: bool = True
) -> NodeView:
    t = R(total)
    return NodeView(node_id, t, t - R(used or {}), alive=alive)


def cluster(*views: NodeView) -> dict[str, NodeView]:
    return {v.node_id: v for v in views}


# ----------------------------------------------------------------- NodeView


def test_node_view_helpers() -> None:
    v = view("a", {"CPU": 4}, {"CPU": 3})
    assert v.labels == {}
    assert v.can_run(CPU1)
    assert not v.can_run(R({"CPU": 2}))
    assert v.is_feasible(R({"CPU": 4}))
    assert v.utilization() == 0.75
    dead = view("b", {"CPU": 4}, alive=False)
    assert not dead.can_run(CPU1)
    assert not dead.is_feasible(CPU1)


# ------------------------------------------------------------------ DEFAULT


def test_default_prefers_nodes_holding_arguments() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}), view("c", {"CPU": 4}))
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "a", preferred_nodes=["x", "c", "b"])
    assert d == Decision("run", "c", "node c holds the task's arguments")


def test_default_skips_preferred_nodes_that_cannot_run_now() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}, {"CPU": 4}))
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "a", preferred_nodes=["b"])
    assert (d.kind, d.node_id) == ("run", "a")
    assert "local" in d.reason


def test_default_runs_locally_when_possible_even_if_busy() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}, {"CPU": 3}))
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "b")
    assert (d.kind, d.node_id) == ("run", "b")


def test_default_packs_under_threshold_in_node_id_order() -> None:
    nodes = cluster(
        view("local", {"CPU": 1}, {"CPU": 1}),
        view("c", {"CPU": 4}),
        view("b", {"CPU": 4}, {"CPU": 1}),
        view("a", {"CPU": 4}, {"CPU": 2}),  # at 50%: not under the threshold
    )
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "local")
    assert d == Decision("run", "b", "node b is under 50% used")


def test_default_spreads_to_least_utilized_above_threshold() -> None:
    nodes = cluster(
        view("local", {"CPU": 1}, {"CPU": 1}),
        view("a", {"CPU": 4}, {"CPU": 3}),
        view("b", {"CPU": 10}, {"CPU": 6}),
        view("c", {"CPU": 10}, {"CPU": 6}),
    )
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "local")
    assert (d.kind, d.node_id) == ("run", "b")
    assert "least utilized" in d.reason


def test_default_threshold_is_configurable() -> None:
    nodes = cluster(
        view("local", {"CPU": 1}, {"CPU": 1}),
        view("a", {"CPU": 4}, {"CPU": 3}),
        view("b", {"CPU": 4}, {"CPU": 1}),
    )
    assert (
        SchedulingPolicy(spread_threshold=0.8).decide(CPU1, nodes, DEFAULT, "local").node_id == "a"
    )
    assert (
        SchedulingPolicy(spread_threshold=0.0).decide(CPU1, nodes, DEFAULT, "local").node_id == "b"
    )
    with pytest.raises(ValueError, match="spread_threshold"):
        SchedulingPolicy(spread_threshold=1.5)


def test_default_utilization_uses_the_most_used_resource() -> None:
    nodes = cluster(
        view("local", {"CPU": 1}, {"CPU": 1}),
        view("a", {"CPU": 8, "memory": 100}, {"memory": 90}),
        view("b", {"CPU": 8, "memory": 100}, {"CPU": 2}),
    )
    assert SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "local").node_id == "b"


def test_default_waits_on_the_local_node_when_it_is_feasible() -> None:
    nodes = cluster(view("a", {"CPU": 2}, {"CPU": 2}), view("b", {"CPU": 2}, {"CPU": 2}))
    d = SchedulingPolicy().decide(CPU1, nodes, DEFAULT, "b")
    assert d == Decision("wait", "b", "waiting on node b for {CPU: 1} to free up")


def test_default_waits_on_least_utilized_feasible_node() -> None:
    nodes = cluster(
        view("local", {"CPU": 8}),
        view("a", {"CPU": 2, "GPU": 1}, {"GPU": 1}),
        view("b", {"CPU": 4, "GPU": 2}, {"CPU": 1, "GPU": 1.5}),
    )
    d = SchedulingPolicy().decide(R({"GPU": 1}), nodes, DEFAULT, "local")
    assert d == Decision("wait", "b", "waiting on node b for {GPU: 0.5} to free up")


def test_default_infeasible_names_the_missing_resource() -> None:
    nodes = cluster(view("a", {"CPU": 1}), view("b", {"CPU": 1}))
    d = SchedulingPolicy().decide(R({"CPU": 1, "GPU": 1}), nodes, DEFAULT, "a")
    assert d == Decision("infeasible", None, "no node has {GPU: 1}; cluster total is {CPU: 2}")


def test_default_infeasible_when_no_single_node_has_everything() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 1, "GPU": 1}))
    d = SchedulingPolicy().decide(R({"CPU": 4, "GPU": 1}), nodes, DEFAULT, "a")
    assert d.kind == "infeasible"
    assert (
        d.reason == "no single node has all of {CPU: 4, GPU: 1}; cluster total is {CPU: 5, GPU: 1}"
    )


def test_dead_nodes_are_never_chosen() -> None:
    nodes = cluster(
        view("a", {"CPU": 8}, alive=False),
        view("b", {"CPU": 8, "GPU": 1}, alive=False),
        view("c", {"CPU": 1}, {"CPU": 1}),
    )
    policy = SchedulingPolicy()
    d = policy.decide(CPU1, nodes, DEFAULT, "a", preferred_nodes=["a"])
    assert (d.kind, d.node_id) == ("wait", "c")
    d = policy.decide(R({"GPU": 1}), nodes, DEFAULT, "a")
    assert d == Decision("infeasible", None, "no node has {GPU: 1}; cluster total is {CPU: 1}")
    assert policy.decide(CPU1, nodes, SPREAD, "a").node_id == "c"


def test_empty_cluster_is_infeasible() -> None:
    d = SchedulingPolicy().decide(CPU1, {}, DEFAULT, "a")
    assert d.kind == "infeasible"
    assert "no alive node" in d.reason
    assert infeasible_reason(CPU1, []) == d.reason


def test_zero_resource_request_runs_anywhere_alive() -> None:
    nodes = cluster(view("a", {"CPU": 1}, {"CPU": 1}))
    assert SchedulingPolicy().decide(R(), nodes, DEFAULT, "a") == Decision(
        "run", "a", "the local node can run it now"
    )


# ------------------------------------------------------------------- SPREAD


def test_spread_round_robins_over_nodes_that_can_run() -> None:
    nodes = cluster(view("c", {"CPU": 4}), view("a", {"CPU": 4}), view("b", {"CPU": 4}))
    policy = SchedulingPolicy()
    picks = [policy.decide(CPU1, nodes, SPREAD, "b").node_id for _ in range(7)]
    assert picks == ["a", "b", "c", "a", "b", "c", "a"]


def test_spread_is_deterministic_across_policies() -> None:
    nodes = cluster(*(view(f"n{i}", {"CPU": 2}) for i in range(5)))
    first, second = SchedulingPolicy(), SchedulingPolicy()
    seq1 = [first.decide(CPU1, nodes, SPREAD, "n0").node_id for _ in range(12)]
    seq2 = [second.decide(CPU1, nodes, SPREAD, "n0").node_id for _ in range(12)]
    assert seq1 == seq2
    assert seq1[:5] == ["n0", "n1", "n2", "n3", "n4"]


def test_spread_skips_busy_nodes_and_follows_membership_changes() -> None:
    policy = SchedulingPolicy()
    nodes = cluster(view("a", {"CPU": 1}), view("b", {"CPU": 1}, {"CPU": 1}), view("c", {"CPU": 1}))
    assert [policy.decide(CPU1, nodes, SPREAD, "a").node_id for _ in range(3)] == ["a", "c", "a"]
    nodes["b"] = view("b", {"CPU": 1})
    nodes["d"] = view("d", {"CPU": 1})
    assert [policy.decide(CPU1, nodes, SPREAD, "a").node_id for _ in range(4)] == [
        "b",
        "c",
        "d",
        "a",
    ]


def test_spread_waits_or_reports_infeasible() -> None:
    policy = SchedulingPolicy()
    nodes = cluster(view("a", {"CPU": 1}, {"CPU": 1}), view("b", {"CPU": 2}, {"CPU": 2}))
    d = policy.decide(CPU1, nodes, SPREAD, "a")
    assert (d.kind, d.node_id) == ("wait", "a")
    d = policy.decide(R({"CPU": 2}), nodes, SPREAD, "a")
    assert (d.kind, d.node_id) == ("wait", "b")
    d = policy.decide(R({"CPU": 3}), nodes, SPREAD, "a")
    assert d == Decision("infeasible", None, "no node has {CPU: 3}; cluster total is {CPU: 3}")


# ------------------------------------------------------------- node affinity


def test_hard_affinity_runs_waits_or_fails_on_that_node() -> None:
    nodes = cluster(
        view("a", {"CPU": 4}),
        view("b", {"CPU": 2}, {"CPU": 2}),
        view("dead", {"CPU": 4}, alive=False),
    )
    policy = SchedulingPolicy()
    assert policy.decide(CPU1, nodes, NodeAffinityStrategy("b", soft=False), "a") == Decision(
        "wait", "b", "node affinity: waiting on node b for {CPU: 1}"
    )
    nodes["b"] = view("b", {"CPU": 2})
    assert policy.decide(CPU1, nodes, NodeAffinityStrategy("b", soft=False), "a") == Decision(
        "run", "b", "node affinity to b"
    )
    d = policy.decide(R({"CPU": 3}), nodes, NodeAffinityStrategy("b", soft=False), "a")
    assert d == Decision(
        "infeasible", None, "node affinity: node b can never fit {CPU: 3}; its total is {CPU: 2}"
    )
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("dead", soft=False), "a")
    assert d == Decision("infeasible", None, "node affinity: node dead is dead")
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("ghost", soft=False), "a")
    assert d == Decision("infeasible", None, "node affinity: node ghost is not in the cluster")


def test_soft_affinity_falls_back_to_default() -> None:
    nodes = cluster(
        view("a", {"CPU": 4}),
        view("b", {"CPU": 2}, {"CPU": 2}),
        view("dead", {"CPU": 4}, alive=False),
    )
    policy = SchedulingPolicy()
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("a", soft=True), "b")
    assert (d.kind, d.node_id) == ("run", "a")
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("b", soft=True), "b")
    assert (d.kind, d.node_id) == ("run", "a")
    assert d.reason.startswith("soft affinity node b cannot run it now; ")
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("dead", soft=True), "b")
    assert (d.kind, d.node_id) == ("run", "a")
    assert "dead is dead" in d.reason
    d = policy.decide(CPU1, nodes, NodeAffinityStrategy("ghost", soft=True), "a")
    assert "not in the cluster" in d.reason
    d = policy.decide(R({"GPU": 1}), nodes, NodeAffinityStrategy("a", soft=True), "a")
    assert d.kind == "infeasible"
    assert d.reason.endswith("no node has {GPU: 1}; cluster total is {CPU: 6}")


# ----------------------------------------------------------- placement group


def test_placement_group_bundle_runs_on_its_node() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}, {"CPU": 4}))
    d = SchedulingPolicy().decide(
        CPU1, nodes, PlacementGroupStrategy("pg", 1), "a", bundle_nodes={0: "a", 1: "b"}
    )
    # the node's pool is full, but the bundle's resources are reserved inside it
    assert d == Decision("run", "b", "node b holds a bundle of placement group pg")


def test_placement_group_waits_until_bundles_are_placed_or_rescheduled() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}, alive=False))
    policy = SchedulingPolicy()
    d = policy.decide(CPU1, nodes, PlacementGroupStrategy("pg", 0), "a")
    assert d == Decision("wait", None, "placement group pg: bundle 0 not placed yet")
    d = policy.decide(CPU1, nodes, PlacementGroupStrategy("pg", 0), "a", bundle_nodes={0: "b"})
    assert d.kind == "wait" and d.node_id is None
    assert "dead node" in d.reason
    d = policy.decide(CPU1, nodes, PlacementGroupStrategy("pg"), "a", bundle_nodes={})
    assert d == Decision("wait", None, "placement group pg: its bundles not placed yet")


def test_placement_group_any_bundle_prefers_arguments_then_local() -> None:
    nodes = cluster(view("a", {"CPU": 4}), view("b", {"CPU": 4}), view("c", {"CPU": 4}))
    policy = SchedulingPolicy()
    bundles = {0: "c", 1: "b", 2: "a"}
    strategy = PlacementGroupStrategy("pg", -1)
    assert policy.decide(CPU1, nodes, strategy, "a", bundle_nodes=bundles).node_id == "a"
    assert policy.decide(CPU1, nodes, strategy, "x", bundle_nodes=bundles).node_id == "c"
    assert policy.decide(CPU1, nodes, strategy, "a", ["b"], bundle_nodes=bundles).node_id == "b"


def test_placement_group_request_must_fit_its_bundle() -> None:
    nodes = cluster(view("a", {"CPU": 8}), view("b", {"CPU": 8}))
    policy = SchedulingPolicy()
    bundle_nodes = {0: "a", 1: "b"}
    totals = {0: R({"CPU": 1}), 1: R({"CPU": 4})}
    d = policy.decide(
        R({"CPU": 2}),
        nodes,
        PlacementGroupStrategy("pg", 0),
        "a",
        bundle_nodes=bundle_nodes,
        bundle_totals=totals,
    )
    assert d == Decision(
        "infeasible", None, "{CPU: 2} does not fit in bundle 0 of placement group pg"
    )
    d = policy.decide(
        R({"CPU": 2}),
        nodes,
        PlacementGroupStrategy("pg"),
        "a",
        bundle_nodes=bundle_nodes,
        bundle_totals=totals,
    )
    assert (d.kind, d.node_id) == ("run", "b")  # only bundle 1 can hold it
    d = policy.decide(
        R({"CPU": 5}),
        nodes,
        PlacementGroupStrategy("pg"),
        "a",
        bundle_nodes=bundle_nodes,
        bundle_totals=totals,
    )
    assert d == Decision(
        "infeasible", None, "{CPU: 5} does not fit in any bundle of placement group pg"
    )


def test_placement_group_strategy_validates_index() -> None:
    with pytest.raises(ValueError, match=r"bundle_index.*-2"):
        PlacementGroupStrategy("pg", -2)


def test_unknown_strategy_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown scheduling strategy"):
        SchedulingPolicy().decide(CPU1, {}, "SPREAD", "a")  # type: ignore[arg-type]


def test_strategies_are_frozen_and_hashable() -> None:
    assert DefaultStrategy() == DefaultStrategy()
    assert len({NodeAffinityStrategy("a", True), NodeAffinityStrategy("a", True)}) == 1
    with pytest.raises(AttributeError):
        PlacementGroupStrategy("pg", 0).bundle_index = 1  # type: ignore[misc]
