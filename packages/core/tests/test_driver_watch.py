"""Noticing dead drivers: the liveness bookkeeping and the ping loop (over a fake pool)."""

from __future__ import annotations

import asyncio

from distcore._private import protocol as p
from distcore._private.gcs.driver_watch import (
    OK,
    SILENT,
    UNREACHABLE,
    DriverLiveness,
    watch_drivers,
)
from distcore._private.rpc import RpcUnavailable


def test_a_refusing_driver_is_dead_after_three_pings_in_a_row():
    live = DriverLiveness(unreachable_after=3, silent_after_s=30)
    assert not live.observe("j", UNREACHABLE, 0.0)
    assert not live.observe("j", UNREACHABLE, 1.0)
    assert live.observe("j", UNREACHABLE, 2.0)


def test_an_answer_resets_the_count():
    live = DriverLiveness(unreachable_after=2, silent_after_s=30)
    assert not live.observe("j", UNREACHABLE, 0.0)
    assert not live.observe("j", OK, 1.0)
    assert not live.observe("j", UNREACHABLE, 2.0)


def test_a_silent_driver_gets_the_longer_timeout():
    live = DriverLiveness(unreachable_after=2, silent_after_s=10)
    assert not live.observe("j", SILENT, 0.0)
    assert not live.observe("j", SILENT, 5.0)
    assert live.observe("j", SILENT, 10.0)


class _Client:
    def __init__(self, alive):
        self.alive = alive

    async def call(self, service, method, request=None, timeout=None):
        assert (service, method) == ("Health", "Check")
        if not self.alive:
            raise RpcUnavailable("connection refused")
        return "ok"


class _Pool:
    def __init__(self, alive):
        self.clients = {t: _Client(a) for t, a in alive.items()}
        self.dropped = []

    def get(self, target):
        return self.clients[target]

    def drop(self, target):
        self.dropped.append(target)


def test_the_loop_ends_the_jobs_of_dead_drivers_only():
    jobs = {
        "01": p.JobInfo("01", driver_address=p.Address("127.0.0.1", 1, "w1", "n")),
        "02": p.JobInfo("02", driver_address=p.Address("127.0.0.1", 2, "w2", "n")),
        "03": p.JobInfo("03", driver_address=p.Address("127.0.0.1", 3, "w3", "n"), is_dead=True),
    }
    pool = _Pool({"127.0.0.1:1": False, "127.0.0.1:2": True, "127.0.0.1:3": False})
    ended = []

    async def on_dead(job_id):
        ended.append(job_id)
        jobs[job_id].is_dead = True

    async def run():
        task = asyncio.ensure_future(watch_drivers(lambda: jobs, pool, on_dead, interval_s=0.001))
        for _ in range(200):
            await asyncio.sleep(0.002)
            if ended:
                break
        await asyncio.sleep(0.02)
        task.cancel()

    asyncio.run(run())
    assert ended == ["01"] and pool.dropped == ["127.0.0.1:1"]


def test_a_silent_driver_whose_process_lives_on_this_host_is_only_slow():
    import os
    import subprocess
    import sys

    from distcore._private.gcs.driver_watch import _local_ips, alive_on_this_host

    ips = _local_ips()
    here = p.JobInfo("01", driver_address=p.Address("127.0.0.1", 1, "w1", "n"), driver_pid=os.getpid())
    assert alive_on_this_host(here, ips)
    # A remote driver: the ping decides, not the local process table.
    remote = p.JobInfo("02", driver_address=p.Address("203.0.113.9", 1, "w2", "n"), driver_pid=os.getpid())
    assert not alive_on_this_host(remote, ips)
    # A driver process that has exited is not alive, even on this host.
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = p.JobInfo("03", driver_address=p.Address("127.0.0.1", 1, "w3", "n"), driver_pid=int(done.stdout))
    assert not alive_on_this_host(gone, ips)
