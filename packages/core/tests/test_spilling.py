"""Behaviour tests of spilling: a store smaller than the data put.

Referenced objects that do not fit are spilled to the session's disk and
restored transparently on ``get``; ``ObjectStoreFullError`` is raised only
when spilling cannot help (an object larger than the whole store).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import distcore
from distcore._private.testing import object_store_stats, wait_for
from distcore.exceptions import ObjectStoreFullError

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
STORE = 50 * MB


@pytest.fixture
def small_store(start_cluster):
    return start_cluster(num_cpus=2, object_store_memory=STORE)


def _array(i: int, size: int = 10 * MB) -> np.ndarray:
    arr = np.full(size // 8, i, dtype=np.int64)
    arr[::4096] = np.arange(len(arr[::4096])) + i  # not just one repeated value
    return arr


def _spill_files(stats: dict) -> list[str]:
    try:
        return [n for n in os.listdir(stats["spill_dir"]) if not n.endswith(".tmp")]
    except FileNotFoundError:
        return []


def test_put_four_times_the_store_and_get_everything_back(small_store):
    refs = [distcore.put(_array(i)) for i in range(20)]  # 200 MB into 50 MB
    stats = object_store_stats()
    assert stats["used"] <= STORE
    assert stats["spilled_bytes"] >= 150 * MB, stats
    assert stats["num_spilled"] >= 15
    assert len(_spill_files(stats)) == stats["num_spilled"]
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(distcore.get(ref), _array(i))
    # Reading in reverse order restores objects spilled by the reads above.
    for i in reversed(range(20)):
        np.testing.assert_array_equal(distcore.get(refs[i]), _array(i))
    assert object_store_stats()["spilled_bytes"] > 0


def test_get_of_a_list_larger_than_the_store(small_store):
    refs = [distcore.put(_array(i)) for i in range(20)]
    values = distcore.get(refs)  # 200 MB at once: restoring some spills others
    for i, value in enumerate(values):
        np.testing.assert_array_equal(value, _array(i))


def test_task_with_more_argument_bytes_than_the_store(small_store):
    @distcore.remote
    def firsts(*arrays):
        return [int(a[1]) for a in arrays]

    refs = [distcore.put(_array(i)) for i in range(8)]  # 80 MB of top-level arguments
    assert distcore.get(firsts.remote(*refs)) == list(range(8))


def test_tasks_read_spilled_objects(small_store):
    @distcore.remote
    def checksum(arr):
        return int(arr.sum())

    refs = [distcore.put(_array(i)) for i in range(12)]
    assert object_store_stats()["spilled_bytes"] > 0
    assert distcore.get([checksum.remote(r) for r in refs]) == [int(_array(i).sum()) for i in range(12)]


def test_task_results_spill_too(small_store):
    @distcore.remote
    def make(i):
        return _array(i)

    refs = [make.remote(i) for i in range(12)]
    distcore.wait(refs, num_returns=len(refs), timeout=60)
    assert object_store_stats()["spilled_bytes"] > 0
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(distcore.get(ref), _array(i))


def test_dropping_spilled_objects_frees_disk_and_memory(small_store):
    refs = [distcore.put(_array(i)) for i in range(12)]
    stats = object_store_stats()
    assert stats["spilled_bytes"] > 0 and _spill_files(stats)
    del refs
    wait_for(lambda: object_store_stats()["num_objects"] == 0, timeout=15,
             message=f"objects left after dropping every ref: {object_store_stats()}")
    after = object_store_stats()
    assert after["used"] == 0 and after["spilled_bytes"] == 0
    assert _spill_files(after) == []


def test_unreferenced_objects_are_not_spilled(small_store):
    for i in range(20):
        ref = distcore.put(_array(i))
        del ref
    time.sleep(0.5)
    stats = object_store_stats()
    assert stats["spilled_bytes"] == 0 and stats["num_objects"] == 0


def test_object_larger_than_the_store_raises_object_store_full(small_store):
    with pytest.raises(ObjectStoreFullError) as info:
        distcore.put(np.zeros(60 * MB, dtype=np.uint8))
    message = str(info.value)
    assert "larger than the object store's capacity" in message
    assert "object_store_memory" in message
    # The store is unharmed: a fitting object still goes in.
    ref = distcore.put(np.ones(10 * MB, dtype=np.uint8))
    assert int(distcore.get(ref).sum()) == 10 * MB
    assert object_store_stats()["num_objects"] == 1


def test_task_returning_more_than_the_store_fails_clearly(small_store):
    @distcore.remote
    def too_big():
        return np.zeros(60 * MB, dtype=np.uint8)

    with pytest.raises(ObjectStoreFullError, match="larger than the object store's capacity"):
        distcore.get(too_big.remote())


def test_an_object_being_read_is_not_spilled_from_under_the_reader(small_store):
    first = distcore.put(_array(100))
    view = distcore.get(first)
    refs = [distcore.put(_array(i)) for i in range(10)]
    # Whatever the store did with ``first``, the mapped view still reads right.
    np.testing.assert_array_equal(view, _array(100))
    np.testing.assert_array_equal(distcore.get(first), _array(100))
    del refs
