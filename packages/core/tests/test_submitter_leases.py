"""Lease reuse by the task submitter (core_worker/submitter.py): a worker that finishes one task after
another keeps its lease; one left idle for ``LEASE_LINGER_S`` is given back."""

from __future__ import annotations

import asyncio
import time

from distcore._private import protocol as p
from distcore._private.core_worker import submitter as sub


class _Client:
    def __init__(self, returned: list) -> None:
        self.returned = returned

    async def call(self, service, method, request=None, timeout=None):
        assert (service, method) == ("NodeManager", "ReturnWorker")
        self.returned.append((request.lease_id, time.monotonic()))


class _Clients:
    def __init__(self) -> None:
        self.returned: list = []

    def get(self, address):
        return _Client(self.returned)


class _Core:
    def __init__(self) -> None:
        self.clients = _Clients()


def _leased(lease_id: str) -> sub._Leased:
    worker = p.Address("127.0.0.1", 1, "w" + lease_id, "n")
    return sub._Leased(lease_id, worker, "127.0.0.1:2", {}, [])


def test_a_worker_busy_every_few_ms_keeps_its_lease_and_an_idle_one_is_returned():
    async def scenario():
        core = _Core()
        submitter = sub.TaskSubmitter(core)  # type: ignore[arg-type]
        state = sub._KeyState()
        working, idle = _leased("a"), _leased("b")
        state.leased += [working, idle]
        start = time.monotonic()
        submitter._pump("key", state)  # empty queue: arms the linger timer
        # A sync loop: a task every 20 ms for 3 lingers, the worker idle only between tasks.
        while time.monotonic() - start < 3 * sub.LEASE_LINGER_S:
            working.busy = True
            await asyncio.sleep(0.015)
            working.busy = False
            working.idle_since = time.monotonic()
            submitter._pump("key", state)
            await asyncio.sleep(0.005)
        returned = [lease for lease, _ in core.clients.returned]
        assert returned == ["b"], "only the worker that ran nothing is given back"
        assert state.leased == [working]
        stopped = time.monotonic()
        await asyncio.sleep(2.5 * sub.LEASE_LINGER_S)
        assert [lease for lease, _ in core.clients.returned] == ["b", "a"]
        assert core.clients.returned[1][1] - stopped >= sub.LEASE_LINGER_S - 0.01
        assert state.leased == [] and state.linger is None
        await submitter.close()

    asyncio.run(scenario())
