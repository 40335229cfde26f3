"""The autoscaler's pure decisions (``_private/autoscaler/policy.py``) and its config, without processes."""

from __future__ import annotations

import pytest

from distcore._private.autoscaler.config import AutoscalingConfig, AutoscalingConfigError
from distcore._private.autoscaler.policy import (
    ClusterSnapshot,
    Demand,
    NodeSnapshot,
    ScalingPolicy,
)

CPU1 = {"CPU": 1.0}


def policy(**overrides) -> ScalingPolicy:
    data = {
        "max_workers": 10,
        "idle_timeout_s": 60,
        "available_node_types": {
            "small": {"resources": {"CPU": 2}, "max_workers": 5},
            "big": {"resources": {"CPU": 8}, "max_workers": 5},
            "gpu": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 2},
        },
    }
    data.update(overrides)
    return ScalingPolicy(AutoscalingConfig.from_dict(data))


def head(cpus: float = 0, free: float | None = None) -> NodeSnapshot:
    return NodeSnapshot("head", None, {"CPU": cpus}, {"CPU": cpus if free is None else free})


def worker(node_id: str, node_type: str, total: dict, free: dict | None = None, idle_s: float | None = None,
           status: str = "active") -> NodeSnapshot:
    return NodeSnapshot(node_id, node_type, total, total if free is None else free, status, idle_s)  # type: ignore[arg-type]


# ---------------------------------------------------------------- scale up


def test_nothing_to_do_on_an_empty_cluster():
    decision = policy().decide(ClusterSnapshot([head()]))
    assert decision.empty and not decision.infeasible


def test_demands_bin_pack_onto_the_cheapest_fitting_type():
    # Five 1-CPU tasks: three 2-CPU "small" nodes, not one 8-CPU "big" one (cheapest that fits each).
    decision = policy().decide(ClusterSnapshot([head()], [Demand(CPU1)] * 5))
    assert decision.launch == {"small": 3}
    assert any("launch 3 x small" in r for r in decision.reasons)


def test_a_shape_only_a_bigger_type_fits_launches_that_type():
    decision = policy().decide(ClusterSnapshot([head()], [Demand({"CPU": 6})]))
    assert decision.launch == {"big": 1}
    decision = policy().decide(ClusterSnapshot([head()], [Demand({"GPU": 1})] * 3))
    assert decision.launch == {"gpu": 2}  # the type's max_workers
    assert decision.capped == [{"GPU": 1.0}]


def test_biggest_demands_are_packed_first():
    # 6 CPU + 2 x 1 CPU: one big node holds all three (first-fit decreasing).
    decision = policy().decide(ClusterSnapshot([head()], [Demand(CPU1), Demand({"CPU": 6}), Demand(CPU1)]))
    assert decision.launch == {"big": 1}


def test_free_capacity_is_used_before_launching():
    nodes = [head(cpus=1), worker("w1", "small", {"CPU": 2}, {"CPU": 1})]
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)] * 2))
    assert decision.empty  # one on the head, one on w1
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)] * 3))
    assert decision.launch == {"small": 1}


def test_launching_nodes_absorb_the_demand_they_were_launched_for():
    nodes = [head(), worker("w1", "small", {}, {}, status="launching"), worker("w2", "small", {}, {}, status="launching")]
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)] * 4))
    assert decision.empty
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)] * 5))
    assert decision.launch == {"small": 1}


def test_strict_spread_bundles_get_separate_nodes():
    bundles = [Demand(CPU1, "placement_group", spread_group="pg1")] * 3
    decision = policy().decide(ClusterSnapshot([head()], bundles))
    assert decision.launch == {"small": 3}
    plain = [Demand(CPU1, "placement_group")] * 3
    assert policy().decide(ClusterSnapshot([head()], plain)).launch == {"small": 2}


# ---------------------------------------------------------------- limits


def test_min_workers_are_launched_and_kept():
    p = policy(available_node_types={"small": {"resources": {"CPU": 2}, "min_workers": 2, "max_workers": 4}})
    assert p.decide(ClusterSnapshot([head()])).launch == {"small": 2}
    idle = [head(), worker("w1", "small", {"CPU": 2}, idle_s=999), worker("w2", "small", {"CPU": 2}, idle_s=999)]
    decision = p.decide(ClusterSnapshot(idle))
    assert decision.empty  # idle, but min_workers holds them


