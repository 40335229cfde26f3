"""Distributed reference counting, one process's half.

For every object this process owns or borrows, count the reasons it must
stay alive: Python ``ObjectRef`` instances here (``local``), tasks we
submitted that take it as an argument (``submitted``), other processes that
borrow it (``borrowers``, owned objects only) and objects that contain it
(``contained_in``). When all are gone the entry is released: owned values are
freed, borrowed ones are handed back to their owner.

Thread-safe: ``ObjectRef`` constructors and finalizers run on any thread;
the release callback is called outside the lock. A finalizer can also run
on a thread that already holds the lock (the garbage collector may collect a
cycle holding an ``ObjectRef`` during any allocation): such a release is
parked and applied by the next caller, never waited for (that would deadlock).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from distcore._private.protocol import Address

# How many freed owned ids to remember, so a get of one fails fast with
# ObjectLostError instead of waiting for a value that will never come.
FREED_MEMORY = 100_000


@dataclass
class RefEntry:
    owner: Address | None  # None: this process owns it
    local: int = 0
    submitted: int = 0
    borrowers: dict[str, Address] = field(default_factory=dict)
    contained_in: set[str] = field(default_factory=set)
    contains: list[str] = field(default_factory=list)
    registered: bool = False  # borrowed: the owner knows we borrow it
    plasma_node: str | None = None
    size: int = 0

    @property
    def owned(self) -> bool:
        return self.owner is None

    def in_use(self) -> bool:
        return bool(self.local or self.submitted or self.borrowers or self.contained_in)


class ReferenceCounter:
    def __init__(self, on_release: Callable[[str, RefEntry], None]) -> None:
        # Re-entrant only so that a finalizer on the holding thread can see it holds the lock.
        self._lock = threading.RLock()
        self._parked: deque[str] = deque()  # local releases from finalizers run inside the lock
        self._refs: dict[str, RefEntry] = {}
        self._freed: OrderedDict[str, None] = OrderedDict()
        self._on_release = on_release

    # ------------------------------------------------------------ creation

    def add_owned(self, object_id: str, contains: Iterable[str] = (), local: int = 0) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                entry = self._refs[object_id] = RefEntry(owner=None)
            self._freed.pop(object_id, None)
            entry.local += local
            self._link(object_id, entry, contains)

    def add_borrowed(self, object_id: str, owner: Address, registered: bool, contained_in: str | None = None) -> bool:
        """Record a ref we received; True if it is new and needs registering."""
        with self._lock:
            entry = self._refs.get(object_id)
            new = entry is None
            if entry is None:
                entry = self._refs[object_id] = RefEntry(owner=owner, registered=registered)
            if contained_in is not None:
                entry.contained_in.add(contained_in)
            return new and not registered and entry.owner is not None

    def _link(self, outer: str, entry: RefEntry, contains: Iterable[str]) -> None:
        for inner in contains:
            entry.contains.append(inner)
            inner_entry = self._refs.get(inner)
            if inner_entry is not None:
                inner_entry.contained_in.add(outer)

    def set_contains(self, outer: str, contains: Iterable[str]) -> None:
        with self._lock:
            entry = self._refs.get(outer)
            if entry is not None:
                self._link(outer, entry, contains)

    # ------------------------------------------------------------ counts

    def add_local(self, object_id: str, owner: Address | None) -> bool:
        """A new ObjectRef instance; True if a borrowed entry was created."""
        with self._lock:
            entry = self._refs.get(object_id)
            created = False
            if entry is None:
                entry = self._refs[object_id] = RefEntry(owner=owner)
                created = owner is not None
            entry.local += 1
            return created

    def remove_local(self, object_id: str) -> None:
        if self._lock._is_owned():  # type: ignore[attr-defined]  # a finalizer inside our own critical section
            self._parked.append(object_id)
            return
        self._change(object_id, "local", -1)
        self._drain_parked()

    def _drain_parked(self) -> None:
        """Apply releases parked by finalizers that ran inside the lock."""
        while self._parked and not self._lock._is_owned():  # type: ignore[attr-defined]
            try:
                parked = self._parked.popleft()
            except IndexError:  # another thread took it
                break
            self._change(parked, "local", -1)

    def add_submitted(self, ids: Iterable[str]) -> None:
        with self._lock:
            for object_id in ids:
                entry = self._refs.get(object_id)
                if entry is not None:
                    entry.submitted += 1

    def remove_submitted(self, ids: Iterable[str]) -> None:
        for object_id in ids:
            self._change(object_id, "submitted", -1)

    def add_borrower(self, object_id: str, borrower: Address) -> bool:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None or not entry.owned:
                return False
            entry.borrowers[borrower.worker_id] = borrower
            return True

    def remove_borrower(self, object_id: str, worker_id: str) -> None:
        released = None
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is not None and entry.borrowers.pop(worker_id, None) is not None:
                released = self._maybe_release(object_id, entry)
        self._fire(released)

    def borrowers(self) -> dict[str, Address]:
        """Every process that borrows an object from this one, by worker id."""
        with self._lock:
            return {w: a for e in self._refs.values() for w, a in e.borrowers.items()}

    def remove_borrower_everywhere(self, worker_id: str) -> None:
        """A borrowing process died: drop it from every entry."""
        with self._lock:
            ids = [i for i, e in self._refs.items() if worker_id in e.borrowers]
        for object_id in ids:
            self.remove_borrower(object_id, worker_id)

    def _change(self, object_id: str, attr: str, delta: int) -> None:
        released = None
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is None:
                return
            setattr(entry, attr, max(0, getattr(entry, attr) + delta))
            released = self._maybe_release(object_id, entry)
        self._fire(released)

    def _maybe_release(self, object_id: str, entry: RefEntry) -> list[tuple[str, RefEntry]] | None:
        """Remove released entries (cascading into contained ones); lock held."""
        if entry.in_use():
            return None
        out = []
        stack = [(object_id, entry)]
        while stack:
            oid, e = stack.pop()
            if self._refs.get(oid) is not e:
                continue
            del self._refs[oid]
            out.append((oid, e))
            if e.owned:
                self._freed[oid] = None
                if len(self._freed) > FREED_MEMORY:
                    self._freed.popitem(last=False)
            for inner in e.contains:
                inner_entry = self._refs.get(inner)
                if inner_entry is None:
                    continue
                inner_entry.contained_in.discard(oid)
                if not inner_entry.in_use():
                    stack.append((inner, inner_entry))
        return out

    def _fire(self, released: list[tuple[str, RefEntry]] | None) -> None:
        if released:
            for object_id, entry in released:
                self._on_release(object_id, entry)

    # ------------------------------------------------------------ queries

    def get(self, object_id: str) -> RefEntry | None:
        return self._refs.get(object_id)

    def was_freed(self, object_id: str) -> bool:
        """Whether this process owned ``object_id`` and freed it (recently)."""
        with self._lock:
            return object_id in self._freed

    def set_location(self, object_id: str, node_id: str | None, size: int) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is not None:
                entry.plasma_node = node_id
                entry.size = size

    def mark_registered(self, object_id: str) -> None:
        with self._lock:
            entry = self._refs.get(object_id)
            if entry is not None:
                entry.registered = True

    def unregistered_borrowed(self) -> list[tuple[str, Address]]:
        with self._lock:
            return [(i, e.owner) for i, e in self._refs.items() if e.owner is not None and not e.registered and e.in_use()]

    def owns_objects_in_use(self) -> bool:
        """Whether anything still refers to an object this process owns (it must not exit)."""
        self._drain_parked()
        with self._lock:
            return any(e.owned and e.in_use() for e in self._refs.values())

    def num_objects(self) -> int:
        return len(self._refs)

    def snapshot(self) -> dict[str, RefEntry]:
        with self._lock:
            return dict(self._refs)
