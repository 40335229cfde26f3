"""Behaviour tests of distributed reference counting: objects are freed when
nothing refers to them any more, and not before.

The observable is the node's object store (``object_store_stats``): bytes
used and objects held. Objects under 100 KiB live in their owner's memory
instead, so the tests use values of 1 MB and more.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import distcore
from distcore._private.testing import object_store_stats, session_segments, wait_for
from distcore.exceptions import ObjectLostError

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


def _used() -> int:
    return object_store_stats()["used"]


def _num_objects() -> int:
    return object_store_stats()["num_objects"]


def _settle(timeout: float = 15.0) -> dict:
    """Wait until the store stops changing (earlier tests' frees landed)."""
    last = object_store_stats()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = object_store_stats()
        if (now["used"], now["num_objects"]) == (last["used"], last["num_objects"]):
            return now
        last = now
    return last


def _wait_used(expected: int, timeout: float = 15.0, what: str = "") -> None:
    """Wait until the store uses no more than ``expected`` bytes (the baseline).

    ``<=``: a free left over from an earlier test may land meanwhile.
    """
    wait_for(lambda: _used() <= expected, timeout=timeout,
             message=f"store used {_used()} bytes, expected at most {expected} {what}")


@pytest.fixture
def baseline(shared_cluster):
    gc.collect()
    return _settle()["used"]


def test_del_ref_frees_the_object(baseline):
    ref = distcore.put(np.ones(8 * MB, dtype=np.uint8))
    assert _used() >= baseline + 8 * MB
    del ref
    _wait_used(baseline, what="after del ref")


def test_memory_returns_to_baseline_after_a_loop_of_puts(shared_cluster, baseline):
    session = os.path.basename(shared_cluster["session_dir"]).removeprefix("session_")
    start_objects = _num_objects()
    start_segments = len(session_segments({session}))
    for i in range(50):
        ref = distcore.put(np.full(5 * MB, i, dtype=np.uint8))
        assert int(distcore.get(ref)[0]) == i
        del ref
    _wait_used(baseline, what="after 50 dropped puts of 5 MB")
    assert _num_objects() <= start_objects
    # The shared memory itself is gone too, not just the accounting.
    assert len(session_segments({session})) <= start_segments


def test_object_lives_while_any_ref_copy_lives(baseline):
    ref = distcore.put(np.ones(4 * MB, dtype=np.uint8))
    copies = [distcore.ObjectRef(ref.hex(), ref.owner_address()) for _ in range(3)]
    del ref
    time.sleep(0.5)
    assert _used() >= baseline + 4 * MB
    assert int(distcore.get(copies[0]).sum()) == 4 * MB
    del copies
    _wait_used(baseline, what="after the last copy went")


def test_a_got_array_outlives_its_ref(baseline):
    ref = distcore.put(np.arange(MB, dtype=np.int64))
    arr = distcore.get(ref)
    del ref
    time.sleep(0.5)
    # The object is freed, but the mapped array stays valid (read-only).
    assert int(arr[-1]) == MB - 1
    _wait_used(baseline, what="after the ref went (the reader's mapping does not pin it)")
    del arr


def test_large_task_returns_are_freed(baseline):
    @distcore.remote
    def make(i):
        return np.full(4 * MB, i, dtype=np.uint8)

    refs = [make.remote(i) for i in range(4)]
    assert [int(distcore.get(r)[0]) for r in refs] == [0, 1, 2, 3]
    assert _used() >= baseline + 16 * MB
    del refs
    _wait_used(baseline, what="after dropping task results")


def test_return_dropped_before_the_task_finishes_is_freed(baseline):
    @distcore.remote
    def make_later():
        time.sleep(0.5)
        return np.ones(4 * MB, dtype=np.uint8)

    ref = make_later.remote()
    task_id = ref.task_id()
    del ref
    time.sleep(2)
    _wait_used(baseline, what=f"after the result of task {task_id} arrived for a dropped ref")


def test_argument_stays_alive_while_the_task_is_pending(baseline):
    @distcore.remote
    def total(arr):
        time.sleep(0.5)
        return int(arr.sum())

    ref = distcore.put(np.ones(4 * MB, dtype=np.uint8))
    out = total.remote(ref)
    nested_out = total.remote(ref)
    del ref
    assert distcore.get([out, nested_out]) == [4 * MB, 4 * MB]
    _wait_used(baseline, what="after the tasks finished")


def test_large_argument_put_by_remote_is_freed_after_the_task(baseline):
    @distcore.remote
    def first(arr):
        return int(arr[0])

    assert distcore.get(first.remote(np.full(4 * MB, 9, dtype=np.uint8))) == 9
    _wait_used(baseline, what="after the task that got a large inline argument")


def test_refs_inside_a_put_object_stay_alive_while_the_outer_lives(baseline):
    inner = distcore.put(np.ones(4 * MB, dtype=np.uint8))
    inner_id = inner.hex()
    outer = distcore.put({"payload": [inner]})
    del inner
    gc.collect()
    time.sleep(0.5)
    assert _used() >= baseline + 4 * MB, "the inner object was freed while the outer still held it"
    [got] = distcore.get(outer)["payload"]
    assert got.hex() == inner_id and int(distcore.get(got).sum()) == 4 * MB
    del got
    time.sleep(0.3)
    assert _used() >= baseline + 4 * MB
    del outer
    _wait_used(baseline, what="after the outer object went")


def test_refs_inside_a_large_put_object(baseline):
    inner = distcore.put(np.ones(2 * MB, dtype=np.uint8))
    outer = distcore.put((np.zeros(2 * MB, dtype=np.uint8), inner))
    del inner
    time.sleep(0.3)
    _, got = distcore.get(outer)
    assert int(distcore.get(got).sum()) == 2 * MB
    del got
    time.sleep(0.3)
    _, again = distcore.get(outer)
    assert int(distcore.get(again).sum()) == 2 * MB
    del again, outer
    _wait_used(baseline, what="after the outer object went")


@pytest.mark.parametrize("large", [False, True], ids=["inline", "in-store"])
def test_refs_returned_inside_a_task_result(baseline, large):
    @distcore.remote
    def make(large):
        inner = distcore.put(np.ones(3 * MB, dtype=np.uint8))
        pad = np.zeros(MB if large else 1, dtype=np.uint8)
        return {"inner": inner, "pad": pad}

    outer = make.remote(large)
    got = distcore.get(outer)["inner"]
    assert int(distcore.get(got).sum()) == 3 * MB
    time.sleep(0.5)  # our borrow of it reached its owner
    del got
    gc.collect()
    time.sleep(0.5)
    # The task's worker owns the inner object; the outer result keeps it alive.
    again = distcore.get(outer)["inner"]
    assert int(distcore.get(again).sum()) == 3 * MB
    del again, outer
    _wait_used(baseline, what="after the task result holding a ref went")


def test_ref_borrowed_by_an_actor_outlives_the_drivers_ref(baseline):
    @distcore.remote
    class Keeper:
        def __init__(self):
            self.kept = None

        def keep(self, box):
            self.kept = box[0]
            return True

        def total(self):
            return int(distcore.get(self.kept).sum())

        def drop(self):
            self.kept = None
            return True

    keeper = Keeper.remote()
    ref = distcore.put(np.ones(6 * MB, dtype=np.uint8))
    assert distcore.get(keeper.keep.remote([ref]))
    del ref
    gc.collect()
    time.sleep(1.0)
    assert _used() >= baseline + 6 * MB, "freed while the actor still borrows it"
    assert distcore.get(keeper.total.remote()) == 6 * MB
    assert distcore.get(keeper.drop.remote())
    _wait_used(baseline, what="after the actor dropped its borrowed ref")
    distcore.kill(keeper)


def test_borrowed_ref_passed_on_to_a_second_borrower(baseline):
    @distcore.remote
    class Keeper:
        def __init__(self):
            self.kept = None

        def keep(self, box):
            self.kept = box[0]
            return True

        def hand_over(self, other):
            ok = distcore.get(other.keep.remote([self.kept]))
            self.kept = None
            return ok

        def total(self):
            return int(distcore.get(self.kept).sum())

        def drop(self):
            self.kept = None
            return True

    a, b = Keeper.remote(), Keeper.remote()
    ref = distcore.put(np.ones(5 * MB, dtype=np.uint8))
    assert distcore.get(a.keep.remote([ref]))
    del ref
    assert distcore.get(a.hand_over.remote(b))
    time.sleep(1.0)
    assert distcore.get(b.total.remote()) == 5 * MB
    assert distcore.get(b.drop.remote())
    _wait_used(baseline, what="after the second borrower dropped it")
    distcore.kill(a)
    distcore.kill(b)


def test_borrowed_ref_inside_a_put_object_stays_alive(baseline):
    @distcore.remote
    class Maker:
        def make(self):
            self.ref = distcore.put(np.ones(4 * MB, dtype=np.uint8))
            return [self.ref]

        def forget(self):
            self.ref = None
            return True

    maker = Maker.remote()
    [borrowed] = distcore.get(maker.make.remote())
    outer = distcore.put({"keep": borrowed})
    time.sleep(0.5)
    del borrowed
    assert distcore.get(maker.forget.remote())
    time.sleep(1.0)
    # Only our put object refers to it now.
    inner = distcore.get(outer)["keep"]
    assert int(distcore.get(inner).sum()) == 4 * MB
    del inner, outer
    _wait_used(baseline, what="after the put object holding a borrowed ref went")
    distcore.kill(maker)


def test_worker_owned_object_holding_a_driver_ref(baseline):
    @distcore.remote
    def wrap(box):
        return [distcore.put({"held": box[0], "pad": np.zeros(MB, dtype=np.uint8)})]

    ref = distcore.put(np.ones(3 * MB, dtype=np.uint8))
    [outer] = distcore.get(wrap.remote([ref]))
    del ref
    gc.collect()
    time.sleep(1.0)
    held = distcore.get(outer)["held"]
    assert int(distcore.get(held).sum()) == 3 * MB
    del held, outer
    _wait_used(baseline, what="after the worker-owned wrapper went")


def test_idle_workers_that_own_objects_are_not_retired(shared_cluster):
    @distcore.remote(num_cpus=0.1)
    def make(i):
        time.sleep(1.0)  # all at once: many workers, more than the idle pool keeps
        big = distcore.put(np.full(MB, i % 256, dtype=np.uint8))
        return [distcore.put(i), big, os.getpid()]

    outs = distcore.get([make.remote(i) for i in range(20)])
    assert len({pid for _, _, pid in outs}) > 8
    time.sleep(2.0)  # the pool trims its idle workers meanwhile
    for i, (small, big, _) in enumerate(outs):
        assert distcore.get(small, timeout=20) == i
        assert int(distcore.get(big, timeout=20)[0]) == i % 256


def test_objects_of_a_dead_owner_are_freed(baseline):
    @distcore.remote
    class Maker:
        def make(self):
            self.ref = distcore.put(np.ones(4 * MB, dtype=np.uint8))
            return [self.ref]

    maker = Maker.remote()
    [ref] = distcore.get(maker.make.remote())
    assert _used() >= baseline + 4 * MB
    distcore.kill(maker)
    with pytest.raises(ObjectLostError):
        distcore.get(ref, timeout=20)
    del ref
    _wait_used(baseline, what="after the owner of the object died")


def test_many_small_refs_do_not_leak(shared_cluster):
    from distcore._private import worker_state

    core = worker_state.core_worker()
    gc.collect()
    before = core.refs.num_objects()
    for i in range(200):
        assert distcore.get(distcore.put(i)) == i
    refs = [distcore.put(i) for i in range(200)]
    del refs
    gc.collect()
    wait_for(lambda: core.refs.num_objects() <= before, timeout=10,
             message=f"{core.refs.num_objects() - before} reference entries leaked")


def test_object_borrowed_by_a_killed_actor_is_freed(baseline):
    @distcore.remote
    class Keeper:
        def keep(self, box):
            self.kept = box[0]
            return True

    keeper = Keeper.remote()
    ref = distcore.put(np.ones(6 * MB, dtype=np.uint8))
    assert distcore.get(keeper.keep.remote([ref]))
    del ref
    gc.collect()
    time.sleep(0.5)
    assert _used() >= baseline + 6 * MB, "freed while the actor still borrows it"
    distcore.kill(keeper)
    # The owner notices the borrower's process is gone and frees the object.
    _wait_used(baseline, timeout=20, what="after the borrowing actor was killed")
