"""The node's object store: :class:`.state.StoreState` plus the I/O it asks for.

Used by one process, the node manager; every public method takes one lock.
Writers are other processes: the node manager calls :meth:`LocalObjectStore.create`
(which makes room), hands the returned segment name to the writer, the writer
calls :func:`.shm.create_segment` with it, fills and closes the segment, and
the node manager calls :meth:`LocalObjectStore.seal`.

Spilling copies a segment file to ``spill_dir/<object id>`` (``sendfile`` via
``shutil.copyfile``) and unlinks the segment; restoring copies it back into a
new segment with the same name. Both run under the lock, so a request that
needs room waits for the disk.

``session`` goes into every segment name (``dc_<session>_<id>``): two stores on
one host (a local multi-node cluster) need different session strings.

Recycling (``recycle_bytes > 0``, the node manager's setting): an object made
by :meth:`LocalObjectStore.create_recyclable` whose name was never handed to a
reader (:meth:`LocalObjectStore.ensure_local`) keeps its file when deleted, in
a :class:`.recycle.SegmentPool`; the next such reservation of a similar size
gets the file back, renamed, so its writer maps pages that already exist
instead of having the kernel allocate and zero new ones. Pool files are not
objects: ``used`` does not count them, but a reservation removes them before
it evicts or spills anything (``recycled_bytes`` in :meth:`LocalObjectStore.stats`).
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from types import TracebackType
from typing import Any

from distcore._private.object_store import shm
from distcore._private.object_store.recycle import SegmentPool
from distcore._private.object_store.state import (
    ObjectInfo,
    ObjectState,
    Reservation,
    StoreState,
)
from distcore.exceptions import ObjectStoreFullError

__all__ = ["LocalObjectStore"]

_IN_MEMORY = (ObjectState.CREATING, ObjectState.SEALED_IN_MEMORY, ObjectState.RESTORING)


class LocalObjectStore:
    """Shared-memory objects of one node, with eviction and spilling.

    Object ids are hex strings. ``capacity`` is in bytes.
    """

    def __init__(
        self,
        session: str,
        capacity: int,
        spill_dir: str,
        *,
        shm_fallback_dir: str | None = None,
        recycle_bytes: int = 0,
    ) -> None:
        shm.segment_name(session, "0")  # validates the session string
        self.session = session
        self.spill_dir = spill_dir
        self._fallback = shm_fallback_dir
        self._state = StoreState(capacity)
        self._lock = threading.Lock()
        self._closed = False
        # Freed never-read segments kept for the next write (``recycle.py``); 0 bytes: off.
        self._pool = SegmentPool(session, recycle_bytes, fallback_dir=shm_fallback_dir)
        # Objects made by create_recyclable whose segment name no reader got yet.
        self._fresh: set[str] = set()
        os.makedirs(spill_dir, mode=0o700, exist_ok=True)

    # ---- writing ------------------------------------------------------

    def segment_name(self, object_id_hex: str) -> str:
        """The segment name of an object of this store."""
        return shm.segment_name(self.session, object_id_hex)

    def create(self, object_id_hex: str, size: int) -> str:
        """Reserve ``size`` bytes and return the segment name to create.

        Evictions and spills needed to make room are done before returning.
        Raises :class:`ObjectStoreFullError` when room cannot be made.
        """
        name = self.segment_name(object_id_hex)
        with self._lock:
            self._check_open()
            self._create_locked(object_id_hex, size, name)
        return name

    def create_recyclable(self, object_id_hex: str, size: int) -> tuple[str, bool]:
        """As :meth:`create`, for a writer that accepts a recycled segment.

        Returns ``(segment name, recycled)``. ``recycled``: the segment file
        exists already, with exactly ``size`` bytes (a freed segment no reader
        ever mapped); the writer opens it for writing instead of creating it.
        Its old contents are left in it. The object's segment may be recycled
        in turn when it is deleted before any reader got its name.
        """
        name = self.segment_name(object_id_hex)
        with self._lock:
            self._check_open()
            entry = self._pool.take(size) if self._pool.limit_bytes else None
            try:
                self._create_locked(object_id_hex, size, name)
            except BaseException:
                if entry is not None:
                    self._pool.give_back(entry)
                raise
            if entry is not None:
                try:
                    self._pool.claim(entry, name, size)
                except OSError:
                    self._pool.discard(entry)
                    entry = None
            self._fresh.add(object_id_hex)
        return name, entry is not None

    def seal(self, object_id_hex: str, pinned: bool = True) -> None:
        """The writer filled the segment: the object becomes readable.

        ``pinned``: an owner references this primary copy, so it is spilled,
        never evicted. Raises ``KeyError`` (after removing the segment) when
        the object was deleted or aborted while being written, and
        ``ValueError`` when the segment is missing or has the wrong size.
        """
        name = self.segment_name(object_id_hex)
        with self._lock:
            self._check_open()
            info = self._state.info(object_id_hex)
            if info is None:
                shm.unlink_segment(name, fallback_dir=self._fallback)
                raise KeyError(
                    f"cannot seal unknown object {object_id_hex}: it was deleted or aborted"
                )
            if info.state is ObjectState.CREATING:
                try:
                    actual = os.stat(shm.segment_path(name, self._fallback)).st_size
                except FileNotFoundError:
                    actual = None
                if actual != info.size:
                    got = "is missing" if actual is None else f"has {actual} bytes"
                    raise ValueError(
                        f"cannot seal object {object_id_hex}: segment {name} {got}, {info.size} were "
                        "reserved; the writer must create_segment(name, size) first (or abort)"
                    )
            self._state.seal(object_id_hex, pinned=pinned)

    def abort(self, object_id_hex: str) -> None:
        """Creating the object failed: free its reservation and remove its segment."""
        with self._lock:
            self._check_open()
            self._state.abort(object_id_hex)
            self._fresh.discard(object_id_hex)
            shm.unlink_segment(self.segment_name(object_id_hex), fallback_dir=self._fallback)

    def put_from_bytes(
        self, object_id_hex: str, data: bytes | bytearray | memoryview, pinned: bool = True
    ) -> str:
        """Create, fill and seal an object from bytes; return its segment name.

        For objects received from other nodes or made by the node manager. An
        object already present is left as it is (and pinned if ``pinned``).
        """
        view = memoryview(data)
        size = view.nbytes
        name = self.segment_name(object_id_hex)
        with self._lock:
            self._check_open()
            info = self._state.info(object_id_hex)
            if info is not None and info.state in (
                ObjectState.SEALED_IN_MEMORY,
                ObjectState.SPILLED,
            ):
                if pinned:
                    self._state.pin(object_id_hex)
                return name
            self._create_locked(object_id_hex, size, name)
        try:
            with shm.create_segment(name, size, fallback_dir=self._fallback) as seg:
                seg.write(view)
        except BaseException:
            self.abort(object_id_hex)
            raise
        self.seal(object_id_hex, pinned=pinned)
        return name

    # ---- reading and references --------------------------------------

    def ensure_local(self, object_id_hex: str, *, in_use: bool = False) -> tuple[str, int] | None:
        """Return ``(segment name, size)`` with the object in shared memory.

        A spilled object is restored first (which may evict or spill others).
        Returns None when the object is unknown or not sealed yet. With
        ``in_use=True`` the object is also marked as mapped by a reader, so it
        cannot be moved until :meth:`release`.
        """
        name = self.segment_name(object_id_hex)
        with self._lock:
            self._check_open()
            info = self._state.info(object_id_hex)
            if info is None or info.state in (ObjectState.CREATING, ObjectState.RESTORING):
                return None
            if info.state is ObjectState.SPILLED:
                self._restore_locked(info, name)
            else:
                self._state.touch(object_id_hex)
            self._fresh.discard(object_id_hex)  # a reader may map it from now on: never recycled
            if in_use:
                self._state.mark_in_use(object_id_hex)
            return name, info.size

    def release(self, object_id_hex: str) -> None:
        """A reader marked by ``ensure_local(..., in_use=True)`` is done."""
        with self._lock:
            self._check_open()
            self._state.release_in_use(object_id_hex)

    def pin(self, object_id_hex: str) -> None:
        """An owner references the object: spill it when short of room, never evict it."""
        with self._lock:
            self._check_open()
            self._state.pin(object_id_hex)

    def unpin(self, object_id_hex: str) -> None:
        """No owner needs this copy: it may be evicted when room is needed."""
        with self._lock:
            self._check_open()
            self._state.unpin(object_id_hex)

    def delete(self, object_ids_hex: list[str] | tuple[str, ...]) -> int:
        """Delete objects (unknown ids are skipped); return the memory bytes freed.

        Readers' live mappings stay valid; see :meth:`.state.StoreState.delete`.
        """
        freed = 0
        with self._lock:
            self._check_open()
            for oid in object_ids_hex:
                info = self._state.info(oid)
                if info is None:
                    continue
                freed += self._state.delete(oid)
                if (
                    oid in self._fresh
                    and info.state is ObjectState.SEALED_IN_MEMORY
                    and info.in_use == 0
                    and self._pool.offer(self.segment_name(oid), info.size)
                ):
                    self._fresh.discard(oid)
                    continue
                self._fresh.discard(oid)
                self._remove_files(info)
        return freed

    def expire_recycled(self) -> int:
        """Remove recycled segments unused for a while (call periodically); return how many."""
        with self._lock:
            if self._closed:
                return 0
            return self._pool.expire()

    def contains(self, object_id_hex: str) -> bool:
        """Whether the object is sealed here (in memory or spilled)."""
        with self._lock:
            info = self._state.info(object_id_hex)
            return info is not None and info.state in (
                ObjectState.SEALED_IN_MEMORY,
                ObjectState.SPILLED,
            )

    def info(self, object_id_hex: str) -> ObjectInfo | None:
        """The object's accounting snapshot, or None if unknown."""
        with self._lock:
            return self._state.info(object_id_hex)

    def stats(self) -> dict[str, Any]:
        """The state's counters plus the session and spill directory."""
        with self._lock:
            return {
                **self._state.stats(), "session": self.session, "spill_dir": self.spill_dir,
                "recycled_bytes": self._pool.bytes, "num_recycled": len(self._pool),
                "num_recycle_hits_total": self._pool.hits,
            }

    def close(self) -> None:
        """Unlink every segment and spill file of this store. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pool.clear()
            self._fresh.clear()
            for oid in self._state.object_ids():
                info = self._state.info(oid)
                if info is not None:
                    self._remove_files(info)
            self._state = StoreState(self._state.capacity)

    def __enter__(self) -> LocalObjectStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- internals (lock held) ----------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"object store of session {self.session} is closed")

    def _room_for_recycled(self, size: int) -> None:
        """Pool files count against the capacity: remove them before anything is evicted or spilled."""
        while self._pool.bytes and self._state.available - self._pool.bytes < size:
            self._pool.drop_oldest()

    def _create_locked(self, object_id_hex: str, size: int, name: str) -> None:
        self._room_for_recycled(size)
        reservation = self._state.reserve(object_id_hex, size)
        try:
            self._carry_out(reservation)
        except BaseException:
            self._state.abort(object_id_hex)
            raise
        # The state did not know the object, so a file of that name is a
        # leftover of a crashed writer.
        shm.unlink_segment(name, fallback_dir=self._fallback)

    def _restore_locked(self, info: ObjectInfo, name: str) -> None:
        assert info.spill_path is not None
        self._room_for_recycled(info.size)
        reservation = self._state.restore(info.object_id)
        try:
            self._carry_out(reservation)
            shm.unlink_segment(name, fallback_dir=self._fallback)
            try:
                with (
                    open(info.spill_path, "rb") as src,
                    shm.create_segment(name, info.size, fallback_dir=self._fallback) as seg,
                ):
                    _copy_file_into(src.fileno(), seg, info.size, info.spill_path)
            except BaseException:
                shm.unlink_segment(name, fallback_dir=self._fallback)
                raise
        except BaseException:
            self._state.abort(info.object_id)
            raise
        self._state.seal(info.object_id)
        _remove(info.spill_path)

    def _carry_out(self, reservation: Reservation) -> None:
        for oid in reservation.evict:
            self._fresh.discard(oid)
            shm.unlink_segment(self.segment_name(oid), fallback_dir=self._fallback)
        for i, oid in enumerate(reservation.spill):
            try:
                path = self._spill_one(oid)
            except OSError as e:
                for unspilled in reservation.spill[i:]:
                    self._state.on_spill_failed(unspilled)
                raise ObjectStoreFullError(
                    f"could not spill object {oid} to {self.spill_dir} to make room for "
                    f"{reservation.size} bytes for object {reservation.object_id}: {e}; free disk space "
                    "in the spill directory or release references to objects"
                ) from e
            self._state.on_spilled(oid, path)

    def _spill_one(self, object_id_hex: str) -> str:
        self._fresh.discard(object_id_hex)  # restored later into a new segment: not a writer's
        name = self.segment_name(object_id_hex)
        path = os.path.join(self.spill_dir, object_id_hex)
        tmp = path + ".tmp"
        try:
            shutil.copyfile(shm.segment_path(name, self._fallback), tmp)
            os.replace(tmp, path)
        except BaseException:
            _remove(tmp)
            raise
        shm.unlink_segment(name, fallback_dir=self._fallback)
        return path

    def _remove_files(self, info: ObjectInfo) -> None:
        if info.state in _IN_MEMORY:
            shm.unlink_segment(self.segment_name(info.object_id), fallback_dir=self._fallback)
        if info.spill_path is not None:
            _remove(info.spill_path)


def _copy_file_into(src_fd: int, seg: shm.WritableSegment, size: int, src_path: str) -> None:
    """Copy ``size`` bytes of ``src_fd`` into ``seg`` in the kernel where possible."""
    done = 0
    try:
        while done < size:
            n = os.sendfile(seg.fileno(), src_fd, done, size - done)
            if n == 0:
                break
            done += n
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        os.lseek(src_fd, done, os.SEEK_SET)
        while done < size:  # no sendfile between these files: read into the map
            n = os.readv(src_fd, [seg.buffer[done:]])
            if n == 0:
                break
            done += n
    if done != size:
        raise OSError(
            errno.EIO, f"spill file {src_path} is truncated: {done} of {size} bytes", src_path
        )


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