def test_type_and_global_max_workers_cap_launches():
    p = policy(max_workers=3)
    decision = p.decide(ClusterSnapshot([head()], [Demand(CPU1)] * 10))
    assert decision.launch == {"small": 3}
    assert len(decision.capped) == 4 and any("max_workers reached" in r for r in decision.reasons)
    # Existing nodes count against the limit.
    nodes = [head(), *(worker(f"w{i}", "small", {"CPU": 2}, {"CPU": 0}) for i in range(3))]
    assert p.decide(ClusterSnapshot(nodes, [Demand(CPU1)])).launch == {}
    # Once a type is full the next cheapest fitting type is used.
    p = policy(available_node_types={"small": {"resources": {"CPU": 2}, "max_workers": 1},
                                     "big": {"resources": {"CPU": 8}, "max_workers": 1}})
    assert p.decide(ClusterSnapshot([head()], [Demand(CPU1)] * 4)).launch == {"big": 1, "small": 1}


def test_explicit_cost_picks_the_type():
    p = policy(available_node_types={"a": {"resources": {"CPU": 4}, "cost": 1.0},
                                     "b": {"resources": {"CPU": 2}, "cost": 5.0}})
    assert p.decide(ClusterSnapshot([head()], [Demand(CPU1)])).launch == {"a": 1}


def test_launch_blocked_types_are_skipped():
    snapshot = ClusterSnapshot([head()], [Demand(CPU1)], launch_blocked=frozenset({"small"}))
    assert policy().decide(snapshot).launch == {"big": 1}


# ---------------------------------------------------------------- infeasible


def test_infeasible_shapes_are_reported_not_launched():
    decision = policy().decide(ClusterSnapshot([head()], [Demand({"CPU": 64})] * 2 + [Demand({"TPU": 1})]))
    assert decision.launch == {}
    assert sorted(decision.infeasible, key=str) == [{"CPU": 64}, {"CPU": 64}, {"TPU": 1}]
    assert any("fits no node type" in r for r in decision.reasons)


def test_a_shape_an_existing_node_fits_is_waiting_not_infeasible():
    nodes = [head(cpus=64, free=0)]
    decision = policy().decide(ClusterSnapshot(nodes, [Demand({"CPU": 32})]))
    assert decision.launch == {} and decision.infeasible == []


# ---------------------------------------------------------------- scale down


def test_nodes_idle_past_the_timeout_are_terminated():
    nodes = [head(), worker("w1", "small", {"CPU": 2}, idle_s=61), worker("w2", "small", {"CPU": 2}, idle_s=10),
             worker("w3", "small", {"CPU": 2}, {"CPU": 1})]
    decision = policy().decide(ClusterSnapshot(nodes))
    assert [t.node_id for t in decision.terminate] == ["w1"]
    assert "idle for 61.0 s" in decision.terminate[0].reason


def test_an_idle_node_that_would_receive_demand_is_kept_and_nothing_launches():
    nodes = [head(), worker("w1", "small", {"CPU": 2}, idle_s=120)]
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)]))
    assert decision.empty  # no flapping: the idle node takes the work instead of a new one


def test_busy_nodes_fill_before_idle_ones_so_idle_ones_can_go():
    nodes = [head(), worker("busy", "small", {"CPU": 2}, {"CPU": 1}), worker("idle", "small", {"CPU": 2}, idle_s=120)]
    decision = policy().decide(ClusterSnapshot(nodes, [Demand(CPU1)]))
    assert [t.node_id for t in decision.terminate] == ["idle"] and not decision.launch


def test_unmanaged_and_launching_nodes_are_never_terminated():
    nodes = [NodeSnapshot("manual", None, {"CPU": 2}, {"CPU": 2}, "active", 999),
             worker("w1", "small", {}, {}, status="launching", idle_s=999)]
    assert policy().decide(ClusterSnapshot(nodes)).terminate == []


def test_scale_up_then_down_is_stable():
    p = policy(idle_timeout_s=5, available_node_types={"small": {"resources": {"CPU": 1}, "max_workers": 2}})
    demand = [Demand(CPU1)] * 2
    assert p.decide(ClusterSnapshot([head()], demand)).launch == {"small": 2}
    launching = [head(), worker("a", "small", {}, {}, status="launching"), worker("b", "small", {}, {}, status="launching")]
    assert p.decide(ClusterSnapshot(launching, demand)).empty
    busy = [head(), worker("a", "small", CPU1, {"CPU": 0}), worker("b", "small", CPU1, {"CPU": 0})]
    assert p.decide(ClusterSnapshot(busy)).empty
    briefly_idle = [head(), worker("a", "small", CPU1, idle_s=2), worker("b", "small", CPU1, idle_s=2)]
    assert p.decide(ClusterSnapshot(briefly_idle)).empty
    idle = [head(), worker("a", "small", CPU1, idle_s=6), worker("b", "small", CPU1, idle_s=6)]
    assert sorted(t.node_id for t in p.decide(ClusterSnapshot(idle)).terminate) == ["a", "b"]


