"""Freed segments that no reader ever mapped, kept for the next write.

Creating a segment makes the kernel allocate and zero every page of it, which
costs more than the copy of the object itself (on the 2-core VM: ~1 GB/s into
fresh tmpfs pages against ~3 GB/s into pages that already exist). So when an
object whose segment was never handed to a reader is deleted, the store
renames the file to a pool name instead of unlinking it, and the next
reservation of a similar size gets the file back under the new object's name
(truncated to the exact size): the writer maps pages that already exist.

Only never-read segments may come back: a reader's zero-copy view (a numpy
array over the mapping) of a freed object keeps pointing at the file's pages,
and reusing them would change the bytes under it. The store decides what is
never-read (:class:`.store.LocalObjectStore` drops an object from its
"fresh" set the moment :meth:`~.store.LocalObjectStore.ensure_local` hands
its name out); this module only keeps the pool.

The pool is bounded: at most ``limit_bytes`` and :data:`MAX_ENTRIES` files,
segments smaller than ``min_bytes`` are not kept (their pages cost little),
and a file unused for ``idle_s`` seconds is removed (:meth:`SegmentPool.expire`,
called periodically by the node manager). Pool files are named like
segments (``dc_<session>_<24 hex digits>``: object ids have 40), so
:func:`.shm.cleanup_session` removes them with the rest of the session.

Example::

    pool = SegmentPool("sess", limit_bytes=1 << 30)
    pool.offer("dc_sess_<id1>", size)          # instead of unlinking it
    entry = pool.take(size)                    # None when nothing fits
    if entry is not None:
        pool.claim(entry, "dc_sess_<id2>", size)   # the file is now the new object's
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from distcore._private.object_store import shm

__all__ = ["MAX_ENTRIES", "MIN_BYTES", "IDLE_S", "Recycled", "SegmentPool"]

#: Segments smaller than this are unlinked as before.
MIN_BYTES = 1 << 20
#: At most this many files in the pool.
MAX_ENTRIES = 16
#: A pool file unused this long is removed.
IDLE_S = 10.0
#: A kept file serves a request of at least this fraction of its size (it is truncated to it).
MIN_FILL = 0.5

_POOL_HEX = 24


@dataclass
class Recycled:
    """One pool file: its current name, size in bytes, and when it joined the pool."""

    name: str
    size: int
    since: float


class SegmentPool:
    """Kept segment files of one store session, oldest first. Not thread-safe: the store's lock guards it."""

    def __init__(
        self,
        session: str,
        limit_bytes: int,
        *,
        fallback_dir: str | None = None,
        min_bytes: int = MIN_BYTES,
        idle_s: float = IDLE_S,
    ) -> None:
        if limit_bytes < 0:
            raise ValueError(f"recycle limit must be >= 0 bytes, got {limit_bytes}")
        self.session = session
        self.limit_bytes = limit_bytes
        self.min_bytes = min_bytes
        self.idle_s = idle_s
        self._fallback = fallback_dir
        self._entries: OrderedDict[str, Recycled] = OrderedDict()
        self._bytes = 0
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self.hits = 0  # reservations served from the pool, since start

    @property
    def bytes(self) -> int:
        """Bytes of shared memory the pool's files hold."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def offer(self, name: str, size: int) -> bool:
        """Keep segment ``name`` (``size`` bytes) instead of unlinking it.

        Returns False, with the file left where it is, when the pool does not
        want it (too small or too large for the limit); the caller unlinks it.
        Older files are removed to stay within the limits.
        """
        if size < self.min_bytes or size > self.limit_bytes:
            return False
        while self._entries and (self._bytes + size > self.limit_bytes or len(self._entries) >= MAX_ENTRIES):
            self.drop_oldest()
        pool_name = shm.segment_name(self.session, f"{self._prefix}{next(self._ids):0{_POOL_HEX - 8}x}")
        try:
            os.rename(shm.segment_path(name, self._fallback), shm.segment_path(pool_name, self._fallback))
        except FileNotFoundError:
            return False
        self._entries[pool_name] = Recycled(pool_name, size, time.monotonic())
        self._bytes += size
        return True

    def take(self, size: int) -> Recycled | None:
        """The best file for ``size`` bytes, out of the pool (None if none fits).

        A file fits when it is at least ``size`` and at most ``size / MIN_FILL``
        bytes; the smallest fitting one is taken (the newest among equals).
        Hand it to :meth:`claim`, or back with :meth:`give_back`.
        """
        if size < self.min_bytes or not self._entries:
            return None
        best: Recycled | None = None
        for entry in reversed(self._entries.values()):
            if size <= entry.size and size >= entry.size * MIN_FILL and (best is None or entry.size < best.size):
                best = entry
                if entry.size == size:
                    break
        if best is None:
            return None
        del self._entries[best.name]
        self._bytes -= best.size
        return best

    def give_back(self, entry: Recycled) -> None:
        """Return a taken file that was not claimed (the reservation failed)."""
        self._entries[entry.name] = entry
        self._bytes += entry.size

    def claim(self, entry: Recycled, name: str, size: int) -> None:
        """Rename a taken file to segment ``name`` and truncate it to ``size`` bytes."""
        new_path = shm.segment_path(name, self._fallback)
        os.rename(shm.segment_path(entry.name, self._fallback), new_path)
        if entry.size != size:
            os.truncate(new_path, size)
        self.hits += 1

    def discard(self, entry: Recycled) -> None:
        """Remove a taken file for good."""
        shm.unlink_segment(entry.name, fallback_dir=self._fallback)

    def drop_oldest(self) -> int:
        """Remove the oldest file; return its size (0 when the pool is empty)."""
        if not self._entries:
            return 0
        _, entry = self._entries.popitem(last=False)
        self._bytes -= entry.size
        shm.unlink_segment(entry.name, fallback_dir=self._fallback)
        return entry.size

    def expire(self, now: float | None = None) -> int:
        """Remove files unused for ``idle_s``; return how many."""
        now = time.monotonic() if now is None else now
        removed = 0
        while self._entries:
            entry = next(iter(self._entries.values()))
            if now - entry.since < self.idle_s:
                break
            self.drop_oldest()
            removed += 1
        return removed

    def clear(self) -> None:
        """Remove every file."""
        while self._entries:
            self.drop_oldest()
