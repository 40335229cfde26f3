"""Tests for distcore._private.options: the options table, validation and resources."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from distcore._private import options as opts
from distcore._private.options import (
    OPTIONS,
    actor_resources,
    merge_options,
    option_defaults,
    option_names,
    resolve_scheduling_strategy,
    task_resources,
    validate_actor_options,
    validate_method_options,
    validate_task_options,
)
from distcore.util.scheduling_strategies import (
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

PG = SimpleNamespace(id="pg")
PG_STRATEGY = PlacementGroupSchedulingStrategy(PG)


def test_every_entry_is_complete() -> None:
    for name, opt in OPTIONS.items():
        assert opt.name == name
        assert opt.kinds and opt.kinds <= set(opts.KINDS)
        assert callable(opt.check)
        assert opt.description


def test_option_names_per_kind() -> None:
    task, actor, method = option_names("task"), option_names("actor"), option_names("method")
    assert {"num_cpus", "num_returns", "max_retries", "retry_exceptions", "max_calls", "runtime_env"} <= set(task)
    assert {"max_restarts", "max_task_retries", "max_concurrency", "lifetime", "get_if_exists"} <= set(actor)
    assert "max_retries" not in actor and "max_restarts" not in task and "num_returns" not in actor
    assert set(method) == {
        "num_returns",
        "max_task_retries",
        "retry_exceptions",
        "concurrency_group",
        "enable_task_events",
    }
    assert list(task) == sorted(task)
    with pytest.raises(ValueError, match="'job'"):
        option_names("job")


def test_defaults() -> None:
    task, actor = option_defaults("task"), option_defaults("actor")
    assert task["max_retries"] == 3 and task["num_returns"] == 1 and task["retry_exceptions"] is False
    assert actor["max_restarts"] == 0 and actor["max_task_retries"] == 0 and actor["max_pending_calls"] == -1
    assert task["placement_group"] == "default" and task["placement_group_bundle_index"] == -1


class _Err(Exception):
    pass


# (option, good values, bad values) for options valid on tasks.
TASK_CASES: list[tuple[str, list[Any], list[Any]]] = [
    ("num_cpus", [0, 1, 0.5, 2.5, 64, None], [-1, math.inf, math.nan, "1", True, 0.00001]),
    ("num_gpus", [0, 0.25, 0.5, 1, 1.0, 2, 8, None], [-0.5, 1.5, 2.5, math.inf, "1", False]),
    ("resources", [{}, {"TPU": 4}, {"custom": 0.5}, None], [[], {"TPU": -1}, {"a": "1"}, {1: 1}, {"x": math.inf}]),
    ("memory", [0, 1024, 2.5e9, None], [-1, "1GB", math.nan]),
    ("accelerator_type", ["A100", None], ["", 100]),
    ("num_returns", [0, 1, 5, "dynamic", "streaming", None], [-1, "many", 1.5, True]),
    ("max_retries", [-1, 0, 3, 100, None], [-2, 1.0, "3", True]),
    ("retry_exceptions", [True, False, [ValueError], [_Err, KeyError], (OSError,)], [None, "yes", [1], [str], 1]),
    ("max_calls", [0, 1, 10, None], [-1, 1.5, "1"]),
    ("name", ["my_task", None], ["", 3]),
    ("scheduling_strategy", [None, "DEFAULT", "SPREAD", PG_STRATEGY], ["PACK", "spread", 1, {"node": "x"}]),
    ("placement_group", ["default", None, PG], ["pg", 5]),
    ("placement_group_bundle_index", [-1, 0, 3], [-2, None, "0"]),
    ("placement_group_capture_child_tasks", [True, False, None], ["yes", 1]),
    ("runtime_env", [None, {}, {"env_vars": {"A": "1"}}], [{"pip": ["x"]}, {"env_vars": {"A": 1}}, "env", {"bad": 1}]),
    ("label_selector", [{"region": "us"}, {}, None], [{"region": 1}, ["region"]]),
    ("enable_task_events", [True, False, None], ["no"]),
    ("_metadata", [{"lib": {"a": 1}}, None], ["meta"]),
]

ACTOR_CASES: list[tuple[str, list[Any], list[Any]]] = [
    ("num_cpus", [0, 1, 0.5, None], [-0.1, math.inf]),
    ("num_gpus", [0.5, 1, 4], [1.25]),
    ("resources", [{"TPU": 1}], [{"CPU": 1}]),
    ("memory", [100], [-5]),
    ("object_store_memory", [0, 100, None], [-1, 1.5]),
    ("max_restarts", [-1, 0, 5, None], [-2, 1.5, "5"]),
    ("max_task_retries", [-1, 0, 5], [-3, "1"]),
    ("max_concurrency", [1, 1000, None], [0, -1, 2.0]),
    ("max_pending_calls", [-1, 0, 10], [-2, "10"]),
    ("concurrency_groups", [{"io": 2, "compute": 4}, {}, None], [{"io": 0}, {"io": "2"}, ["io"], {1: 2}]),
    ("name", ["counter", None], ["", 1]),
    ("namespace", ["ns", None], ["", 5]),
    ("lifetime", [None, "detached", "non_detached"], ["forever", "DETACHED", 1]),
    ("scheduling_strategy", [NodeAffinitySchedulingStrategy("n", True)], ["NODE"]),
    ("scheduling_strategy", [NodeLabelSchedulingStrategy({"r": In("x")})], [object()]),
    ("placement_group", [PG], [1]),
    ("runtime_env", [{"env_vars": {}}], [{"conda": "env"}]),
    ("label_selector", [{"a": "b"}], [{"a": None}]),
    ("_metadata", [{}], [[1]]),
]


def _good_bad(cases: list[tuple[str, list[Any], list[Any]]]) -> tuple[list[Any], list[Any]]:
    good = [pytest.param(n, v, id=f"{n}={v!r}") for n, values, _ in cases for v in values]
    bad = [pytest.param(n, v, id=f"{n}={v!r}") for n, _, values in cases for v in values]
    return good, bad


_TASK_GOOD, _TASK_BAD = _good_bad(TASK_CASES)
_ACTOR_GOOD, _ACTOR_BAD = _good_bad(ACTOR_CASES)


@pytest.mark.parametrize(("name", "value"), _TASK_GOOD)
def test_task_option_accepts(name: str, value: Any) -> None:
    out = validate_task_options({name: value})
    assert name in out


@pytest.mark.parametrize(("name", "value"), _TASK_BAD)
def test_task_option_rejects(name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        validate_task_options({name: value})
    message = str(info.value)
    assert repr(name) in message or f"'{name}[" in message
    assert repr(value) in message or (isinstance(value, dict) and any(repr(k) in message for k in value))


@pytest.mark.parametrize(("name", "value"), _ACTOR_GOOD)
def test_actor_option_accepts(name: str, value: Any) -> None:
    assert name in validate_actor_options({name: value})


@pytest.mark.parametrize(("name", "value"), _ACTOR_BAD)
def test_actor_option_rejects(name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        validate_actor_options({name: value})
    message = str(info.value)
    assert repr(name) in message or f"'{name}[" in message
    assert repr(value) in message or (isinstance(value, dict) and any(repr(k) in message for k in value))


def test_every_option_has_cases() -> None:
    covered = {n for n, _, _ in TASK_CASES + ACTOR_CASES} | {"get_if_exists", "concurrency_group"}
    assert covered == set(OPTIONS)


def test_type_errors_are_type_errors() -> None:
    with pytest.raises(TypeError):
        validate_task_options({"num_cpus": "2"})
    with pytest.raises(ValueError):
        validate_task_options({"num_cpus": -2})


def test_error_says_what_is_valid() -> None:
    with pytest.raises(ValueError) as info:
        validate_task_options({"num_gpus": 1.5})
    assert "num_gpus" in str(info.value) and "1.5" in str(info.value) and "whole number" in str(info.value)
    with pytest.raises(ValueError) as info:
        validate_actor_options({"lifetime": "forever"})
    assert "'detached'" in str(info.value) and "'non_detached'" in str(info.value)


def test_resources_rejects_cpu_gpu_keys() -> None:
    for key in ("CPU", "GPU"):
        with pytest.raises(ValueError) as info:
            validate_task_options({"resources": {key: 1}})
        assert "num_cpus" in str(info.value) and "num_gpus" in str(info.value) and repr(key) in str(info.value)


def test_negative_custom_resource_names_the_resource() -> None:
    with pytest.raises(ValueError, match=r"resources\['TPU'\]"):
        validate_task_options({"resources": {"TPU": -1}})


def test_unknown_option_suggests_closest() -> None:
    with pytest.raises(ValueError) as info:
        validate_task_options({"num_cpu": 1})
    assert "'num_cpu'" in str(info.value) and "Did you mean 'num_cpus'" in str(info.value)
    with pytest.raises(ValueError) as info:
        validate_actor_options({"max_restart": 1})
    assert "Did you mean 'max_restarts'" in str(info.value)
    with pytest.raises(ValueError, match="'zzz'"):
        validate_task_options({"zzz": 1})


def test_option_for_other_kind_says_where_it_applies() -> None:
    with pytest.raises(ValueError) as info:
        validate_actor_options({"max_retries": 2})
    assert "'max_retries'" in str(info.value) and "remote functions only" in str(info.value)
    with pytest.raises(ValueError, match="actors only"):
        validate_task_options({"max_restarts": 1})
    with pytest.raises(ValueError, match="'num_returns'"):
        validate_actor_options({"num_returns": 2})


def test_in_options_restrictions() -> None:
    assert validate_task_options({"max_calls": 1}) == {"max_calls": 1}
    with pytest.raises(ValueError, match="max_calls"):
        validate_task_options({"max_calls": 1}, in_options=True)
    groups = {"concurrency_groups": {"io": 1}}
    assert validate_actor_options(groups) == groups
    with pytest.raises(ValueError, match="concurrency_groups"):
        validate_actor_options(groups, in_options=True)


def test_get_if_exists_requires_name() -> None:
    assert validate_actor_options({"get_if_exists": True, "name": "a"})["get_if_exists"] is True
    assert validate_actor_options({"get_if_exists": False}) == {"get_if_exists": False}
    with pytest.raises(ValueError, match="'name'"):
        validate_actor_options({"get_if_exists": True})
    with pytest.raises(TypeError, match="get_if_exists"):
        validate_actor_options({"get_if_exists": None, "name": "a"})


def test_placement_group_and_strategy_are_exclusive() -> None:
    assert validate_task_options({"placement_group": None, "scheduling_strategy": "SPREAD"})
    with pytest.raises(ValueError, match="PlacementGroupSchedulingStrategy"):
        validate_task_options({"placement_group": PG, "scheduling_strategy": "SPREAD"})


def test_method_options() -> None:
    assert validate_method_options({"num_returns": 2, "concurrency_group": "io"}) == {
        "num_returns": 2,
        "concurrency_group": "io",
    }
    with pytest.raises(ValueError, match="'num_returns'"):
        validate_method_options({"num_returns": -1})
    with pytest.raises(ValueError, match="Did you mean 'num_returns'"):
        validate_method_options({"num_return": 2})
    with pytest.raises(TypeError, match="concurrency_group"):
        validate_method_options({"concurrency_group": 1})


def test_validate_returns_normalized_copy() -> None:
    given = {"retry_exceptions": (KeyError,), "resources": {"TPU": 1}}
    out = validate_task_options(given)
    assert out == {"retry_exceptions": [KeyError], "resources": {"TPU": 1}}
    assert out["resources"] is not given["resources"]
    with pytest.raises(TypeError, match="dict"):
        validate_task_options([("num_cpus", 1)])  # type: ignore[arg-type]


def test_runtime_env_option_is_validated(tmp_path: Any) -> None:
    out = validate_task_options({"runtime_env": {"working_dir": str(tmp_path), "env_vars": {"A": "1"}}})
    assert out["runtime_env"]["working_dir"] == str(tmp_path)
    with pytest.raises(ValueError) as info:
        validate_task_options({"runtime_env": {"pip": ["requests"]}})
    assert "runtime_env" in str(info.value) and "pip" in str(info.value)


def test_merge_options() -> None:
    base = {"num_cpus": 1, "resources": {"A": 1}, "_metadata": {"ns1": {"a": 1}, "ns2": {"b": 2}}}
    override = {"num_cpus": 2, "_metadata": {"ns1": {"c": 3}}}
    merged = merge_options(base, override)
    assert merged["num_cpus"] == 2 and merged["resources"] == {"A": 1}
    assert merged["_metadata"] == {"ns1": {"a": 1, "c": 3}, "ns2": {"b": 2}}
    assert base["_metadata"] == {"ns1": {"a": 1}, "ns2": {"b": 2}}  # not mutated
    assert merge_options({}, {"name": "x"}) == {"name": "x"}
    assert merge_options({"resources": {"A": 1}}, {"resources": {"B": 1}}) == {"resources": {"B": 1}}


def test_resolve_scheduling_strategy() -> None:
    assert resolve_scheduling_strategy({}) is None
    assert resolve_scheduling_strategy({"scheduling_strategy": "SPREAD"}) == "SPREAD"
    legacy = {"placement_group": PG, "placement_group_bundle_index": 1, "placement_group_capture_child_tasks": True}
    assert resolve_scheduling_strategy(legacy) == PlacementGroupSchedulingStrategy(PG, 1, True)
    assert resolve_scheduling_strategy({"placement_group": "default"}) is None


# --------------------------------------------------------------------------- resources


def test_task_resources() -> None:
    assert task_resources({}) == {"CPU": 1.0}
    assert task_resources({"num_cpus": None}) == {"CPU": 1.0}
    assert task_resources({"num_cpus": 0}) == {}
    assert task_resources({"num_cpus": 2, "num_gpus": 0.5}) == {"CPU": 2.0, "GPU": 0.5}
    assert task_resources({"num_gpus": 1, "resources": {"TPU": 4, "zero": 0}, "memory": 1e9}) == {
        "CPU": 1.0,
        "GPU": 1.0,
        "TPU": 4.0,
        "memory": 1e9,
    }
    assert task_resources({"accelerator_type": "A100"}) == {"CPU": 1.0, "accelerator_type:A100": 0.001}


def test_actor_resources_defaults() -> None:
    # No resources named: 1 CPU to be placed, nothing held.
    assert actor_resources({}) == ({"CPU": 1.0}, {})
    assert actor_resources({"num_cpus": None, "max_restarts": 2}) == ({"CPU": 1.0}, {})
    # memory alone keeps the simple default.
    assert actor_resources({"memory": 100}) == ({"CPU": 1.0, "memory": 100.0}, {"memory": 100.0})
    # object_store_memory reserves nothing.
    assert actor_resources({"object_store_memory": 10}) == ({"CPU": 1.0}, {})


def test_actor_resources_explicit() -> None:
    assert actor_resources({"num_cpus": 2}) == ({"CPU": 2.0}, {"CPU": 2.0})
    assert actor_resources({"num_cpus": 0}) == ({}, {})
    assert actor_resources({"num_gpus": 1}) == ({"GPU": 1.0}, {"GPU": 1.0})
    assert actor_resources({"resources": {"TPU": 1}, "num_cpus": 1}) == ({"TPU": 1.0, "CPU": 1.0},) * 2
    placement, runtime = actor_resources({"num_gpus": 1})
    runtime["GPU"] = 5
    assert placement == {"GPU": 1.0}  # independent dicts
