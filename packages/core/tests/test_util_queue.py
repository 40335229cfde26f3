"""Behaviour tests for distcore.util.queue (Queue, Empty, Full) on a real cluster."""

from __future__ import annotations

import asyncio
import pickle
import queue as stdlib_queue
import time

import pytest

import distcore
from distcore.exceptions import ActorDiedError, TaskError
from distcore.util.queue import Empty, Full, Queue


@distcore.remote
def produce(q, items, delay=0.0):
    time.sleep(delay)
    for item in items:
        q.put(item, timeout=30)
    return len(items)


@distcore.remote
def consume(q, n, timeout=30):
    return [q.get(timeout=timeout) for _ in range(n)]


@distcore.remote
class Consumer:
    def take(self, q, n):
        return [q.get(timeout=30) for _ in range(n)]


@distcore.remote
class AsyncUser:
    async def put_then_get(self, q, items):
        for item in items:
            await q.put_async(item, timeout=30)
        return [await q.get_async(timeout=30) for _ in items]

    async def get_with_timeout(self, q, timeout):
        try:
            return await q.get_async(timeout=timeout)
        except Empty as e:
            return f"Empty: {e}"

    async def put_with_timeout(self, q, item, timeout):
        try:
            await q.put_async(item, timeout=timeout)
        except Full as e:
            return f"Full: {e}"
        return "put"

    async def nowait_both(self, q):
        out = []
        try:
            await q.get_async(block=False)
        except Empty:
            out.append("empty")
        await q.put_async("a", block=False)
        try:
            await q.put_async("b", block=False)
        except Full:
            out.append("full")
        out.append(await q.get_async(block=False))
        return out

    async def gather_gets(self, q, n):
        return sorted(await asyncio.gather(*(q.get_async(timeout=30) for _ in range(n))))


@pytest.fixture
def q(shared_cluster):
    queue = Queue()
    yield queue
    queue.shutdown(force=True)


@pytest.fixture
def q2(shared_cluster):
    queue = Queue(maxsize=2)
    yield queue
    queue.shutdown(force=True)


# ---------------------------------------------------------------- basics


def test_items_come_out_in_fifo_order_and_size_tracks_them(q):
    assert q.empty() and q.qsize() == 0 and len(q) == 0
    assert q.qsize(timeout=30) == 0 and q.empty(timeout=30) and not q.full(timeout=30)
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5 and q.size() == 5 and len(q) == 5
    assert not q.empty()
    assert not q.full()  # unbounded: never full
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert q.empty()


def test_full_reports_a_bounded_queue_at_capacity(q2):
    q2.put("a")
    assert not q2.full()
    q2.put("b")
    assert q2.full() and q2.qsize() == 2
    q2.get()
    assert not q2.full()


def test_exceptions_subclass_the_standard_library_ones():
    assert issubclass(Empty, stdlib_queue.Empty)
    assert issubclass(Full, stdlib_queue.Full)


# ---------------------------------------------------------------- blocking and timeouts


def test_put_on_a_full_queue_times_out_with_full(q2):
    q2.put_nowait_batch([1, 2])
    start = time.monotonic()
    with pytest.raises(Full, match=r"full \(maxsize=2\).*timed out after 0.3 s"):
        q2.put(3, timeout=0.3)
    assert 0.25 < time.monotonic() - start < 5
    with pytest.raises(Full):
        q2.put(3, block=False)
    with pytest.raises(stdlib_queue.Full):
        q2.put_nowait(3)
    with pytest.raises(Full):
        q2.put(3, timeout=0)
    assert q2.get_nowait_batch(2) == [1, 2]  # the failed puts added nothing


def test_get_on_an_empty_queue_times_out_with_empty(q):
    start = time.monotonic()
    with pytest.raises(Empty, match="empty.*timed out after 0.3 s"):
        q.get(timeout=0.3)
    assert 0.25 < time.monotonic() - start < 5
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_blocked_get_returns_when_an_item_arrives(q):
    ref = produce.remote(q, ["late"], delay=0.5)
    assert q.get(timeout=30) == "late"
    assert distcore.get(ref, timeout=30) == 1


def test_blocked_put_returns_when_room_is_made(q2):
    q2.put_nowait_batch(["a", "b"])
    ref = produce.remote(q2, ["c"])  # blocks until the driver takes one
    time.sleep(0.3)
    assert q2.qsize() == 2
    assert q2.get(timeout=5) == "a"
    assert distcore.get(ref, timeout=30) == 1
    assert q2.get_nowait_batch(2) == ["b", "c"]


def test_negative_timeouts_are_rejected(q):
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    assert q.empty()


# ---------------------------------------------------------------- sharing


def test_a_producer_task_feeds_a_consumer_actor(q2):
    # The queue holds 2, so producer and consumer must run at the same time.
    consumer = Consumer.remote()
    taken = consumer.take.remote(q2, 20)
    produced = produce.remote(q2, list(range(20)))
    assert distcore.get(produced, timeout=60) == 20
    assert distcore.get(taken, timeout=60) == list(range(20))
    assert q2.empty()


def test_several_consumers_split_the_items_without_loss(q):
    refs = [consume.remote(q, 5) for _ in range(3)]
    q.put_nowait_batch(range(15))
    got = distcore.get(refs, timeout=60)
    assert all(len(part) == 5 for part in got)
    assert sorted(x for part in got for x in part) == list(range(15))
    for part in got:  # each consumer sees its items in FIFO order
        assert part == sorted(part)


