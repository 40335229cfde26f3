"""Recycled segments: a freed segment no reader mapped serves the next write of its size.

Unit tests drive :class:`LocalObjectStore` directly; the cluster tests check what
a user sees: values stay right, a zero-copy view of a freed object never
changes, and nothing is left in /dev/shm.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import distcore
from distcore._private.core_worker.objects import _fill
from distcore._private.object_store import recycle, shm
from distcore._private.object_store.store import LocalObjectStore
from distcore._private.serialization import deserialize, serialize
from distcore._private.worker_state import core_worker

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20




@pytest.fixture
def store(session: str, tmp_path: Path) -> Iterator[LocalObjectStore]:
    s = LocalObjectStore(session, 64 * MB, str(tmp_path / "spill"), recycle_bytes=32 * MB)
    yield s
    s.close()


def _oid(i: int) -> str:
    return f"{i:040x}"


def _put(store: LocalObjectStore, i: int, value: np.ndarray) -> bool:
    """Write ``value`` as a writer process does; return whether the segment was recycled."""
    serialized = serialize(value)
    name, recycled = store.create_recyclable(_oid(i), serialized.total_size)
    _fill(name, serialized, recycled)
    store.seal(_oid(i))
    return recycled


def _get(store: LocalObjectStore, i: int) -> np.ndarray:
    loc = store.ensure_local(_oid(i))
    assert loc is not None
    return deserialize(shm.open_segment(loc[0]).buffer)


def _inode(store: LocalObjectStore, i: int) -> int:
    return os.stat(shm.segment_path(store.segment_name(_oid(i)))).st_ino


def test_a_freed_unread_segment_serves_the_next_write(store: LocalObjectStore) -> None:
    a = np.arange(2 * MB, dtype=np.uint8)
    assert _put(store, 1, a) is False  # nothing to recycle yet
    inode = _inode(store, 1)
    store.delete([_oid(1)])
    stats = store.stats()
    assert stats["used"] == 0 and stats["num_recycled"] == 1 and stats["recycled_bytes"] > 2 * MB
    b = np.full(2 * MB, 7, dtype=np.uint8)
    assert _put(store, 2, b) is True
    assert _inode(store, 2) == inode  # the same file, renamed
    np.testing.assert_array_equal(_get(store, 2), b)
    stats = store.stats()
    assert stats["num_recycled"] == 0 and stats["num_recycle_hits_total"] == 1
    assert stats["used"] == os.path.getsize(shm.segment_path(store.segment_name(_oid(2))))


def test_a_segment_handed_to_a_reader_is_never_recycled(store: LocalObjectStore) -> None:
    a = np.arange(4 * MB, dtype=np.uint8) % 251
    _put(store, 1, a)
    view = _get(store, 1)  # zero-copy: a view into the segment's pages
    store.delete([_oid(1)])
    assert store.stats()["num_recycled"] == 0
    assert _put(store, 2, np.zeros(4 * MB, dtype=np.uint8)) is False  # new pages
    store.delete([_oid(2)])  # never read: recycled among the later writes
    for i in range(3, 6):
        assert _put(store, i, np.zeros(4 * MB, dtype=np.uint8)) is True
        store.delete([_oid(i)])
    np.testing.assert_array_equal(view, a)


def test_a_larger_free_segment_is_truncated_and_a_much_larger_one_is_not_used(store: LocalObjectStore) -> None:
    _put(store, 1, np.zeros(3 * MB, dtype=np.uint8))
    store.delete([_oid(1)])
    assert _put(store, 2, np.zeros(int(1.2 * MB), dtype=np.uint8)) is False  # 3 MB file: under half used
    assert _put(store, 3, np.ones(2 * MB, dtype=np.uint8)) is True
    size = store.info(_oid(3)).size  # type: ignore[union-attr]
    assert os.path.getsize(shm.segment_path(store.segment_name(_oid(3)))) == size
    np.testing.assert_array_equal(_get(store, 3), np.ones(2 * MB, dtype=np.uint8))


def test_small_segments_and_objects_in_flight_are_not_kept(store: LocalObjectStore) -> None:
    _put(store, 1, np.zeros(200_000, dtype=np.uint8))  # under recycle.MIN_BYTES
    store.delete([_oid(1)])
    name, _ = store.create_recyclable(_oid(2), 2 * MB)  # never sealed: the writer may still write
    shm.create_segment(name, 2 * MB).close()
    store.delete([_oid(2)])
    assert store.stats()["num_recycled"] == 0
    assert shm.list_session_segments(store.session) == []


def test_kept_segments_give_way_to_new_objects_before_anything_is_spilled(store: LocalObjectStore) -> None:
    for i in range(3):  # 3 x 10 MB kept (limit 32 MB)
        _put(store, i, np.zeros(10 * MB, dtype=np.uint8))
    store.delete([_oid(i) for i in range(3)])
    assert store.stats()["recycled_bytes"] > 29 * MB
    for i in range(10, 13):  # 3 x 20 MB of a size no kept file fits: 60 of 64 MB
        _put(store, i, np.full(20 * MB, i, dtype=np.uint8))
    stats = store.stats()
    assert stats["num_spilled_total"] == 0 and stats["num_objects"] == 3
    assert stats["recycled_bytes"] + stats["used"] <= 64 * MB
    for i in range(10, 13):
        assert int(_get(store, i)[0]) == i


def test_kept_segments_expire_and_close_removes_them(session: str, tmp_path: Path) -> None:
    s = LocalObjectStore(session, 64 * MB, str(tmp_path / "spill"), recycle_bytes=32 * MB)
    s._pool.idle_s = 0.2
    _put(s, 1, np.zeros(2 * MB, dtype=np.uint8))
    _put(s, 2, np.zeros(3 * MB, dtype=np.uint8))
    s.delete([_oid(1)])
    time.sleep(0.3)
    s.delete([_oid(2)])
    assert s.expire_recycled() == 1  # only the one idle long enough
    assert s.stats()["num_recycled"] == 1
    s.close()
    assert shm.list_session_segments(session) == []


def test_recycling_is_off_without_a_limit(session: str, tmp_path: Path) -> None:
    s = LocalObjectStore(session, 64 * MB, str(tmp_path / "spill"))
    try:
        _put(s, 1, np.zeros(2 * MB, dtype=np.uint8))
        s.delete([_oid(1)])
        assert _put(s, 2, np.zeros(2 * MB, dtype=np.uint8)) is False
        assert s.stats()["num_recycled"] == 0
    finally:
        s.close()


def test_pool_keeps_its_bounds(session: str) -> None:
    pool = recycle.SegmentPool(session, limit_bytes=5 * MB)
    try:
        for i in range(4):
            name = shm.segment_name(session, _oid(i))
            shm.create_segment(name, 2 * MB).close()
            assert pool.offer(name, 2 * MB)
            assert pool.bytes <= 5 * MB
        assert len(pool) == 2 and len(shm.list_session_segments(session)) == 2
        big = shm.segment_name(session, _oid(9))
        shm.create_segment(big, 6 * MB).close()
        assert not pool.offer(big, 6 * MB)  # over the limit: the caller unlinks it
        shm.unlink_segment(big)
    finally:
        pool.clear()


# ---------------------------------------------------------------- in a cluster


def _node_store_stats() -> dict:
    core = core_worker()
    stats = core.run(core.node().call("NodeManager", "GetNodeStats", None))
    return stats.object_store


def test_puts_reuse_freed_segments_and_values_stay_right(shared_cluster):
    hits = _node_store_stats()["num_recycle_hits_total"]
    for i in range(6):
        value = np.full(3 * MB, i, dtype=np.int32)
        ref = distcore.put(value)
        out = distcore.get(ref)
        np.testing.assert_array_equal(out, value)
        del ref, out
        ref = distcore.put(value + 1)  # not read before it is freed: recyclable
        del ref
    deadline = time.monotonic() + 10
    while _node_store_stats()["num_recycle_hits_total"] == hits and time.monotonic() < deadline:
        distcore.put(np.zeros(3 * MB, dtype=np.int32))
    assert _node_store_stats()["num_recycle_hits_total"] > hits


def test_a_readers_view_of_a_freed_object_survives_later_puts(shared_cluster):
    original = np.random.default_rng(3).integers(0, 1 << 30, 2 * MB, dtype=np.int64)
    ref = distcore.put(original)
    view = distcore.get(ref)  # zero-copy, read-only view into the object's segment
    assert not view.flags.writeable
    del ref  # freed while the view lives
    for i in range(8):  # same size: these want recycled pages
        r = distcore.put(np.full(2 * MB, i, dtype=np.int64))
        del r

    @distcore.remote
    def make(i):
        return np.full(2 * MB, -i, dtype=np.int64)

    for i in range(4):  # task returns written by workers want them too
        assert int(distcore.get(make.remote(i))[0]) == -i
    time.sleep(0.2)
    np.testing.assert_array_equal(view, original)


def test_task_reads_of_a_put_object_see_its_value_after_recycling(shared_cluster):
    @distcore.remote
    def total(a):
        return int(a.sum())

    for i in range(5):
        junk = distcore.put(np.full(MB, 9, dtype=np.int64))
        del junk  # freed unread: its segment goes to the pool
        arr = np.full(MB, i, dtype=np.int64)
        assert distcore.get(total.remote(distcore.put(arr))) == i * MB


# ---------------------------------------------------------------- the writer's kept mappings


def test_the_writer_keeps_its_mapping_of_a_recycled_file_and_drops_it_once_the_file_is_gone(
    store: LocalObjectStore,
) -> None:
    from distcore._private.object_store.writer_maps import WriterMappings

    maps = WriterMappings()
    values = [np.full(2 * MB, i, dtype=np.uint8) for i in range(4)]
    _put(store, 0, values[0])
    store.delete([_oid(0)])
    for i in range(1, 4):  # the same file each time: mapped once, then memcpy only
        serialized = serialize(values[i])
        name, recycled = store.create_recyclable(_oid(i), serialized.total_size)
        assert recycled
        maps.write(name, serialized.total_size, serialized.chunks())
        store.seal(_oid(i))
        if i < 3:
            store.delete([_oid(i)])  # unread: its file goes back to the pool
    assert maps.hits == 2 and len(maps) == 1  # mapped for object 1, reused for 2 and 3
    np.testing.assert_array_equal(_get(store, 3), values[3])
    store.delete([_oid(3)])  # read: unlinked, not recycled
    assert maps.sweep() == 1 and len(maps) == 0  # its file is gone: the mapping is let go


def test_kept_mappings_stay_within_their_bounds_and_expire(store: LocalObjectStore) -> None:
    from distcore._private.object_store.writer_maps import WriterMappings

    maps = WriterMappings(max_entries=2, idle_s=0.2)
    for i in range(3):
        name = store.segment_name(_oid(100 + i))
        shm.create_segment(name, 2 * MB).close()
        maps.write(name, 2 * MB, [(0, memoryview(b"x" * 10))])
    assert len(maps) == 2
    time.sleep(0.3)
    assert maps.sweep() == 2 and len(maps) == 0
    for i in range(3):
        shm.unlink_segment(store.segment_name(_oid(100 + i)))
