"""Placement groups on a real one-node cluster: strategies, scheduling into
bundles, removal, names, errors (Ray's ``ray.util.placement_group``)."""

from __future__ import annotations

import os
import time

import pytest

import distcore
from distcore._private.testing import available as _available
from distcore._private.testing import wait_available as _wait_available
from distcore.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    PlacementGroupSchedulingError,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from distcore.util import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from distcore.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.integration

BASELINE = {"CPU": 4.0, "GPU": 2.0, "custom": 4.0}


@pytest.fixture
def cluster(shared_cluster):
    _wait_available(BASELINE)
    yield shared_cluster
    for pg_id, row in placement_group_table().items():
        if row["state"] != "REMOVED":
            remove_placement_group(get_placement_group_by_id(pg_id))
    _wait_available(BASELINE)


def get_placement_group_by_id(pg_id: str):
    from distcore.util.placement_group import PlacementGroup

    return PlacementGroup(pg_id)


def _strategy(pg, index: int = -1) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)


@distcore.remote(num_cpus=1)
def interval(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD", "STRICT_PACK"])
def test_strategies_that_fit_one_node_are_created(cluster, strategy):
    pg = placement_group([{"CPU": 1}, {"CPU": 1, "GPU": 1}], strategy=strategy)
    assert distcore.get(pg.ready(), timeout=30) is True
    assert pg.wait(10) is True
    row = placement_group_table(pg)
    assert row["state"] == "CREATED"
    assert row["strategy"] == strategy
    assert row["bundles"] == {0: {"CPU": 1}, 1: {"CPU": 1, "GPU": 1}}
    node_id = distcore.get_runtime_context().get_node_id()
    assert row["bundles_to_node_id"] == {0: node_id, 1: node_id}
    # The bundles are carved out of the node's free resources.
    _wait_available({"CPU": 2.0, "GPU": 1.0})
    remove_placement_group(pg)
    _wait_available({"CPU": 4.0, "GPU": 2.0})
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_strict_spread_on_one_node_stays_pending_with_a_reason(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    ready, not_ready = distcore.wait([pg.ready()], timeout=1.5)
    assert ready == [] and len(not_ready) == 1
    assert pg.wait(1) is False
    row = placement_group_table(pg)
    assert row["state"] == "PENDING"
    assert "STRICT_SPREAD" in row["stats"]["scheduling_state"]
    assert "node" in row["stats"]["scheduling_state"]
    # Nothing is reserved for a pending group.
    assert _available("CPU") == {"CPU": 4.0}
    with pytest.raises(GetTimeoutError):
        distcore.get(pg.ready(), timeout=0.5)
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_group_larger_than_the_node_stays_pending(cluster):
    pg = placement_group([{"CPU": 3}, {"CPU": 3}], strategy="PACK")
    assert pg.wait(1) is False
    row = placement_group_table(pg)
    assert row["state"] == "PENDING"
    assert "CPU" in row["stats"]["scheduling_state"]
    remove_placement_group(pg)


def test_pending_group_is_created_once_resources_free_up(cluster):
    blocker = placement_group([{"CPU": 3}])
    assert blocker.wait(10)
    waiting = placement_group([{"CPU": 2}])
    assert waiting.wait(1) is False
    ready_ref = waiting.ready()
    remove_placement_group(blocker)
    assert distcore.get(ready_ref, timeout=30) is True
    assert placement_group_table(waiting)["state"] == "CREATED"
    remove_placement_group(waiting)


def test_placement_group_table_lists_every_group(cluster):
    a = placement_group([{"CPU": 1}], name="table-a")
    b = placement_group([{"custom": 1}])
    assert a.wait(10) and b.wait(10)
    table = placement_group_table()
    assert {a.id, b.id} <= set(table)
    assert table[a.id]["name"] == "table-a"
    assert table[b.id]["bundles"] == {0: {"custom": 1}}
    remove_placement_group(a)
    remove_placement_group(b)


# --------------------------------------------------------------------------- scheduling into bundles


def test_one_cpu_bundle_runs_one_task_at_a_time(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    refs = [interval.options(scheduling_strategy=_strategy(pg, 0)).remote(0.4) for _ in range(3)]
    intervals = distcore.get(refs, timeout=60)
    assert _max_overlap(intervals) == 1
    remove_placement_group(pg)


def test_any_bundle_index_uses_only_the_groups_resources(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    refs = [interval.options(scheduling_strategy=_strategy(pg, -1)).remote(0.5) for _ in range(4)]
    intervals = distcore.get(refs, timeout=60)
    # Two bundles of one CPU: never more than two at once, though the node has 4.
    assert _max_overlap(intervals) <= 2
    remove_placement_group(pg)


def test_tasks_in_a_group_leave_the_rest_of_the_node_free(cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    _wait_available({"CPU": 3.0})
    ref = interval.options(scheduling_strategy=_strategy(pg, 0)).remote(3.0)
    # The bundle's CPU is already out of the free pool; the task takes no more.
    time.sleep(1.5)
    assert _available("CPU") == {"CPU": 3.0}
    distcore.get(ref, timeout=30)
    remove_placement_group(pg)


def test_task_that_does_not_fit_its_bundle_is_not_run_outside_it(cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    ref = interval.options(num_cpus=2, scheduling_strategy=_strategy(pg, 0)).remote(0)
    ready, _ = distcore.wait([ref], timeout=2)
    assert ready == []
    remove_placement_group(pg)
    with pytest.raises(TaskUnschedulableError, match="placement group"):
        distcore.get(ref, timeout=30)


@distcore.remote(num_cpus=0.5)
def together(directory: str, name: str, parties: int) -> tuple[bool, list[int]]:
    open(os.path.join(directory, name), "w").close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(os.listdir(directory)) < parties:
        time.sleep(0.02)
    time.sleep(0.2)
    return len(os.listdir(directory)) >= parties, distcore.get_gpu_ids()


def test_fractional_tasks_share_a_bundle(cluster, tmp_path):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    refs = [together.options(scheduling_strategy=_strategy(pg, 0)).remote(str(tmp_path), f"t{i}", 2) for i in range(2)]
    assert all(ok for ok, _ in distcore.get(refs, timeout=60))
    remove_placement_group(pg)


def test_gpu_bundle_pins_a_device(cluster, tmp_path):
    pg = placement_group([{"CPU": 1, "GPU": 1}])
    assert pg.wait(10)
    _wait_available({"GPU": 1.0})
    inside = together.options(num_gpus=1, scheduling_strategy=_strategy(pg, 0)).remote(str(tmp_path), "in", 2)
    outside = together.options(num_gpus=1).remote(str(tmp_path), "out", 2)
    (ok_in, gpus_in), (ok_out, gpus_out) = distcore.get([inside, outside], timeout=60)
    assert ok_in and ok_out, "the task in the bundle and the one outside did not run side by side"
    assert len(gpus_in) == 1 and len(gpus_out) == 1 and gpus_in != gpus_out
    remove_placement_group(pg)


def test_bundle_with_an_unknown_resource_is_pending_with_a_reason(cluster):
    pg = placement_group([{"CPU": 1}, {"tpu": 1}])
    assert pg.wait(1) is False
    row = placement_group_table(pg)
    assert row["state"] == "PENDING"
    assert "tpu" in row["stats"]["scheduling_state"]
    remove_placement_group(pg)


def test_get_current_placement_group_inside_a_task(cluster):
    @distcore.remote(num_cpus=1)
    def current():
        pg = get_current_placement_group()
        return None if pg is None else pg.id

    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    assert distcore.get(current.options(scheduling_strategy=_strategy(pg, 0)).remote(), timeout=30) == pg.id
    assert distcore.get(current.remote(), timeout=30) is None
    assert get_current_placement_group() is None  # the driver runs in no group
    remove_placement_group(pg)


@distcore.remote(num_cpus=1)
def child_group() -> str | None:
    pg = get_current_placement_group()
    return None if pg is None else pg.id


@distcore.remote(num_cpus=1)
def parent_of_children() -> dict:
    return {
        "plain": distcore.get(child_group.remote()),
        "default": distcore.get(child_group.options(scheduling_strategy="DEFAULT").remote()),
        "grandchild": distcore.get(grandparent_hop.remote()),
    }


@distcore.remote(num_cpus=0.5)
def grandparent_hop() -> str | None:
    return distcore.get(child_group.options(num_cpus=0.5).remote())


@pytest.mark.parametrize("capture", [True, False])
def test_capture_child_tasks(cluster, capture):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    strategy = PlacementGroupSchedulingStrategy(pg, 0, placement_group_capture_child_tasks=capture)
    seen = distcore.get(parent_of_children.options(scheduling_strategy=strategy).remote(), timeout=60)
    expected = pg.id if capture else None
    # Children with no strategy (and their children) run in the group only when it captures them.
    assert seen == {"plain": expected, "default": None, "grandchild": expected}
    remove_placement_group(pg)


@distcore.remote(num_cpus=0.5)
def schedules_into_its_own_group() -> tuple[str | None, int]:
    pg = get_current_placement_group()
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
    return distcore.get(child_group.options(num_cpus=0.5, scheduling_strategy=strategy).remote()), pg.bundle_count


def test_current_placement_group_schedules_children_into_its_bundles(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    seen, count = distcore.get(schedules_into_its_own_group.options(scheduling_strategy=_strategy(pg, 0)).remote(),
                               timeout=60)
    assert (seen, count) == (pg.id, 2)
    remove_placement_group(pg)


def test_actor_in_a_bundle(cluster):
    @distcore.remote(num_cpus=1)
    class Holder:
        def where(self):
            pg = get_current_placement_group()
            return os.getpid(), None if pg is None else pg.id

    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    actor = Holder.options(scheduling_strategy=_strategy(pg, 1)).remote()
    pid, pg_id = distcore.get(actor.where.remote(), timeout=30)
    assert pg_id == pg.id
    # The actor holds its bundle's CPU: the other bundle still runs tasks, the node is untouched.
    assert distcore.get(interval.options(scheduling_strategy=_strategy(pg, 0)).remote(0), timeout=30)
    _wait_available({"CPU": 2.0})
    time.sleep(1.0)  # and it stays there: the actor takes nothing outside its bundle
    assert _available("CPU") == {"CPU": 2.0}
    distcore.kill(actor)
    remove_placement_group(pg)


def test_actors_in_any_bundle_fill_the_group_then_wait(cluster):
    @distcore.remote(num_cpus=1)
    class Member:
        def pid(self):
            return os.getpid()

    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert pg.wait(10)
    members = [Member.options(scheduling_strategy=_strategy(pg)).remote() for _ in range(3)]
    refs = [m.pid.remote() for m in members]
    ready, pending = distcore.wait(refs, num_returns=2, timeout=30)
    assert len(ready) == 2
    # Two bundles of one CPU hold two such actors; the third waits for room in the group.
    assert distcore.wait(pending, timeout=2) == ([], pending)
    _wait_available({"CPU": 2.0})
    remove_placement_group(pg)
    for member in members:
        with pytest.raises(ActorDiedError, match="placement group"):
            distcore.get(member.pid.remote(), timeout=30)
    _wait_available(BASELINE)


def test_remove_placement_group_kills_actors_and_returns_resources(cluster):
    @distcore.remote(num_cpus=1)
    class Sleeper:
        def pid(self):
            return os.getpid()

    pg = placement_group([{"CPU": 1}, {"CPU": 1, "GPU": 1}], strategy="STRICT_PACK")
    assert pg.wait(10)
    actors = [Sleeper.options(scheduling_strategy=_strategy(pg, i)).remote() for i in range(2)]
    assert len(set(distcore.get([a.pid.remote() for a in actors], timeout=30))) == 2
    _wait_available({"CPU": 2.0, "GPU": 1.0})
    remove_placement_group(pg)
    for actor in actors:
        with pytest.raises(ActorDiedError):
            distcore.get(actor.pid.remote(), timeout=30)
    _wait_available(BASELINE)


def test_removed_group_actor_with_restarts_is_not_restarted(cluster):
    @distcore.remote(num_cpus=1, max_restarts=3)
    class Restartable:
        def pid(self):
            return os.getpid()

    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    actor = Restartable.options(scheduling_strategy=_strategy(pg, 0)).remote()
    distcore.get(actor.pid.remote(), timeout=30)
    remove_placement_group(pg)
    with pytest.raises(ActorDiedError, match="placement group"):
        distcore.get(actor.pid.remote(), timeout=30)


def test_remove_placement_group_kills_running_tasks(cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    ref = interval.options(scheduling_strategy=_strategy(pg, 0), max_retries=0).remote(60)
    time.sleep(1.5)
    remove_placement_group(pg)
    with pytest.raises(WorkerCrashedError):
        distcore.get(ref, timeout=30)
    _wait_available(BASELINE)


def test_task_for_a_removed_group_fails_clearly(cluster):
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    remove_placement_group(pg)
    with pytest.raises(TaskUnschedulableError, match="placement group"):
        distcore.get(interval.options(scheduling_strategy=_strategy(pg, 0)).remote(0), timeout=30)
    with pytest.raises(PlacementGroupSchedulingError, match="removed"):
        distcore.get(pg.ready(), timeout=30)


# --------------------------------------------------------------------------- names


def test_named_placement_group(cluster):
    pg = placement_group([{"CPU": 1}], name="named-pg")
    assert pg.wait(10)
    found = get_placement_group("named-pg")
    assert found == pg and found.id == pg.id
    assert found.bundle_specs == [{"CPU": 1}]
    with pytest.raises(ValueError, match="named-pg"):
        placement_group([{"CPU": 1}], name="named-pg")
    remove_placement_group(pg)
    with pytest.raises(ValueError, match="named-pg"):
        get_placement_group("named-pg")
    # The name is free again once the group is removed.
    again = placement_group([{"CPU": 1}], name="named-pg")
    assert again.wait(10)
    remove_placement_group(again)


def test_get_placement_group_unknown_name(cluster):
    with pytest.raises(ValueError, match="no-such-group"):
        get_placement_group("no-such-group")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("bundles", "strategy", "match"),
    [
        ([], "PACK", "at least one bundle"),
        ([{"CPU": 0}], "PACK", "empty"),
        ([{}], "PACK", "empty"),
        ([{"CPU": -1}], "PACK", "CPU"),
        ([{"CPU": "one"}], "PACK", "CPU"),
        ([{"GPU": 1.5}], "PACK", "GPU"),
        ([{"CPU": 1}], "TIGHT", "TIGHT"),
        ({"CPU": 1}, "PACK", "list"),
        ([["CPU", 1]], "PACK", "dict"),
        ("CPU", "PACK", "list"),
    ],
)
def test_invalid_bundles_and_strategy_raise_value_error(cluster, bundles, strategy, match):
    with pytest.raises(ValueError, match=match):
        placement_group(bundles, strategy=strategy)


def test_bundle_index_out_of_range_raises(cluster):
    pg = placement_group([{"CPU": 1}])
    with pytest.raises(ValueError, match="out of range"):
        PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
    with pytest.raises(ValueError, match="-1"):
        PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=-2)
    remove_placement_group(pg)


def test_remove_placement_group_needs_a_group(cluster):
    with pytest.raises(TypeError, match="PlacementGroup"):
        remove_placement_group("not-a-group")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- lifetime


def _run_other_driver(cluster, body: str) -> str:
    import subprocess
    import sys
    import textwrap

    with open(os.path.join(cluster["session_dir"], "token")) as f:
        token = f.read().strip()
    script = "import distcore\nfrom distcore.util import placement_group\n"
    script += f"distcore.init(address={cluster['address']!r}, namespace='pg-lifetime')\n" + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "DISTCORE_AUTH_TOKEN": token})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_groups_of_a_finished_job_are_removed_but_detached_ones_stay(cluster):
    _run_other_driver(cluster, """
        owned = placement_group([{"CPU": 1}], name="job-owned")
        detached = placement_group([{"CPU": 1}], name="detached-pg", lifetime="detached")
        assert owned.wait(10) and detached.wait(10)
    """)
    states = {row["name"]: row["state"] for row in placement_group_table().values()}
    assert states["job-owned"] == "REMOVED"
    assert states["detached-pg"] == "CREATED"
    _wait_available({"CPU": 3.0})
    out = _run_other_driver(cluster, """
        from distcore.util import get_placement_group, remove_placement_group
        pg = get_placement_group("detached-pg")
        print("FOUND", pg.bundle_specs)
        remove_placement_group(pg)
    """)
    assert "FOUND [{'CPU': 1}]" in out
    _wait_available(BASELINE)
