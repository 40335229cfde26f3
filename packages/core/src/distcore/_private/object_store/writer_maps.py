"""A writer process's mappings of recycled segments, kept between its puts.

A recycled segment (``recycle.py``) already has its pages, but mapping them
afresh still costs a page-table fill per write (``MADV_POPULATE_WRITE``: a
quarter of an 80 MB put on the loaded 2-core VM). A process that writes the
same files again and again (a put loop, a task returning arrays) keeps its
writable mappings here, keyed by the file's ``(st_dev, st_ino)``, and the
next write into the same file is a plain memcpy into mapped pages.

Correctness: a mapping is only ever written through when the node manager
has just handed this process that very file for a new object (the writer
opened it by name and its inode matched), so it never touches an object a
reader maps. The mapping holds the file open, so its inode number cannot be
reused by another file while it is cached.

Memory: a cached mapping keeps the pages of a file the store has since
removed (the pool dropped it) until it is swept: at every write, and by a
timer :data:`IDLE_S` after the last one (:meth:`WriterMappings.schedule_sweep`),
entries whose file is gone or that went unused that long are unmapped. At most
:data:`MAX_ENTRIES` mappings and :data:`MAX_BYTES` bytes are kept.

Example::

    MAPPINGS.write(name, size, serialized.chunks())   # name: a recycled segment of exactly size bytes
"""

from __future__ import annotations

import asyncio
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from distcore._private.object_store import shm

__all__ = ["IDLE_S", "MAPPINGS", "MAX_BYTES", "MAX_ENTRIES", "WriterMappings"]

MAX_ENTRIES = 4
MAX_BYTES = 2 << 30
#: A mapping unused this long is unmapped (a little longer than the store keeps an unused pool file).
IDLE_S = 12.0


class _Map:
    __slots__ = ("fd", "mm", "view", "length", "used")

    def __init__(self, fd: int, length: int) -> None:
        self.fd = os.dup(fd)
        self.length = length
        try:
            self.mm = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        populate = getattr(shm, "_MADV_POPULATE_WRITE", None)
        if populate is not None:
            try:
                self.mm.madvise(populate)
            except OSError:
                pass
        self.view = memoryview(self.mm)
        self.used = time.monotonic()

    def gone(self) -> bool:
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def close(self) -> None:
        self.view.release()
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


class WriterMappings:
    """This process's cached writable mappings of recycled segment files."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, idle_s: float = IDLE_S) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._maps: OrderedDict[tuple[int, int], _Map] = OrderedDict()
        self._pid = os.getpid()
        self._timer: asyncio.TimerHandle | None = None
        self.hits = 0

    def __len__(self) -> int:
        return len(self._maps)

    def write_new(self, name: str, size: int, chunks: Iterable[tuple[int, memoryview]]) -> None:
        """Create segment ``name`` of ``size`` bytes, fill it with ``chunks`` through a mapping
        and keep the mapping, so that a later write into the file once it is recycled is a memcpy.

        Raises as :func:`.shm.create_segment` (``FileExistsError``, ``OSError(ENOSPC)``).
        """
        with shm.create_segment(name, size) as seg:
            st = os.fstat(seg.fileno())
            entry = _Map(seg.fileno(), size)
        self._fill(entry, (st.st_dev, st.st_ino), chunks)

    def write(self, name: str, size: int, chunks: Iterable[tuple[int, memoryview]]) -> None:
        """Copy ``chunks`` (``(offset, bytes)``) into recycled segment ``name`` of exactly ``size`` bytes.

        Raises ``FileNotFoundError`` when the segment is missing and ``ValueError``
        when its size differs.
        """
        fd = os.open(shm.segment_path(name), os.O_RDWR)
        try:
            st = os.fstat(fd)
            if st.st_size != size:
                raise ValueError(f"segment {name} has {st.st_size} bytes, expected {size}")
            key = (st.st_dev, st.st_ino)
            with self._lock:
                if os.getpid() != self._pid:  # a forked child: the parent's mappings are not ours to reuse
                    self._maps = OrderedDict()
                    self._pid = os.getpid()
                entry = self._maps.pop(key, None)  # out of the cache while this thread writes it
            if entry is not None and entry.length >= size:
                self.hits += 1
            else:
                if entry is not None:
                    entry.close()
                entry = _Map(fd, size)
        finally:
            os.close(fd)
        self._fill(entry, key, chunks)

    def _fill(self, entry: _Map, key: tuple[int, int], chunks: Iterable[tuple[int, memoryview]]) -> None:
        try:
            view = entry.view
            for offset, chunk in chunks:
                view[offset : offset + chunk.nbytes] = chunk
        except BaseException:
            entry.close()
            raise
        entry.used = time.monotonic()
        with self._lock:
            self._maps[key] = entry
        self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Unmap entries whose file is gone, unused ones, and the oldest past the bounds; return how many."""
        now = time.monotonic() if now is None else now
        drop: list[_Map] = []
        with self._lock:
            for key, entry in list(self._maps.items()):
                if entry.gone() or now - entry.used >= self.idle_s:
                    drop.append(self._maps.pop(key))
            while self._maps and (
                len(self._maps) > self.max_entries or sum(e.length for e in self._maps.values()) > self.max_bytes
            ):
                drop.append(self._maps.popitem(last=False)[1])
        for entry in drop:
            entry.close()
        return len(drop)

    def schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sweep again once mappings may have gone idle (call from ``loop``'s thread after a write)."""
        if self._timer is not None or not self._maps:
            return
        self._timer = loop.call_later(self.idle_s + 0.5, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self.sweep()
        self.schedule_sweep(loop)

    def clear(self) -> None:
        """Unmap everything."""
        with self._lock:
            maps, self._maps = self._maps, OrderedDict()
        for entry in maps.values():
            entry.close()


#: The process's mappings (one writer per process).
MAPPINGS = WriterMappings()
