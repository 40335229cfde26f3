"""The memory monitor's pure parts: reading memory, choosing a victim, one sample's decision."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from distcore._private import protocol as p
from distcore._private.node_manager import memory_monitor as mm
from distcore._private.node_manager.memory_monitor import (
    Candidate,
    MemoryMonitor,
    MemoryReading,
    parse_cgroup,
    pick_victim,
    read_fake_usage,
    resolve_threshold,
)

GIB = 1024**3


# ---------------------------------------------------------------- configuration


def test_threshold_comes_from_config_then_env_then_default(monkeypatch):
    monkeypatch.delenv("DISTCORE_MEMORY_USAGE_THRESHOLD", raising=False)
    assert resolve_threshold(None) == 0.95
    monkeypatch.setenv("DISTCORE_MEMORY_USAGE_THRESHOLD", "0.8")
    assert resolve_threshold(None) == 0.8
    assert resolve_threshold(0.6) == 0.6


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, "lots"])
def test_a_bad_threshold_is_explained(monkeypatch, bad):
    monkeypatch.setenv("DISTCORE_MEMORY_USAGE_THRESHOLD", str(bad))
    with pytest.raises(ValueError, match="DISTCORE_MEMORY_USAGE_THRESHOLD must be"):
        resolve_threshold(None)


# ---------------------------------------------------------------- reading memory


def test_cgroup_v2_usage_leaves_out_inactive_file_pages():
    reading = parse_cgroup("1073741824\n", "600000000\n", "anon 1\ninactive_file 100000000\n", "inactive_file")
    assert reading == MemoryReading(500_000_000, 1073741824)


def test_an_unlimited_cgroup_does_not_apply():
    assert parse_cgroup("max\n", "5\n", "", "inactive_file") is None
    assert parse_cgroup("9223372036854771712\n", "5\n", "", "total_inactive_file") is None


def test_fake_usage_counts_plain_numbers_and_lines_of_live_pids(tmp_path):
    path = tmp_path / "used"
    path.write_text(f"1000\n{os.getpid()} 20\n999999 300\n")
    assert read_fake_usage(str(path), lambda pid: pid == os.getpid()) == 1020
    assert read_fake_usage(str(tmp_path / "missing"), lambda pid: True) is None


def test_the_fake_usage_file_replaces_the_used_bytes(tmp_path, monkeypatch):
    path = tmp_path / "used"
    path.write_text("12345")
    monkeypatch.setenv("DISTCORE_MEMORY_USAGE_FILE", str(path))
    reading = mm.read_memory()
    assert reading.used == 12345 and reading.total > 0


# ---------------------------------------------------------------- choosing a victim


def cand(worker_id, *, actor=False, retriable=True, order=0):
    return Candidate(worker_id, actor, retriable, order, worker_id)


def test_retriable_tasks_go_first_newest_first():
    chosen = pick_victim([cand("old-task", order=0), cand("new-task", order=2), cand("actor", actor=True, order=3)])
    assert chosen.worker_id == "new-task"


def test_then_restartable_actors_then_the_rest():
    final_task = cand("final-task", retriable=False, order=5)
    actor = cand("actor", actor=True, order=1)
    assert pick_victim([final_task, actor]).worker_id == "actor"
    final_actor = cand("final-actor", actor=True, retriable=False, order=9)
    assert pick_victim([final_task, final_actor]).worker_id == "final-task"
    assert pick_victim([final_actor]).worker_id == "final-actor"
    assert pick_victim([]) is None


# ---------------------------------------------------------------- one sample


class _Proc:
    def __init__(self, pid):
        self.pid = pid
        self.code = None

    def poll(self):
        return self.code


def _worker(worker_id, pid):
    return SimpleNamespace(worker_id=worker_id, proc=_Proc(pid), pid=pid, actor_id=None, killed_reason="")


def _lease(worker, *, owner=True, retriable=True, for_actor=None):
    address = p.Address("127.0.0.1", 1, "owner", "node") if owner else None
    req = p.LeaseRequest("l-" + worker.worker_id, {"CPU": 1}, None, "", "job", address, name="task-" + worker.worker_id,
                         for_actor=for_actor, retriable=retriable)
    return SimpleNamespace(request=req, worker=worker)


class _Pool:
    def __init__(self, workers):
        self.workers = {w.worker_id: w for w in workers}
        self.exited = []
        self.killed = []

    def kill(self, worker, reason):
        worker.killed_reason = worker.killed_reason or reason
        self.killed.append(worker.worker_id)


def _monitor(leases, used, threshold=0.9):
    workers = [lease.worker for lease in leases]
    pool = _Pool(workers)
    table = SimpleNamespace(leases={lease.request.lease_id: lease for lease in leases})
    reading = {"value": MemoryReading(used, 10 * GIB)}
    monitor = MemoryMonitor(node_id="n" * 32, node_ip="10.0.0.1", pool=pool, leases=table, threshold=threshold,
                            interval_s=0.25, read=lambda: reading["value"])
    return monitor, pool, reading


def test_below_the_threshold_nothing_is_killed():
    monitor, pool, _ = _monitor([_lease(_worker("a", 10**7))], used=5 * GIB)
    assert monitor.tick() is None and pool.killed == []


def test_above_the_threshold_the_newest_retriable_task_is_killed_and_remembered():
    old, new, entry = _worker("old", 10**7), _worker("new", 10**7 + 1), _worker("entry", 10**7 + 2)
    leases = [_lease(old), _lease(new), _lease(entry, owner=False)]  # no owner, no actor: a job entrypoint's
    monitor, pool, _ = _monitor(leases, used=int(9.5 * GIB))
    assert monitor.tick() == "new"
    info = monitor.death_info("new")
    assert info.memory is not None and info.memory.threshold == 0.9 and info.memory.used_bytes == int(9.5 * GIB)
    assert "memory monitor killed the worker" in new.killed_reason and "threshold 90%" in new.killed_reason
    # It waits for that worker to exit before it kills another.
    assert monitor.tick() is None and pool.killed == ["new"]
    new.proc.code = -9
    del pool.workers["new"]
    monitor.leases.leases.pop("l-new")
    assert monitor.tick() == "old"
    assert monitor.death_info("entry") is None


def test_death_info_reports_other_kill_reasons():
    worker = _worker("w", 10**7)
    monitor, pool, _ = _monitor([_lease(worker)], used=0)
    assert monitor.death_info("w") is None
    worker.killed_reason = "its placement group was removed"
    info = monitor.death_info("w")
    assert info.reason == "its placement group was removed" and info.memory is None