# ---------------------------------------------------------------- request_resources


def test_request_resources_counts_total_capacity_not_free():
    p = policy()
    busy = [head(), worker("w1", "small", {"CPU": 2}, {"CPU": 0})]
    # 2 CPUs requested, 2 exist (busy): nothing to launch (Ray's semantics).
    assert p.decide(ClusterSnapshot(busy, requested=[CPU1] * 2)).empty
    decision = p.decide(ClusterSnapshot(busy, requested=[CPU1] * 6))
    assert decision.launch == {"small": 2}


def test_request_resources_scales_an_empty_cluster_and_keeps_idle_nodes():
    p = policy()
    assert p.decide(ClusterSnapshot([head()], requested=[{"GPU": 1}] * 2)).launch == {"gpu": 2}
    idle = [head(), worker("g1", "gpu", {"CPU": 4, "GPU": 1}, idle_s=999),
            worker("g2", "gpu", {"CPU": 4, "GPU": 1}, idle_s=999)]
    assert p.decide(ClusterSnapshot(idle, requested=[{"GPU": 1}])).terminate[0].node_id in ("g1", "g2")
    assert len(p.decide(ClusterSnapshot(idle, requested=[{"GPU": 1}])).terminate) == 1
    assert p.decide(ClusterSnapshot(idle, requested=[{"GPU": 1}] * 2)).empty


def test_nodes_launched_for_a_request_also_take_demand():
    p = policy(available_node_types={"small": {"resources": {"CPU": 2}, "max_workers": 5}})
    decision = p.decide(ClusterSnapshot([head()], [Demand(CPU1)] * 2, requested=[CPU1] * 2))
    assert decision.launch == {"small": 1}


def test_request_resources_beyond_any_type_is_reported():
    decision = policy().decide(ClusterSnapshot([head()], requested=[{"CPU": 100}]))
    assert decision.launch == {} and decision.infeasible == [{"CPU": 100.0}]


# ---------------------------------------------------------------- config


def test_config_reads_ray_fields_and_round_trips():
    config = AutoscalingConfig.from_dict({
        "cluster_name": "demo", "max_workers": 2, "idle_timeout_minutes": 0.5,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "min_workers": 0, "max_workers": 2},
        },
    })
    assert config.idle_timeout_s == 30 and config.head_resources == {"CPU": 0.0}
    assert list(config.node_types) == ["cpu"] and config.node_types["cpu"].max_workers == 2
    assert AutoscalingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("bad, message", [
    ({}, "available_node_types must map"),
    ({"available_node_types": {"a": {"resources": {"CPU": -1}}}}, "resources.CPU must be a number >= 0, got -1"),
    ({"available_node_types": {"a": {"resources": {"CPU": 1}, "min_workers": 3, "max_workers": 1}}},
     "min_workers (3) is above max_workers (1)"),
    ({"available_node_types": {"a": {"resources": {}}}}, "offers nothing to run tasks on"),
    ({"available_node_types": {"a": {"resources": {"CPU": 1}, "max_worker": 1}}}, "unknown field(s) 'max_worker'"),
    ({"available_node_types": {"a": {"resources": {"CPU": 1}}}, "idle_timeout": 3}, "unknown field(s) 'idle_timeout'"),
    ({"available_node_types": {"a": {"resources": {"CPU": 1}}}, "provider": {"type": "aws"}}, "local provider only"),
    ({"available_node_types": {"a": {"resources": {"CPU": 1}}}, "max_workers": 1.5}, "max_workers must be an integer"),
])
def test_bad_configs_say_what_is_wrong(bad, message):
    with pytest.raises(AutoscalingConfigError) as info:
        AutoscalingConfig.from_dict(bad)
    assert message in str(info.value)


# ---------------------------------------------------------------- the public sdk


def test_sdk_surface_and_argument_errors(monkeypatch):
    import distcore.autoscaler
    from distcore._private import worker_state
    from distcore.autoscaler.sdk import request_resources

    assert sorted(distcore.autoscaler.__all__) == ["request_resources", "sdk"]
    with pytest.raises(TypeError, match="num_cpus must be an integer >= 0, got 1.5"):
        request_resources(num_cpus=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bundles must be a list of dicts"):
        request_resources(bundles={"CPU": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bundles\[1\] must map resource names to numbers >= 0"):
        request_resources(bundles=[{"CPU": 1}, {"GPU": "one"}])
    monkeypatch.setattr(worker_state, "_core", None)  # as before distcore.init()
    with pytest.raises(RuntimeError, match=r"call distcore.init\(\) first"):
        request_resources(num_cpus=1)
