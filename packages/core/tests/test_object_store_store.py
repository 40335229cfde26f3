"""Tests for distcore._private.object_store.store.LocalObjectStore."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from distcore._private.object_store import shm
from distcore._private.object_store import store as store_module
from distcore._private.object_store.state import InvalidTransition, ObjectState
from distcore._private.object_store.store import LocalObjectStore
from distcore.exceptions import ObjectStoreFullError

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20




@pytest.fixture
def spill_dir(tmp_path: Path) -> str:
    return str(tmp_path / "spill")


def _oid(i: int) -> str:
    return f"{i:040x}"


def _payload(i: int, size: int) -> bytes:
    return np.random.default_rng(i).integers(0, 256, size, dtype=np.uint8).tobytes()


def _read(store: LocalObjectStore, oid: str) -> bytes:
    loc = store.ensure_local(oid)
    assert loc is not None
    name, size = loc
    with shm.open_segment(name) as seg:
        assert seg.size == size
        return bytes(seg.buffer)


def test_create_write_seal_read(session: str, spill_dir: str) -> None:
    data = _payload(1, 3 * MB)
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        name = store.create(_oid(1), len(data))
        assert name == shm.segment_name(session, _oid(1))
        assert not store.contains(_oid(1))
        assert store.ensure_local(_oid(1)) is None  # not sealed yet
        with shm.create_segment(name, len(data)) as seg:
            seg.write(data)
        store.seal(_oid(1))
        assert store.contains(_oid(1))
        assert store.ensure_local(_oid(1)) == (name, len(data))
        assert _read(store, _oid(1)) == data
        info = store.info(_oid(1))
        assert info is not None and info.pinned and info.state is ObjectState.SEALED_IN_MEMORY
        assert store.stats()["used"] == len(data)
        assert store.ensure_local(_oid(99)) is None
    assert shm.list_session_segments(session) == []


def test_writer_in_another_process(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        name = store.create(_oid(7), 1000)
        code = (
            "import sys\n"
            "from distcore._private.object_store.shm import create_segment\n"
            "with create_segment(sys.argv[1], 1000) as s:\n"
            "    s.buffer[:] = bytes(range(250)) * 4\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        subprocess.run([sys.executable, "-c", code, name], check=True, env=env, timeout=60)
        store.seal(_oid(7))
        assert _read(store, _oid(7)) == bytes(range(250)) * 4


def test_seal_checks_the_segment(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        name = store.create(_oid(1), 100)
        with pytest.raises(ValueError, match="segment .* is missing, 100 were reserved"):
            store.seal(_oid(1))
        shm.create_segment(name, 50).close()
        with pytest.raises(ValueError, match="has 50 bytes, 100 were reserved"):
            store.seal(_oid(1))
        store.abort(_oid(1))
        assert not shm.segment_exists(name)
        assert store.stats()["used"] == 0
        # A writer finishing after its object was deleted: the segment is removed.
        name = store.create(_oid(2), 10)
        store.delete([_oid(2)])
        shm.create_segment(name, 10).close()
        with pytest.raises(KeyError, match="deleted or aborted"):
            store.seal(_oid(2))
        assert not shm.segment_exists(name)


def test_create_removes_stale_segment(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        stale = shm.create_segment(shm.segment_name(session, _oid(3)), 5)
        stale.close()
        name = store.create(_oid(3), 10)
        with shm.create_segment(name, 10) as seg:  # no FileExistsError
            seg.write(b"0123456789")
        store.seal(_oid(3))


def test_unpinned_objects_are_evicted_lru(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        for i in range(4):
            store.put_from_bytes(_oid(i), _payload(i, 3 * MB), pinned=False)
        # 12 MB into 10: object 0 (LRU) was evicted to fit object 3.
        assert not store.contains(_oid(0))
        assert not shm.segment_exists(store.segment_name(_oid(0)))
        store.ensure_local(_oid(1))  # touch: 2 is now the LRU
        store.put_from_bytes(_oid(4), _payload(4, 3 * MB), pinned=False)
        assert not store.contains(_oid(2)) and store.contains(_oid(1))
        assert store.stats()["spilled_bytes"] == 0 and os.listdir(spill_dir) == []


def test_pinned_objects_spill_and_restore(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        datas = {i: _payload(i, 4 * MB) for i in range(3)}
        for i, d in datas.items():
            store.put_from_bytes(_oid(i), d)
        info = store.info(_oid(0))
        assert info is not None and info.state is ObjectState.SPILLED
        assert info.spill_path == os.path.join(spill_dir, _oid(0))
        assert os.path.getsize(info.spill_path) == 4 * MB
        assert not shm.segment_exists(store.segment_name(_oid(0)))
        assert store.contains(_oid(0))
        assert store.stats()["spilled_bytes"] == 4 * MB

        assert _read(store, _oid(0)) == datas[0]  # restored; object 1 spilled for it
        assert not os.path.exists(info.spill_path)
        assert store.info(_oid(1)).state is ObjectState.SPILLED  # type: ignore[union-attr]
        for i, d in datas.items():
            assert _read(store, _oid(i)) == d


def test_evict_before_spill(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        store.put_from_bytes(_oid(0), _payload(0, 4 * MB), pinned=True)
        store.put_from_bytes(_oid(1), _payload(1, 4 * MB), pinned=False)
        store.put_from_bytes(_oid(2), _payload(2, 4 * MB), pinned=True)
        assert not store.contains(_oid(1))  # unpinned: evicted although newer
        assert store.info(_oid(0)).state is ObjectState.SEALED_IN_MEMORY  # type: ignore[union-attr]


def test_50mb_pinned_through_10mb_store(session: str, spill_dir: str) -> None:
    datas = {i: _payload(i, 5 * MB) for i in range(10)}
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        for i, d in datas.items():
            if i % 2:
                store.put_from_bytes(_oid(i), d)
            else:  # the writer-process path
                name = store.create(_oid(i), len(d))
                with shm.create_segment(name, len(d)) as seg:
                    seg.buffer[:] = d
                store.seal(_oid(i), pinned=True)
        stats = store.stats()
        assert stats["num_objects"] == 10 and stats["used"] <= 10 * MB
        assert stats["spilled_bytes"] == 40 * MB and stats["num_spilled"] == 8
        assert stats["pinned_bytes"] == 10 * MB
        for i in reversed(range(10)):
            assert _read(store, _oid(i)) == datas[i], i
        stats = store.stats()
        assert stats["spilled_bytes"] + stats["used"] == 50 * MB
        assert len(os.listdir(spill_dir)) == 8
    assert shm.list_session_segments(session) == []
    assert os.listdir(spill_dir) == []


def test_in_use_objects_are_not_moved(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        store.put_from_bytes(_oid(0), _payload(0, 4 * MB), pinned=False)
        store.put_from_bytes(_oid(1), _payload(1, 4 * MB), pinned=True)
        name0, _ = store.ensure_local(_oid(0), in_use=True)  # type: ignore[misc]
        store.ensure_local(_oid(1), in_use=True)
        with pytest.raises(ObjectStoreFullError, match="mapped by readers"):
            store.create(_oid(2), 4 * MB)
        assert shm.segment_exists(name0) and store.stats()["used"] == 8 * MB
        store.release(_oid(0))
        store.put_from_bytes(_oid(2), _payload(2, 4 * MB))
        assert not store.contains(_oid(0))
        assert store.info(_oid(1)).state is ObjectState.SEALED_IN_MEMORY  # type: ignore[union-attr]
        store.release(_oid(1))


def test_object_larger_than_capacity(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, MB, spill_dir) as store:
        with pytest.raises(
            ObjectStoreFullError, match=r"2.0 MiB \(2097152 bytes\), larger than .*1.0 MiB"
        ):
            store.put_from_bytes(_oid(0), b"x" * (2 * MB))
        assert store.stats()["num_objects"] == 0


def test_delete_frees_memory_and_files(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        for i in range(3):
            store.put_from_bytes(_oid(i), _payload(i, 4 * MB))
        spill_path = store.info(_oid(0)).spill_path  # type: ignore[union-attr]
        assert spill_path is not None and os.path.exists(spill_path)
        freed = store.delete([_oid(0), _oid(1), "ffff"])
        assert freed == 4 * MB  # object 0 was on disk
        assert not os.path.exists(spill_path)
        assert not shm.segment_exists(store.segment_name(_oid(1)))
        assert store.stats()["used"] == 4 * MB and store.stats()["spilled_bytes"] == 0


def test_reader_mapping_survives_delete(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        src = np.arange(MB // 8, dtype=np.float64)
        store.put_from_bytes(_oid(0), src.tobytes())
        name, _ = store.ensure_local(_oid(0), in_use=True)  # type: ignore[misc]
        arr = np.frombuffer(shm.open_segment(name).buffer, dtype=np.float64)
        assert store.delete([_oid(0)]) == 0  # still mapped: freed on release
        assert store.stats()["used"] == MB
        store.release(_oid(0))
        assert store.stats()["used"] == 0
        np.testing.assert_array_equal(arr, src)


def test_put_from_bytes_existing_object(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        name = store.put_from_bytes(_oid(0), b"abc", pinned=False)
        assert store.put_from_bytes(_oid(0), b"abc", pinned=True) == name
        assert store.info(_oid(0)).pinned  # type: ignore[union-attr]
        store.create(_oid(1), 3)
        with pytest.raises(InvalidTransition, match="already exists"):
            store.put_from_bytes(_oid(1), b"xyz")
        store.abort(_oid(1))
        store.put_from_bytes(_oid(2), memoryview(np.arange(4, dtype=np.int32)))
        assert _read(store, _oid(2)) == np.arange(4, dtype=np.int32).tobytes()
        store.put_from_bytes(_oid(3), b"")
        assert _read(store, _oid(3)) == b""


def test_pin_unpin(session: str, spill_dir: str) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        store.put_from_bytes(_oid(0), _payload(0, 6 * MB), pinned=True)
        store.unpin(_oid(0))
        store.put_from_bytes(_oid(1), _payload(1, 6 * MB))
        assert not store.contains(_oid(0))  # evicted, not spilled
        store.pin(_oid(1))
        store.put_from_bytes(_oid(2), _payload(2, 6 * MB))
        assert store.info(_oid(1)).state is ObjectState.SPILLED  # type: ignore[union-attr]


def test_spill_failure_is_reported_and_undone(
    session: str, spill_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(src: str, dst: str) -> str:
        with open(dst, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        store.put_from_bytes(_oid(0), _payload(0, 6 * MB))
        monkeypatch.setattr(store_module.shutil, "copyfile", disk_full)
        with pytest.raises(ObjectStoreFullError, match="could not spill object .* No space left"):
            store.put_from_bytes(_oid(1), _payload(1, 6 * MB))
        monkeypatch.undo()
        assert os.listdir(spill_dir) == []  # the partial file is gone
        assert store.info(_oid(0)).state is ObjectState.SEALED_IN_MEMORY  # type: ignore[union-attr]
        assert store.info(_oid(1)) is None
        assert store.stats()["used"] == 6 * MB and store.stats()["spilled_bytes"] == 0
        assert _read(store, _oid(0)) == _payload(0, 6 * MB)
        store.put_from_bytes(_oid(1), _payload(1, 6 * MB))  # works once the disk has room
        assert store.info(_oid(0)).state is ObjectState.SPILLED  # type: ignore[union-attr]


def test_restore_failure_keeps_object_spilled(
    session: str, spill_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalObjectStore(session, 10 * MB, spill_dir) as store:
        store.put_from_bytes(_oid(0), _payload(0, 6 * MB))
        store.put_from_bytes(_oid(1), _payload(1, 6 * MB))
        path = store.info(_oid(0)).spill_path  # type: ignore[union-attr]
        assert path is not None
        with open(path, "r+b") as f:
            f.truncate(MB)
        with pytest.raises(OSError, match="truncated"):
            store.ensure_local(_oid(0))
        info = store.info(_oid(0))
        assert info is not None and info.state is ObjectState.SPILLED and info.spill_path == path
        assert not shm.segment_exists(store.segment_name(_oid(0)))
        assert store.stats()["used"] <= 10 * MB


def test_concurrent_puts_and_reads(session: str, spill_dir: str) -> None:
    errors: list[BaseException] = []
    with LocalObjectStore(session, 8 * MB, spill_dir) as store:

        def worker(base: int) -> None:
            try:
                for i in range(base, base + 10):
                    data = _payload(i, MB)
                    store.put_from_bytes(_oid(i), data)
                    assert _read(store, _oid(i)) == data
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(100 * t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        stats = store.stats()
        assert stats["num_objects"] == 40 and stats["used"] <= 8 * MB
        assert stats["used"] + stats["spilled_bytes"] == 40 * MB


def test_close_removes_everything_and_rejects_calls(session: str, spill_dir: str) -> None:
    store = LocalObjectStore(session, 2 * MB, spill_dir)
    for i in range(4):
        store.put_from_bytes(_oid(i), _payload(i, MB))
    store.create(_oid(9), 10)  # a creation in flight; spills one more
    shm.create_segment(store.segment_name(_oid(9)), 10).close()
    assert len(os.listdir(spill_dir)) == 3
    store.close()
    store.close()
    assert shm.list_session_segments(session) == []
    assert os.listdir(spill_dir) == []
    with pytest.raises(RuntimeError, match="closed"):
        store.create(_oid(5), 1)
