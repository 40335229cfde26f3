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
