"""The state API (``distcore.util.state``) against what each test creates on
the shared cluster: nodes, jobs, actors, tasks, objects, placement groups,
workers, their summaries and filters.

Task events reach the control store about a second after they happen, so
assertions on tasks poll (``_eventually``).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

import distcore
from distcore._private import protocol as p
from distcore._private import worker_state
from distcore.exceptions import AuthenticationError, TaskCancelledError
from distcore.util import placement_group, remove_placement_group, state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MB = 1 << 20


def _eventually(fn: Any, timeout: float = 15.0, message: str = "") -> Any:
    """Poll ``fn`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(message or f"condition not met within {timeout} s (last value: {last!r})")


def _tasks(name: str, **more: str) -> list[state.TaskState]:
    filters = [("name", "=", name)] + [(k, "=", v) for k, v in more.items()]
    return state.list_tasks(filters=filters, limit=1000)


@distcore.remote
def state_ok(x: int) -> int:
    return x


@distcore.remote(max_retries=0)
def state_boom() -> None:
    raise ValueError("state boom")


@distcore.remote(max_retries=0)
def state_sleeper() -> None:
    time.sleep(60)


@distcore.remote(max_retries=0)
def state_after(x: Any) -> Any:
    return x


@distcore.remote(max_retries=0)
def state_infeasible() -> None:
    pass


@distcore.remote(max_retries=0)
def state_gate() -> int:
    time.sleep(60)
    return 1


@distcore.remote
def state_use(x: Any, gate: Any) -> int:
    return len(x)


# ---------------------------------------------------------------- nodes and jobs


def test_nodes_list_and_get(shared_cluster):
    nodes = state.list_nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node.state == "ALIVE" and node["is_head_node"] is True
    assert node.node_id == distcore.get_runtime_context().get_node_id()
    assert node.resources_total["CPU"] == 4 and node.resources_total["GPU"] == 2
    assert node.resources_total["custom"] == 4
    assert state.get_node(node.node_id[:10]).node_id == node.node_id  # a unique prefix is enough
    assert state.get_node("f" * 28) is None
    assert state.list_nodes(filters=[("state", "=", "DEAD")]) == []
    assert state.list_nodes(filters=[("state", "=", "alive")]) == nodes  # values compare case-insensitively
    with pytest.raises(KeyError, match="no field 'bogus'"):
        node["bogus"]


def test_jobs_show_this_driver(shared_cluster):
    job_id = distcore.get_runtime_context().get_job_id()
    jobs = state.list_jobs(filters=[("job_id", "=", job_id)])
    assert len(jobs) == 1
    job = jobs[0]
    assert job.status == "RUNNING" and job.type == "DRIVER" and job.end_time is None
    assert job.driver_info["pid"] == os.getpid()
    assert state.get_job(job_id)["status"] == "RUNNING"


def test_jobs_submitted_through_the_jobs_api_are_listed(shared_cluster):
    core = worker_state.core_worker()
    record = {"submission_id": "state-sub-1", "entrypoint": "python job.py", "status": "FAILED",
              "message": "the driver exited with code 3", "driver_exit_code": 3, "start_time": 1000, "end_time": 2000}
    core.gcs_call("KvPut", p.KvPut("job", "state-sub-1", json.dumps(record).encode()))
    try:
        (row,) = state.list_jobs(filters=[("submission_id", "=", "state-sub-1")])
        assert (row.type, row.status, row.entrypoint, row.driver_exit_code) == ("SUBMISSION", "FAILED", "python job.py", 3)
        assert row.message == "the driver exited with code 3" and row.start_time == 1000
    finally:
        core.gcs_call("KvDel", p.KvKey("job", "state-sub-1"))


# ---------------------------------------------------------------- actors


def test_named_actor_is_alive_then_dead_after_kill(shared_cluster):
    @distcore.remote
    class StateProbeActor:
        def pid(self) -> int:
            return os.getpid()

    actor = StateProbeActor.options(name="state-probe-actor").remote()
    pid = distcore.get(actor.pid.remote())
    rows = state.list_actors(filters=[("name", "=", "state-probe-actor")])
    assert len(rows) == 1
    row = rows[0]
    assert row.state == "ALIVE" and row.class_name == "StateProbeActor" and row.actor_id == actor._actor_id
    assert row.job_id == distcore.get_runtime_context().get_job_id()
    assert row.node_id == distcore.get_runtime_context().get_node_id()
    # The pid comes from the actor's creation task, reported by its worker.
    assert _eventually(lambda: state.get_actor(actor._actor_id).pid) == pid
    assert state.get_actor(actor._actor_id[:12])["name"] == "state-probe-actor"

    distcore.kill(actor)
    dead = _eventually(lambda: (a := state.get_actor(actor._actor_id)) is not None and a.state == "DEAD" and a)
    assert "killed" in dead.death_cause
    assert state.list_actors(filters=[("name", "=", "state-probe-actor"), ("state", "!=", "DEAD")]) == []
    summary = state.summarize_actors(filters=[("class_name", "=", "StateProbeActor")])["cluster"]
    assert summary["total_actors"] == 1
    assert summary["summary"]["StateProbeActor"]["state_counts"] == {"DEAD": 1}


# ---------------------------------------------------------------- tasks


def test_tasks_finished_and_failed_with_counts(shared_cluster):
    refs = [state_ok.remote(i) for i in range(3)]
    assert distcore.get(refs) == [0, 1, 2]
    bad = state_boom.remote()
    with pytest.raises(ValueError, match="state boom"):
        distcore.get(bad)

    finished = _eventually(lambda: len(rows := _tasks("state_ok", state="FINISHED")) == 3 and rows)
    assert {t.task_id for t in finished} == {r.task_id() for r in refs}
    for t in finished:
        assert t.type == "NORMAL_TASK" and t.func_or_class_name == "state_ok" and t.attempt_number == 0
        assert t.node_id == distcore.get_runtime_context().get_node_id() and t.worker_pid and t.worker_id
        assert t.start_time_ms <= t.end_time_ms and t.creation_time_ms <= t.start_time_ms
        assert t.required_resources == {"CPU": 1.0} and t.error_type is None
    failed = _eventually(lambda: _tasks("state_boom", state="FAILED"))
    assert len(failed) == 1 and failed[0].task_id == bad.task_id()
    assert failed[0].error_type == "TASK_EXECUTION_EXCEPTION" and "ValueError: state boom" in failed[0].error_message
    assert _tasks("state_ok", state="RUNNING") == [] and len(state.list_tasks(
        filters=[("name", "=", "state_ok"), ("state", "!=", "FAILED")])) == 3

    detail = state.get_task(bad.task_id())
    assert detail.state == "FAILED" and detail.name == "state_boom"
    assert [e["state"] for e in detail.events][-1] == "FAILED"
    assert {"PENDING_NODE_ASSIGNMENT", "RUNNING", "FAILED"} <= {e["state"] for e in detail.events}

    summary = state.summarize_tasks()["cluster"]
    assert summary["summary"]["state_ok"]["state_counts"] == {"FINISHED": 3}
    assert summary["summary"]["state_boom"]["state_counts"] == {"FAILED": 1}
    assert summary["summary"]["state_ok"]["type"] == "NORMAL_TASK"
    # timeline() still draws executions only: one per task, none for pending or running steps.
    assert sum(1 for e in distcore.timeline() if e["name"] == "state_ok") == 3


def test_tasks_pending_running_and_cancelled(shared_cluster):
    sleeper = state_sleeper.remote()
    after = state_after.remote(sleeper)
    stuck = state_infeasible.options(resources={"custom": 100}).remote()

    assert _eventually(lambda: _tasks("state_sleeper", state="RUNNING"))[0].task_id == sleeper.task_id()
    assert _eventually(lambda: _tasks("state_after", state="PENDING_ARGS_AVAIL"))[0].task_id == after.task_id()
    assert _eventually(lambda: _tasks("state_infeasible", state="PENDING_NODE_ASSIGNMENT"))

    distcore.cancel(stuck)
    distcore.cancel(sleeper)
    for ref in (stuck, sleeper):
        with pytest.raises(TaskCancelledError):
            distcore.get(ref, timeout=30)
    cancelled = _eventually(lambda: _tasks("state_infeasible", state="FAILED"))
    assert cancelled[0].error_type == "TASK_CANCELLED"
    assert _eventually(lambda: _tasks("state_sleeper", state="FAILED"))[0].error_type == "TASK_CANCELLED"
    with pytest.raises(TaskCancelledError):
        distcore.get(after, timeout=30)
    assert _eventually(lambda: _tasks("state_after", state="FAILED"))


def test_actor_tasks_have_their_types(shared_cluster):
    @distcore.remote
    class StateTyped:
        def ping(self) -> str:
            return "pong"

    actor = StateTyped.remote()
    assert distcore.get([actor.ping.remote() for _ in range(2)]) == ["pong", "pong"]
    pings = _eventually(lambda: len(rows := _tasks("StateTyped.ping", state="FINISHED")) == 2 and rows)
    assert all(t.type == "ACTOR_TASK" and t.actor_id == actor._actor_id for t in pings)
    creation = _eventually(lambda: _tasks("StateTyped", type="ACTOR_CREATION_TASK", state="FINISHED"))
    assert creation[0].actor_id == actor._actor_id
    distcore.kill(actor)


# ---------------------------------------------------------------- objects


def test_objects_with_sizes_and_reference_types(shared_cluster):
    @distcore.remote
    class StateHolder:
        def hold(self, refs: list) -> int:
            self.refs = refs
            return os.getpid()

    node_id = distcore.get_runtime_context().get_node_id()
    big = distcore.put(np.zeros(2 * MB, dtype=np.uint8))
    small = distcore.put("a small value")
    holder = StateHolder.remote()
    holder_pid = distcore.get(holder.hold.remote([big]))

    big_id = big.hex()
    rows = _eventually(lambda: len(r := state.get_objects(big_id)) == 2 and r)
    by_pid = {r.pid: r for r in rows}
    owner, borrower = by_pid[os.getpid()], by_pid[holder_pid]
    assert owner.is_owner and owner.type == "DRIVER" and owner.reference_type == "LOCAL_REFERENCE"
    assert owner.object_size >= 2 * MB and owner.location == node_id
    assert owner.spilled is False and owner.pinned is True and owner.task_status == "FINISHED"
    assert not borrower.is_owner and borrower.type == "WORKER" and borrower.reference_type == "BORROWED"
    assert borrower.object_size == owner.object_size and borrower.owner_worker_id == owner.worker_id

    (inline,) = state.list_objects(filters=[("object_id", "=", small.hex())])
    assert inline.location == "INLINE" and 0 < inline["object_size"] < 1000 and inline.spilled is None

    summary = state.summarize_objects(filters=[("object_id", "=", big_id)])["cluster"]
    assert summary["total_objects"] == 1 and summary["total_size_mb"] >= 2
    assert summary["summary"]["BORROWED"]["total_objects"] == 1
    assert summary["summary"]["LOCAL_REFERENCE"]["total_num_workers"] == 1

    # The driver drops its ref: it keeps the value only for its borrower now.
    del big
    gc.collect()
    _eventually(lambda: [r.reference_type for r in state.get_objects(big_id) if r.is_owner] == ["PINNED_IN_MEMORY"])
    distcore.kill(holder)


def test_object_passed_to_a_pending_task_is_used_by_it(shared_cluster):
    value = distcore.put(np.ones(MB, dtype=np.uint8))
    gate = state_gate.remote()
    use = state_use.remote(value, gate)
    rows = state.get_objects(value.hex())
    assert [r.reference_type for r in rows] == ["USED_BY_PENDING_TASK"]
    assert rows[0].submitted_task_refs == 1 and rows[0].local_refs == 1
    distcore.cancel(gate)
    with pytest.raises(TaskCancelledError):
        distcore.get(use, timeout=30)
    _eventually(lambda: [r.reference_type for r in state.get_objects(value.hex())] == ["LOCAL_REFERENCE"])


# ---------------------------------------------------------------- placement groups and workers


def test_placement_groups_pending_and_created(shared_cluster):
    created = placement_group([{"CPU": 1}], name="state-pg-created")
    assert created.wait(30)
    pending = placement_group([{"CPU": 64}], name="state-pg-pending", strategy="SPREAD")
    try:
        rows = {r.name: r for r in state.list_placement_groups(limit=1000)}
        ok, stuck = rows["state-pg-created"], rows["state-pg-pending"]
        assert ok.state == "CREATED" and ok.placement_group_id == created.id and ok.strategy == "PACK"
        assert ok.bundles == [{"bundle_index": 0, "unit_resources": {"CPU": 1.0},
                               "node_id": distcore.get_runtime_context().get_node_id()}]
        assert ok.creator_job_id == distcore.get_runtime_context().get_job_id()
        assert stuck.state == "PENDING" and stuck.strategy == "SPREAD" and stuck.bundles[0]["node_id"] is None
        assert state.get_placement_group(pending.id).state == "PENDING"
        assert [r.name for r in state.list_placement_groups(filters=[("name", "=", "state-pg-pending")])] == [
            "state-pg-pending"]
    finally:
        remove_placement_group(created)
        remove_placement_group(pending)
    assert _eventually(lambda: state.get_placement_group(created.id).state == "REMOVED")


def test_workers_include_the_driver_and_actor_workers(shared_cluster):
    @distcore.remote
    class StateWorkerProbe:
        def pid(self) -> int:
            return os.getpid()

    actor = StateWorkerProbe.remote()
    pid = distcore.get(actor.pid.remote())
    workers = state.list_workers(limit=1000)
    drivers = [w for w in workers if w.worker_type == "DRIVER"]
    assert os.getpid() in {w.pid for w in drivers}
    row = next(w for w in workers if w.pid == pid)
    assert row.worker_type == "WORKER" and row.is_alive and row.state == "ACTOR"
    assert row.actor_id == actor._actor_id and row.node_id == distcore.get_runtime_context().get_node_id()
    assert row.log_file == f"worker-{row.worker_id[:12]}.log"
    assert state.get_worker(row.worker_id).pid == pid
    only_drivers = state.list_workers(filters=[("worker_type", "=", "DRIVER")])
    assert only_drivers and all(w.worker_type == "DRIVER" for w in only_drivers)
    assert len(state.list_workers(limit=1)) == 1
    distcore.kill(actor)


def test_actor_logs_are_readable(shared_cluster):
    @distcore.remote
    class StateTalker:
        def say(self, text: str) -> None:
            print(text, flush=True)

    actor = StateTalker.remote()
    distcore.get(actor.say.remote("state-log-marker-1234"))
    text = _eventually(lambda: "state-log-marker-1234" in (t := "".join(state.get_log(actor_id=actor._actor_id)))
                       and t)
    assert "(StateTalker pid=" in text
    node_id = distcore.get_runtime_context().get_node_id()
    assert any(f.startswith("worker-") for f in state.list_logs(node_id=node_id)[node_id])
    distcore.kill(actor)


# ---------------------------------------------------------------- errors and standalone use


def test_bad_filters_are_explained(shared_cluster):
    with pytest.raises(ValueError, match="valid keys: .*state"):
        state.list_tasks(filters=[("nope", "=", 1)])
    with pytest.raises(ValueError, match="valid keys"):
        state.list_actors(filters=[("nope", "=", 1)])
    with pytest.raises(ValueError, match="predicate must be one of"):
        state.list_nodes(filters=[("state", ">", "ALIVE")])
    with pytest.raises(ValueError, match="limit"):
        state.list_nodes(limit=-1)


def test_standalone_use_with_an_address_and_a_token(shared_cluster):
    core = worker_state.core_worker()
    script = ("import sys; from distcore.util.state import list_nodes, list_jobs;"
              f"print(len(list_nodes(address='{core.gcs_address}')), len(list_jobs(address='{core.gcs_address}')) > 0)")
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=core.token)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]

    env["DISTCORE_AUTH_TOKEN"] = "wrong-token"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and AuthenticationError.__name__ in out.stderr and "cluster token" in out.stderr


def test_public_surface_is_frozen():
    assert sorted(state.__all__) == sorted([
        "ActorState", "JobState", "NodeState", "ObjectState", "PlacementGroupState", "StateApiError", "StateSchema",
        "TaskState", "WorkerState", "get_actor", "get_job", "get_log", "get_node", "get_objects",
        "get_placement_group", "get_task", "get_worker", "list_actors", "list_jobs", "list_logs", "list_nodes",
        "list_objects", "list_placement_groups", "list_tasks", "list_workers", "summarize_actors",
        "summarize_objects", "summarize_tasks",
    ])
    assert all(callable(getattr(state, name)) for name in state.__all__)