def test_a_queue_pickles_as_its_actor_handle(q):
    copy = pickle.loads(pickle.dumps(q))
    assert isinstance(copy, Queue)
    assert copy.actor == q.actor and copy.maxsize == q.maxsize
    copy.put("via copy")
    assert q.get(timeout=5) == "via copy"
    # Nested in a container, too.
    assert distcore.get(consume.remote({"q": q}["q"], 0), timeout=30) == []


# ---------------------------------------------------------------- batches


def test_put_nowait_batch_is_all_or_nothing(shared_cluster):
    q = Queue(maxsize=3)
    try:
        q.put_nowait_batch([1, 2])
        with pytest.raises(Full, match="Cannot add 2 items to queue of size 2 and maxsize 3"):
            q.put_nowait_batch([3, 4])
        assert q.qsize() == 2
        q.put_nowait_batch(iter([3]))  # any iterable
        assert q.full()
        with pytest.raises(TypeError, match="iterable"):
            q.put_nowait_batch(5)
    finally:
        q.shutdown(force=True)


def test_get_nowait_batch_is_all_or_nothing(q):
    q.put_nowait_batch(["a", "b", "c"])
    with pytest.raises(Empty, match="Cannot get 4 items from queue of size 3"):
        q.get_nowait_batch(4)
    assert q.qsize() == 3
    assert q.get_nowait_batch(0) == []
    assert q.get_nowait_batch(2) == ["a", "b"]
    assert q.get_nowait_batch(1) == ["c"]
    with pytest.raises(TypeError, match="int"):
        q.get_nowait_batch(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        q.get_nowait_batch(-1)


# ---------------------------------------------------------------- async


def test_async_put_and_get_from_an_async_actor(q):
    user = AsyncUser.remote()
    assert distcore.get(user.put_then_get.remote(q, [1, 2, 3]), timeout=30) == [1, 2, 3]
    q.put("from driver")
    assert distcore.get(user.get_with_timeout.remote(q, 5), timeout=30) == "from driver"


def test_async_timeouts_raise_empty_and_full(q2):
    user = AsyncUser.remote()
    msg = distcore.get(user.get_with_timeout.remote(q2, 0.2), timeout=30)
    assert msg.startswith("Empty: ") and "timed out after 0.2 s" in msg
    q2.put_nowait_batch([1, 2])
    msg = distcore.get(user.put_with_timeout.remote(q2, 3, 0.2), timeout=30)
    assert msg.startswith("Full: ") and "timed out after 0.2 s" in msg
    assert q2.get_nowait_batch(2) == [1, 2]


def test_async_non_blocking_calls(shared_cluster):
    q = Queue(maxsize=1)
    try:
        user = AsyncUser.remote()
        assert distcore.get(user.nowait_both.remote(q), timeout=30) == ["empty", "full", "a"]
    finally:
        q.shutdown(force=True)


def test_concurrent_async_gets_in_one_actor_all_complete(q):
    user = AsyncUser.remote()
    ref = user.gather_gets.remote(q, 4)
    time.sleep(0.2)
    q.put_nowait_batch([4, 3, 2, 1])
    assert distcore.get(ref, timeout=30) == [1, 2, 3, 4]


def test_put_async_and_get_async_from_the_driver(q):
    async def main():
        await q.put_async("x", timeout=5)
        return await q.get_async(timeout=5)

    assert asyncio.run(main()) == "x"


# ---------------------------------------------------------------- options and shutdown


def test_actor_options_reach_the_queue_actor(shared_cluster):
    q = Queue(actor_options={"name": "util-queue-test", "num_cpus": 0})
    try:
        same = distcore.get_actor("util-queue-test")
        assert same == q.actor
        q.put(1)
        assert distcore.get(same.qsize.remote(), timeout=30) == 1
    finally:
        q.shutdown(force=True)


def test_bad_arguments_name_the_problem(shared_cluster):
    with pytest.raises(TypeError, match="maxsize must be an int"):
        Queue(maxsize="3")
    with pytest.raises(TypeError, match="actor_options must be a dict"):
        Queue(actor_options=[("num_cpus", 1)])


def test_shutdown_ends_the_actor_and_later_calls_fail(shared_cluster):
    q = Queue()
    q.put(1)
    copy = pickle.loads(pickle.dumps(q))
    q.shutdown()
    q.shutdown()  # harmless
    with pytest.raises(ActorDiedError, match="shut down"):
        q.put(2)
    with pytest.raises(ActorDiedError, match="shut down"):
        q.qsize()
    with pytest.raises(ActorDiedError):  # other copies see a dead actor
        copy.get(timeout=5)


def test_shutdown_fails_a_blocked_consumer(shared_cluster):
    q = Queue()
    waiting = consume.remote(q, 1, None)  # blocks forever on an empty queue
    time.sleep(0.3)
    start = time.monotonic()
    q.shutdown(grace_period_s=1)
    assert time.monotonic() - start < 5
    # The consumer's get raised ActorDiedError, so the task failed with it.
    with pytest.raises(TaskError) as info:
        distcore.get(waiting, timeout=30)
    assert isinstance(info.value.cause, ActorDiedError)


def test_force_shutdown_kills_at_once(shared_cluster):
    q = Queue()
    actor = q.actor
    q.shutdown(force=True)
    with pytest.raises(ActorDiedError):
        distcore.get(actor.qsize.remote(), timeout=30)
