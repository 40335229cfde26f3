"""Many callers with many calls in flight to one actor (issue 3's n:n hang).

gRPC core used to cancel calls queued beyond its pending-request limits
(1,000 soft / 3,000 hard) before the actor's io loop accepted them: the
caller saw a bare CANCELLED on a live actor, and the actor parked every later
call of that caller behind the missing sequence number.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import distcore
from distcore._private import protocol as p
from distcore._private.core_worker import executor as executor_mod
from distcore._private.rpc import RpcClient, RpcServer

CALLERS = 3
CALLS = 1_200  # per caller: 3,600 in flight at once, above gRPC's 3,000 hard limit


class _Slow:
    async def rpc_Echo(self, request):
        time.sleep(0.0003)  # a busy io loop: requests queue up in gRPC core
        return request


def test_a_server_accepts_thousands_of_queued_calls():
    async def main():
        server = RpcServer("token")
        server.add_service("S", _Slow())
        port = await server.start()
        client = RpcClient(f"127.0.0.1:{port}", "token")
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(client.call("S", "Echo", i) for i in range(4_000)), return_exceptions=True), 90
            )
        finally:
            await client.close()
            await server.stop(0)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} calls failed, first: {errors[0]!r}"
        assert results == list(range(4_000))

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["async", "threaded"])
def test_many_callers_many_calls_in_flight_to_one_actor(shared_cluster, kind):
    if kind == "async":
        @distcore.remote(num_cpus=0)
        class Counter:
            def __init__(self):
                self.seen = {}

            async def hit(self, caller, i):
                self.seen[caller] = self.seen.get(caller, 0) + 1
                return i

            async def counts(self):
                return self.seen
    else:
        @distcore.remote(num_cpus=0, max_concurrency=4)
        class Counter:
            def __init__(self):
                self.seen = {}

            def hit(self, caller, i):
                self.seen[caller] = self.seen.get(caller, 0) + 1
                return i

            def counts(self):
                return self.seen

    @distcore.remote(num_cpus=0)
    def caller(actor, name, n):
        refs = [actor.hit.remote(name, i) for i in range(n)]
        return distcore.get(refs, timeout=90) == list(range(n))

    actor = Counter.remote()
    distcore.get(actor.counts.remote(), timeout=60)
    ok = distcore.get([caller.remote(actor, f"c{k}", CALLS) for k in range(CALLERS)], timeout=110)
    assert ok == [True] * CALLERS
    assert distcore.get(actor.counts.remote(), timeout=30) == {f"c{k}": CALLS for k in range(CALLERS)}
    distcore.kill(actor)


class _Core:
    """Just what Executor's ordering of actor calls touches."""


def test_every_gap_in_a_callers_sequence_is_skipped(monkeypatch):
    """Two calls that never arrive: the calls after each gap still run."""
    monkeypatch.setattr(executor_mod, "SEQ_GAP_TIMEOUT_S", 0.05)

    async def main():
        ex = executor_mod.Executor(_Core())  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        for seq in (0, 2, 3, 5, 6):  # 1 and 4 never arrive
            spec = p.TaskSpec(
                task_id=f"t{seq}", job_id="j", kind=p.ACTOR_TASK, name="A.m", function_id="", args=[],
                kwargs={}, num_returns=1, return_ids=[], owner=None, resources={},  # type: ignore[arg-type]
                actor_id="a", method_name="m", seq_no=seq, caller_id="caller", incarnation=0,
            )
            ex._order_actor_call(p.PushTask(spec), loop.create_future())
        await asyncio.sleep(0.5)
        ran = []
        while not ex.main_queue.empty():
            ran.append(ex.main_queue.get()[0].spec.seq_no)
        return ran

    assert asyncio.run(main()) == [0, 2, 3, 5, 6]
