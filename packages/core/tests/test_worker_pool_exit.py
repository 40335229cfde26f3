"""A worker's exit reaches the pool through its pidfd on the event loop: no polling loop has to run
for the death to be handled, and nothing is left registered with the loop afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from distcore._private.node_manager.worker_pool import WorkerPool, WorkerProc

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux 5.3+, Python 3.9+)"),
]


def _pidfds_of(pid: int) -> list[str]:
    """This process's open pidfds for ``pid`` (their fdinfo names the pid)."""
    found = []
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                if f"Pid:\t{pid}\n" in f.read():
                    found.append(fd)
        except OSError:
            continue
    return found


def _pool(tmp_path, deaths: list) -> WorkerPool:
    async def on_death(worker: WorkerProc, code: int | None) -> None:
        deaths.append((worker.worker_id, code))

    return WorkerPool(node_id="n1", node_address="127.0.0.1:1", gcs_address="127.0.0.1:2",
                      session_dir=str(tmp_path), session_name="s", token=None, on_death=on_death, soft_limit=1)


def test_an_exit_is_handled_without_the_polling_monitor(tmp_path) -> None:
    async def main() -> None:
        deaths: list = []
        pool = _pool(tmp_path, deaths)  # start_monitor() is never called: no poll runs
        proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(7)"])
        worker = WorkerProc("w1", proc, "")
        pool.workers[worker.worker_id] = worker
        pool._watch_exit(worker)
        assert worker.pidfd is not None
        for _ in range(200):
            if deaths:
                break
            await asyncio.sleep(0.05)
        assert deaths == [("w1", 7)]
        assert "w1" not in pool.workers and [w for _, w in pool.exited] == [worker]
        assert worker.pidfd is None  # closed and removed from the loop
        pool.shutdown()

    asyncio.run(main())


def test_shutdown_releases_the_pidfds_of_live_workers(tmp_path) -> None:
    async def main() -> None:
        pool = _pool(tmp_path, [])
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        worker = WorkerProc("w2", proc, "")
        pool.workers[worker.worker_id] = worker
        pool._watch_exit(worker)
        assert worker.pidfd is not None and _pidfds_of(proc.pid)
        pool.shutdown()  # kills it and waits
        assert worker.pidfd is None and proc.poll() is not None
        assert not _pidfds_of(proc.pid)

    asyncio.run(main())
