"""Task rows whose end is never reported are failed with the cause, not left PENDING/RUNNING.

A task's final event comes from its worker (or its owner, when the worker
died). When both are gone (the owner was SIGKILLed, its node died, the driver
was killed) nobody reports it; the control store then marks the row FAILED
when it learns of the death (``gcs/tasks.py``: ``fail_unfinished``). Every
test kills real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import distcore
from distcore.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from distcore.util.state import list_tasks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@distcore.remote(resources={"never": 1})
def never_scheduled() -> None:
    pass


@distcore.remote(max_retries=0)
def parent() -> None:
    never_scheduled.remote()  # pending forever: no node has "never"
    time.sleep(120)


def _rows(name: str, job_id: str | None = None):
    filters = [("name", "=", name)] + ([("job_id", "=", job_id)] if job_id else [])
    return list_tasks(filters=filters, limit=100, raise_on_missing_output=False)


def _wait_rows(name: str, pred, timeout: float = 30.0, job_id: str | None = None):
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(name, job_id)
        if rows and all(pred(r) for r in rows):
            return rows
        assert time.monotonic() < deadline, f"{name} rows: {[(r.state, r.error_type) for r in rows]}"
        time.sleep(0.3)


def test_child_of_a_killed_worker_is_failed_not_left_pending(cluster):
    cluster.add_node(num_cpus=2)
    cluster.connect()
    ref = parent.remote()
    _wait_rows("never_scheduled", lambda r: r.state == "PENDING_NODE_ASSIGNMENT")
    (running,) = _wait_rows("parent", lambda r: r.state == "RUNNING" and r.worker_pid)
    os.kill(running.worker_pid, signal.SIGKILL)
    with pytest.raises(distcore.exceptions.WorkerCrashedError):
        distcore.get(ref, timeout=30)
    (child,) = _wait_rows("never_scheduled", lambda r: r.state == "FAILED")
    assert child.error_type == "WORKER_DIED"
    assert "died" in child.error_message and "before the task's end was reported" in child.error_message


def test_child_submitted_on_a_dead_node_is_failed_with_the_node(cluster):
    cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=1)
    cluster.connect()
    on_worker = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    ref = parent.options(scheduling_strategy=on_worker).remote()
    _wait_rows("never_scheduled", lambda r: r.state == "PENDING_NODE_ASSIGNMENT")
    _wait_rows("parent", lambda r: r.state == "RUNNING")
    cluster.remove_node(worker, allow_graceful=False)
    with pytest.raises((distcore.exceptions.WorkerCrashedError, distcore.exceptions.NodeDiedError)):
        distcore.get(ref, timeout=30)
    (child,) = _wait_rows("never_scheduled", lambda r: r.state == "FAILED")
    assert child.error_type == "NODE_DIED", (child.error_type, child.error_message)
    assert worker.node_id[:8] in child.error_message


DRIVER = textwrap.dedent("""
    import sys, time
    import distcore

    @distcore.remote(resources={"never": 1})
    def pending_forever():
        pass

    @distcore.remote
    def running_forever():
        time.sleep(300)

    distcore.init(address=sys.argv[1])
    a, b = pending_forever.remote(), running_forever.remote()
    print(distcore.get_runtime_context().get_job_id(), flush=True)
    time.sleep(300)
""")


def test_tasks_of_a_sigkilled_driver_are_failed_once_its_job_ends(cluster, tmp_path):
    cluster.add_node(num_cpus=2)
    cluster.connect()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token or "")
    proc = subprocess.Popen([sys.executable, str(script), cluster.address], stdout=subprocess.PIPE, text=True, env=env)
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id, "the driver did not start"
        _wait_rows("pending_forever", lambda r: r.state == "PENDING_NODE_ASSIGNMENT", job_id=job_id)
        _wait_rows("running_forever", lambda r: r.state == "RUNNING", job_id=job_id)
        proc.kill()
        proc.wait(10)
        for name in ("pending_forever", "running_forever"):
            (row,) = _wait_rows(name, lambda r: r.state == "FAILED", job_id=job_id, timeout=40)
            assert row.error_type == "WORKER_DIED" and ("died" in row.error_message or "exited" in row.error_message), row
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


@distcore.remote
def tree(base: int, depth: int) -> int:
    if depth == 0:
        return base
    return sum(distcore.get([tree.remote(base * 3 + k + 1, depth - 1) for k in range(3)]))


def _tree_sum(base: int, depth: int) -> int:
    return base if depth == 0 else sum(_tree_sum(base * 3 + k + 1, depth - 1) for k in range(3))


@pytest.mark.timeout(150)
def test_nested_tasks_without_faults_all_end_finished(cluster):
    """Nested gets start extra workers; the pool retires them when idle (SIGTERM): they ship their last
    task events first, so no row is left RUNNING, and none is failed by the retirement."""
    cluster.add_node(num_cpus=2)
    cluster.connect()
    job_id = distcore.get_runtime_context().get_job_id()
    assert distcore.get([tree.remote(i, 2) for i in range(4)], timeout=100) == [_tree_sum(i, 2) for i in range(4)]
    rows = _wait_rows("tree", lambda r: r.state in ("FINISHED", "FAILED"), job_id=job_id, timeout=20)
    assert len(rows) == 4 * 13
    assert [(r.state, r.error_message) for r in rows if r.state != "FINISHED"] == []


@distcore.remote(max_retries=0)
def dies_right_after_replying() -> str:
    import threading as _threading

    def die() -> None:
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)

    _threading.Thread(target=die, daemon=True).start()
    return "done"


def test_a_worker_killed_right_after_its_reply_leaves_the_task_finished(cluster):
    """The worker's own end report dies with it; the owner's record of the reply keeps the row right."""
    cluster.add_node(num_cpus=1)
    cluster.connect()
    assert distcore.get(dies_right_after_replying.remote(), timeout=30) == "done"
    (row,) = _wait_rows("dies_right_after_replying", lambda r: r.state in ("FINISHED", "FAILED"), timeout=20)
    assert (row.state, row.error_type) == ("FINISHED", None)
