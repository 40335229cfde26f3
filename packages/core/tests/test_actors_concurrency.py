"""Behaviour tests for concurrent actors: threaded (max_concurrency), async
actors, and generator methods."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import distcore
from distcore._private.testing import wait_for
from distcore.exceptions import TaskCancelledError

# ---------------------------------------------------------------- threaded actors


def test_threaded_actor_runs_calls_concurrently(shared_cluster):
    @distcore.remote(max_concurrency=4)
    class Gate:
        def __init__(self):
            self.barrier = threading.Barrier(4, timeout=20)

        def meet(self):
            # Only passes if four calls are inside the actor at the same time.
            self.barrier.wait()
            return threading.get_ident()

    gate = Gate.remote()
    threads = distcore.get([gate.meet.remote() for _ in range(4)], timeout=60)
    assert len(set(threads)) == 4


def test_threaded_actor_overlaps_sleeps(shared_cluster):
    @distcore.remote(max_concurrency=4)
    class Sleeper:
        def nap(self, s):
            time.sleep(s)
            return s

    s = Sleeper.remote()
    distcore.get(s.nap.remote(0), timeout=30)  # created
    start = time.monotonic()
    assert distcore.get([s.nap.remote(1.0) for _ in range(4)], timeout=60) == [1.0] * 4
    assert time.monotonic() - start < 3.0  # one after another would take 4 s


def test_default_actor_runs_one_call_at_a_time(shared_cluster):
    @distcore.remote
    class Single:
        def __init__(self):
            self.active = 0
            self.peak = 0

        def work(self):
            self.active += 1
            self.peak = max(self.peak, self.active)
            time.sleep(0.05)
            self.active -= 1

        def peak_(self):
            return self.peak

    s = Single.remote()
    distcore.get([s.work.remote() for _ in range(8)], timeout=30)
    assert distcore.get(s.peak_.remote(), timeout=30) == 1


# ---------------------------------------------------------------- async actors


@distcore.remote
class AsyncSleeper:
    def __init__(self):
        self.calls = 0
        self.active = 0
        self.peak = 0

    async def nap(self, s):
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(s)
        finally:
            self.active -= 1
        return s

    async def peak_(self):
        return self.peak

    async def loop_id(self):
        return id(asyncio.get_running_loop())

    async def calls_(self):
        return self.calls


def test_async_actor_runs_coroutines_concurrently(shared_cluster):
    a = AsyncSleeper.remote()
    distcore.get(a.nap.remote(0), timeout=30)
    start = time.monotonic()
    assert distcore.get([a.nap.remote(0.5) for _ in range(10)], timeout=30) == [0.5] * 10
    assert time.monotonic() - start < 2.5  # one after another would take 5 s
    assert distcore.get(a.peak_.remote(), timeout=30) == 10
    loops = distcore.get([a.loop_id.remote() for _ in range(5)], timeout=30)
    assert len(set(loops)) == 1
    assert distcore.get(a.calls_.remote(), timeout=30) == 11


def test_async_actor_max_concurrency_limits_overlap(shared_cluster):
    a = AsyncSleeper.options(max_concurrency=2).remote()
    distcore.get([a.nap.remote(0.3) for _ in range(6)], timeout=30)
    assert distcore.get(a.peak_.remote(), timeout=30) == 2


def test_async_actor_can_await_refs_and_call_other_actors(shared_cluster):
    @distcore.remote
    def produce():
        return 21

    @distcore.remote
    class Awaiter:
        async def double(self, ref_list, other):
            value = await ref_list[0]
            pong = await other.nap.remote(0.1)
            return value * 2, pong

    other = AsyncSleeper.remote()
    a = Awaiter.remote()
    assert distcore.get(a.double.remote([produce.remote()], other), timeout=30) == (42, 0.1)


def test_async_actor_sync_method_and_error(shared_cluster):
    @distcore.remote
    class Mixed:
        async def fail(self):
            await asyncio.sleep(0)
            raise KeyError("async boom")

        def plain(self):
            return "sync method on an async actor"

    m = Mixed.remote()
    with pytest.raises(KeyError, match="async boom"):
        distcore.get(m.fail.remote(), timeout=30)
    assert distcore.get(m.plain.remote(), timeout=30) == "sync method on an async actor"


def test_driver_can_await_actor_refs(shared_cluster):
    a = AsyncSleeper.remote()

    async def main():
        return await asyncio.gather(*[a.nap.remote(0.2) for _ in range(3)])

    assert asyncio.run(main()) == [0.2, 0.2, 0.2]


# ---------------------------------------------------------------- generators


@distcore.remote
class Streamer:
    def count(self, n):
        yield from range(n)

    def gated(self, path):
        yield "first"
        # Waits for the caller, who creates ``path`` only once it holds the first item.
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield "released" if os.path.exists(path) else "not streamed"

    def broken(self):
        yield 1
        raise RuntimeError("generator broke")


def test_streaming_generator_method(shared_cluster):
    s = Streamer.remote()
    gen = s.count.options(num_returns="streaming").remote(5)
    assert [distcore.get(r, timeout=30) for r in gen] == [0, 1, 2, 3, 4]


def test_generator_method_streams_by_default(shared_cluster):
    s = Streamer.remote()
    assert [distcore.get(r, timeout=30) for r in s.count.remote(3)] == [0, 1, 2]


def test_streaming_items_arrive_before_the_method_ends(shared_cluster, tmp_path):
    gate = tmp_path / "gate"
    gen = Streamer.remote().gated.remote(str(gate))
    assert distcore.get(next(gen), timeout=60) == "first"
    gate.touch()
    assert [distcore.get(r, timeout=60) for r in gen] == ["released"]


@distcore.remote
class AsyncStreamer:
    def __init__(self):
        self.queue = None

    async def acount(self, n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i * 10

    async def loop_id(self):
        return id(asyncio.get_running_loop())

    async def loop_ids(self, n):
        for _ in range(n):
            yield id(asyncio.get_running_loop())

    async def feed(self, items):
        if self.queue is None:
            self.queue = asyncio.Queue()
        for item in items:
            await self.queue.put(item)

    async def drain(self, n):
        if self.queue is None:
            self.queue = asyncio.Queue()
        for _ in range(n):
            yield await self.queue.get()


def test_async_generator_method_on_async_actor(shared_cluster):
    s = AsyncStreamer.remote()
    assert [distcore.get(r, timeout=30) for r in s.acount.remote(4)] == [0, 10, 20, 30]


def test_async_generator_runs_on_the_actor_event_loop(shared_cluster):
    s = AsyncStreamer.remote()
    loop = distcore.get(s.loop_id.remote(), timeout=30)
    assert [distcore.get(r, timeout=30) for r in s.loop_ids.remote(2)] == [loop, loop]
    # A generator consuming a queue that another method fills, concurrently.
    gen = s.drain.remote(3)
    distcore.get(s.feed.remote(["a", "b", "c"]), timeout=30)
    assert [distcore.get(r, timeout=30) for r in gen] == ["a", "b", "c"]


def test_generator_error_is_the_last_item(shared_cluster):
    s = Streamer.remote()
    gen = s.broken.options(num_returns="streaming").remote()
    assert distcore.get(next(gen), timeout=30) == 1
    with pytest.raises(RuntimeError, match="generator broke"):
        distcore.get(next(gen), timeout=30)


# ---------------------------------------------------------------- cancellation


@distcore.remote
class Worker:
    def __init__(self):
        self.finished = []

    def work(self, name, seconds, started=None):
        if started:
            open(started, "w").close()
        time.sleep(seconds)
        self.finished.append(name)
        return name

    def finished_(self):
        return list(self.finished)


def test_cancel_a_queued_actor_call(shared_cluster):
    w = Worker.remote()
    running = w.work.remote("running", 1.5)
    queued = w.work.remote("queued", 0)
    distcore.cancel(queued)
    with pytest.raises(TaskCancelledError):
        distcore.get(queued, timeout=30)
    # The running call is not interrupted: actors keep their state consistent.
    assert distcore.get(running, timeout=30) == "running"
    assert distcore.get(w.finished_.remote(), timeout=30) == ["running"]


def test_cancel_does_not_interrupt_a_running_threaded_actor_call(shared_cluster, tmp_path):
    started = tmp_path / "started"
    w = Worker.options(max_concurrency=2).remote()
    running = w.work.remote("threaded", 1.0, str(started))
    wait_for(started.exists, timeout=30, message="the call never started")
    distcore.cancel(running)
    distcore.wait([running], timeout=30)
    assert distcore.get(w.finished_.remote(), timeout=30) == ["threaded"]


def test_cancel_a_running_async_actor_call(shared_cluster):
    @distcore.remote
    class AsyncWorker:
        def __init__(self):
            self.cleaned_up = False
            self.started = False

        async def started_(self):
            return self.started

        async def wait_forever(self):
            self.started = True
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cleaned_up = True
                raise

        async def cleaned_up_(self):
            return self.cleaned_up

    a = AsyncWorker.remote()
    distcore.get(a.cleaned_up_.remote(), timeout=30)
    ref = a.wait_forever.remote()
    wait_for(lambda: distcore.get(a.started_.remote(), timeout=30), timeout=30, message="the call never started")
    start = time.monotonic()
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=30)
    assert time.monotonic() - start < 5
    assert distcore.get(a.cleaned_up_.remote(), timeout=30) is True


def test_force_cancel_of_an_actor_call_is_refused(shared_cluster):
    w = Worker.remote()
    ref = w.work.remote("x", 1.0)
    with pytest.raises(ValueError, match="force=True"):
        distcore.cancel(ref, force=True)
    assert distcore.get(ref, timeout=30) == "x"
