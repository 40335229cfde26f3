"""Tests for distcore._private.object_store.shm."""

from __future__ import annotations

import errno
import gc
import os
import stat

import numpy as np
import pytest

from distcore._private.object_store import shm

pytestmark = pytest.mark.timeout(60)




def _fill(session: str, oid: str, data: bytes) -> str:
    name = shm.segment_name(session, oid)
    with shm.create_segment(name, len(data)) as seg:
        seg.write(data)
    return name


def test_segment_name_format() -> None:
    assert shm.segment_name("sess-1", "00ff") == "dc_sess-1_00ff"


@pytest.mark.parametrize(
    "session_name, oid", [("", "ab"), ("a/b", "ab"), ("_x", "ab"), ("s", ""), ("s", "xyz")]
)
def test_segment_name_rejects_bad_input(session_name: str, oid: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        shm.segment_name(session_name, oid)


def test_segment_path_rejects_paths() -> None:
    for bad in ("", "../etc/passwd", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid segment name"):
            shm.segment_path(bad)


def test_create_write_open_roundtrip(session: str) -> None:
    data = os.urandom(100_000)
    name = _fill(session, "01", data)
    path = shm.segment_path(name)
    assert path == os.path.join("/dev/shm", name)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with shm.open_segment(name) as seg:
        assert seg.size == len(data)
        assert seg.buffer.nbytes == len(data)
        assert bytes(seg.buffer) == data
    assert shm.unlink_segment(name)


def test_buffer_is_writable_and_exact_size(session: str) -> None:
    name = shm.segment_name(session, "02")
    with shm.create_segment(name, 5000) as seg:
        assert seg.buffer.nbytes == 5000 and not seg.buffer.readonly
        seg.buffer[:] = b"x" * 5000
        seg.buffer[10:13] = b"abc"
    with shm.open_segment(name) as r:
        assert bytes(r.buffer[:13]) == b"x" * 10 + b"abc"
    shm.unlink_segment(name)


def test_write_at_offset_and_bounds(session: str) -> None:
    name = shm.segment_name(session, "03")
    with shm.create_segment(name, 10) as seg:
        assert seg.write(b"abc", offset=2) == 3
        seg.write(np.arange(2, dtype=np.uint16), offset=6)  # any buffer, cast to bytes
        with pytest.raises(ValueError, match="cannot write 4 bytes at offset 8"):
            seg.write(b"abcd", offset=8)
    with shm.open_segment(name) as r:
        assert bytes(r.buffer) == b"\0\0abc\0" + np.arange(2, dtype=np.uint16).tobytes()
    shm.unlink_segment(name)


def test_zero_size_segment(session: str) -> None:
    name = shm.segment_name(session, "04")
    with shm.create_segment(name, 0) as seg:
        assert seg.buffer.nbytes == 0 and not seg.buffer.readonly
        assert seg.write(b"") == 0
    with shm.open_segment(name) as r:
        assert r.size == 0 and r.buffer.nbytes == 0 and r.buffer.readonly
    shm.unlink_segment(name)


def test_create_existing_raises(session: str) -> None:
    name = _fill(session, "05", b"a")
    with pytest.raises(FileExistsError):
        shm.create_segment(name, 1)
    assert shm.unlink_segment(name)


def test_open_missing_raises(session: str) -> None:
    with pytest.raises(FileNotFoundError):
        shm.open_segment(shm.segment_name(session, "06"))
    assert not shm.segment_exists(shm.segment_name(session, "06"))
    assert shm.unlink_segment(shm.segment_name(session, "06")) is False


def test_reader_buffer_is_read_only(session: str) -> None:
    name = _fill(session, "07", b"hello")
    seg = shm.open_segment(name)
    assert seg.buffer.readonly
    with pytest.raises(TypeError):
        seg.buffer[0] = 1
    seg.close()
    shm.unlink_segment(name)


def test_zero_copy_numpy_view_survives_unlink_and_drop(session: str) -> None:
    src = np.arange(1 << 18, dtype=np.float64)
    name = shm.segment_name(session, "08")
    writer = shm.create_segment(name, src.nbytes)
    writer.write(src)

    reader = shm.open_segment(name)
    arr = np.frombuffer(reader.buffer, dtype=np.float64)
    view2 = np.frombuffer(reader.buffer, dtype=np.float64)
    assert not arr.flags.writeable
    with pytest.raises(ValueError):
        arr[0] = 1.0
    assert np.shares_memory(arr, view2)
    np.testing.assert_array_equal(arr, src)

    # Same physical pages: a write through the writer's map shows in the reader's array.
    writer.buffer[:8] = np.array([42.0]).tobytes()
    assert arr[0] == 42.0
    writer.close()

    assert shm.unlink_segment(name)
    reader.close()
    del reader, view2
    gc.collect()
    assert arr[0] == 42.0
    np.testing.assert_array_equal(arr[1:], src[1:])
    assert arr.sum() == src[1:].sum() + 42.0
    assert not shm.segment_exists(name)


def test_derived_views_keep_mapping_when_segment_dropped(session: str) -> None:
    name = _fill(session, "09", b"0123456789")
    sliced = shm.open_segment(name).buffer[2:5]  # segment object dropped at once
    gc.collect()
    shm.unlink_segment(name)
    assert bytes(sliced) == b"234"
    assert sliced.readonly


def test_list_and_cleanup_session(session: str) -> None:
    other = session + "_x"  # a session whose names start with ours
    for i in range(3):
        _fill(session, f"{i:02x}", b"abc")
    _fill(other, "aa", b"z")
    try:
        names = shm.list_session_segments(session)
        assert names == [shm.segment_name(session, f"{i:02x}") for i in range(3)]
        assert shm.list_session_segments(other) == [shm.segment_name(other, "aa")]
        assert shm.cleanup_session(session) == 3
        assert shm.list_session_segments(session) == []
        assert not [
            n for n in os.listdir("/dev/shm") if n.startswith(f"dc_{session}_") and "_x_" not in n
        ]
        assert shm.list_session_segments(other) == [shm.segment_name(other, "aa")]
    finally:
        assert shm.cleanup_session(other) == 1


def test_enospc_from_fallocate_removes_file(session: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    name = shm.segment_name(session, "0a")
    with pytest.raises(OSError, match=r"no room for 4096 bytes") as info:
        shm.create_segment(name, 4096)
    assert info.value.errno == errno.ENOSPC
    assert not shm.segment_exists(name)


def test_negative_size_rejected(session: str) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        shm.create_segment(shm.segment_name(session, "0b"), -1)


def test_fallback_dir_when_dev_shm_missing(
    session: str, tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shm, "SHM_ROOT", "/nonexistent-shm-root")
    monkeypatch.delenv(shm.FALLBACK_DIR_ENV, raising=False)
    name = shm.segment_name(session, "0c")
    with pytest.raises(FileNotFoundError, match="pass fallback_dir="):
        shm.create_segment(name, 3)

    fallback = os.path.join(str(tmp_path), "shm")
    with shm.create_segment(name, 3, fallback_dir=fallback) as seg:
        seg.write(b"abc")
    assert os.path.exists(os.path.join(fallback, name))
    with shm.open_segment(name, fallback_dir=fallback) as r:
        assert bytes(r.buffer) == b"abc"

    monkeypatch.setenv(shm.FALLBACK_DIR_ENV, fallback)
    assert shm.list_session_segments(session) == [name]
    assert shm.cleanup_session(session) == 1
    assert os.listdir(fallback) == []
