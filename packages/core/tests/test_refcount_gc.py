"""An ``ObjectRef`` collected by the garbage collector while its process is
inside the reference counter (a cycle freed during an allocation) must not
deadlock the process, and its release must still happen."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import distcore
from distcore._private.core_worker.references import ReferenceCounter
from distcore._private.testing import object_store_stats, wait_for

pytestmark = pytest.mark.timeout(120)


def test_release_from_a_finalizer_inside_the_lock_is_parked_then_applied():
    released: list[str] = []
    refs = ReferenceCounter(on_release=lambda oid, entry: released.append(oid))
    refs.add_owned("a", local=1)
    refs.add_owned("b", local=1)
    done = threading.Event()

    def finalizer_inside_critical_section():
        with refs._lock:  # what add_owned holds when the collector runs a finalizer
            refs.remove_local("a")
        done.set()

    worker = threading.Thread(target=finalizer_inside_critical_section, daemon=True)
    worker.start()
    assert done.wait(5), "remove_local from inside the lock deadlocked"
    assert released == []  # parked, not applied under the caller's feet
    refs.remove_local("b")  # the next release applies the parked one too
    assert sorted(released) == ["a", "b"]
    assert refs.num_objects() == 0


class _Cycle:
    def __init__(self, ref):
        self.ref = ref
        self.me = self


def test_cycles_holding_refs_collected_during_puts_neither_hang_nor_leak(shared_cluster):
    before = object_store_stats()["num_objects"]
    old = gc.get_threshold()
    gc.set_threshold(10, 1, 1)  # collect often, so some collections land inside the counter
    try:
        for _ in range(300):
            _Cycle(distcore.put(np.zeros(200_000, dtype=np.uint8)))  # store-sized, garbage at once
        gc.collect()
    finally:
        gc.set_threshold(*old)
    distcore.get(distcore.put(1), timeout=30)  # the process still answers
    distcore.put(np.zeros(1, dtype=np.uint8))  # one more release drains any parked one
    wait_for(lambda: object_store_stats()["num_objects"] <= before, timeout=20, message="collected refs were not freed")
