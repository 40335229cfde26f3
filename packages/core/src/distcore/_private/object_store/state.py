"""The object store's bookkeeping: a pure state machine, no I/O.

Events come in as method calls, instructions go out as return values; the
caller (:mod:`.store`) carries the instructions out. Every method updates the
state as if the instructions were already done, so the caller must carry them
out (delete evicted segments, write spilled ones to disk) before it writes the
new object.

An object's life::

    reserve -> CREATING --seal--> SEALED_IN_MEMORY --spill--> SPILLED
                  | abort               ^                        |
                  v                     +--seal-- RESTORING <----+ restore
               (gone)                              | abort: back to SPILLED

(When room is needed, unpinned SEALED_IN_MEMORY objects are evicted, that
is, forgotten; ``delete`` forgets an object in any state.)

Eviction policy, when a reservation needs room: first *evict* (forget)
unpinned sealed objects, least recently used first; then *spill* pinned
sealed objects (the primary copies owners still reference), least recently
used first. Objects being created or restored, and objects mapped by readers
(:meth:`StoreState.mark_in_use`), are never moved.

Deleting an object that readers still map keeps its bytes counted as used
until the last reader calls :meth:`StoreState.release_in_use`, because the
memory stays resident until then.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from distcore.exceptions import ObjectStoreFullError

__all__ = ["InvalidTransition", "ObjectInfo", "ObjectState", "Reservation", "StoreState"]


class ObjectState(enum.Enum):
    """Where an object's bytes are."""

    CREATING = "creating"  # memory reserved, the writer is filling it
    SEALED_IN_MEMORY = "sealed_in_memory"  # immutable, readable in shared memory
    SPILLED = "spilled"  # only on disk (path known once on_spilled was called)
    RESTORING = "restoring"  # memory reserved, being copied back from disk


class InvalidTransition(ValueError):
    """An event does not apply to the object's current state."""


@dataclass(frozen=True)
class Reservation:
    """Instructions to carry out before writing ``object_id``.

    ``evict``: objects to delete (their memory copies are dropped for good).
    ``spill``: objects to write to disk and then drop from memory; report each
    with :meth:`StoreState.on_spilled` (or :meth:`StoreState.on_spill_failed`).
    """

    object_id: str
    size: int
    evict: list[str] = field(default_factory=list)
    spill: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ObjectInfo:
    """A snapshot of one object's accounting."""

    object_id: str
    size: int
    state: ObjectState
    pinned: bool
    in_use: int
    spill_path: str | None


@dataclass
class _Entry:
    size: int
    state: ObjectState
    pinned: bool = False
    in_use: int = 0
    spill_path: str | None = None


def _fmt(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


class StoreState:
    """Capacity accounting, pinning, LRU order and spill state of one store."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"object store capacity must be >= 0 bytes, got {capacity}")
        self.capacity = capacity
        self._objects: dict[str, _Entry] = {}
        # Deleted objects that readers still map: their bytes stay used.
        self._zombies: dict[str, _Entry] = {}
        # SEALED_IN_MEMORY objects, least recently used first.
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._used = 0
        self._spilled_bytes = 0
        self._spilled_total = self._restored_total = 0  # objects, since the store started

    # ---- events -------------------------------------------------------

    def reserve(self, object_id: str, size: int) -> Reservation:
        """Reserve ``size`` bytes for a new object, which enters CREATING.

        Raises :class:`ObjectStoreFullError` when evicting and spilling every
        movable object cannot make room; the state is then unchanged.
        """
        if size < 0:
            raise ValueError(f"object size must be >= 0 bytes, got {size} for object {object_id}")
        if object_id in self._objects:
            raise InvalidTransition(
                f"object {object_id} already exists ({self._objects[object_id].state.value}); "
                "delete it before creating it again"
            )
        if object_id in self._zombies:
            raise InvalidTransition(
                f"object {object_id} was deleted but {self._zombies[object_id].in_use} reader(s) still map it; "
                "create it again after they release it"
            )
        if size > self.capacity:
            raise ObjectStoreFullError(
                f"object {object_id} is {_fmt(size)}, larger than the object store's capacity of "
                f"{_fmt(self.capacity)}; raise the store capacity (object_store_memory) or split the "
                "object into smaller ones"
            )
        evict, spill = self._make_room(object_id, size)
        self._objects[object_id] = _Entry(size, ObjectState.CREATING)
        self._used += size
        return Reservation(object_id, size, evict, spill)

    def restore(self, object_id: str) -> Reservation:
        """Reserve memory to bring a spilled object back; it enters RESTORING.

        The caller copies the spill file into a new segment, then calls
        :meth:`seal` (and may delete the spill file) or :meth:`abort`.
        """
        entry = self._get(object_id)
        if entry.state is not ObjectState.SPILLED:
            raise InvalidTransition(
                f"cannot restore object {object_id}: it is {entry.state.value}, not spilled"
            )
        if entry.spill_path is None:
            raise InvalidTransition(
                f"cannot restore object {object_id}: its spill has not finished (no on_spilled)"
            )
        evict, spill = self._make_room(object_id, entry.size)
        entry.state = ObjectState.RESTORING
        self._spilled_bytes -= entry.size
        self._used += entry.size
        return Reservation(object_id, entry.size, evict, spill)

    def seal(self, object_id: str, *, pinned: bool | None = None) -> None:
        """The object's bytes are written: CREATING/RESTORING -> SEALED_IN_MEMORY.

        ``pinned`` sets the pin flag; None keeps it. A restored object's spill
        path is forgotten (the caller may delete the file).
        """
        entry = self._get(object_id)
        if entry.state not in (ObjectState.CREATING, ObjectState.RESTORING):
            raise InvalidTransition(f"cannot seal object {object_id}: it is {entry.state.value}")
        if entry.state is ObjectState.RESTORING:
            self._restored_total += 1
        entry.state = ObjectState.SEALED_IN_MEMORY
        entry.spill_path = None
        if pinned is not None:
            entry.pinned = pinned
        self._lru[object_id] = None

    def abort(self, object_id: str) -> int:
        """Writing failed: forget a CREATING object, or send a RESTORING one back
        to SPILLED. Returns the bytes freed."""
        entry = self._get(object_id)
        if entry.state is ObjectState.CREATING:
            del self._objects[object_id]
        elif entry.state is ObjectState.RESTORING:
            entry.state = ObjectState.SPILLED
            self._spilled_bytes += entry.size
        else:
            raise InvalidTransition(f"cannot abort object {object_id}: it is {entry.state.value}")
        self._used -= entry.size
        return entry.size

    def pin(self, object_id: str) -> None:
        """An owner references the object: it may be spilled, never evicted."""
        self._get(object_id).pinned = True

    def unpin(self, object_id: str) -> None:
        """No owner needs this copy any more: it may be evicted."""
        self._get(object_id).pinned = False

    def touch(self, object_id: str) -> None:
        """The object was accessed: it becomes the most recently used."""
        self._get(object_id)
        if object_id in self._lru:
            self._lru.move_to_end(object_id)

    def mark_in_use(self, object_id: str) -> None:
        """A reader maps the object; it cannot be moved until released."""
        entry = self._get(object_id)
        if entry.state is not ObjectState.SEALED_IN_MEMORY:
            raise InvalidTransition(
                f"cannot mark object {object_id} in use: it is {entry.state.value}, not sealed in memory"
            )
        entry.in_use += 1
        self._lru.move_to_end(object_id)

    def release_in_use(self, object_id: str) -> int:
        """A reader is done. Returns the bytes freed: non-zero only when the
        object was deleted meanwhile and this was its last reader."""
        entry = self._objects.get(object_id) or self._zombies.get(object_id)
        if entry is None:
            raise KeyError(f"unknown object {object_id}")
        if entry.in_use == 0:
            raise InvalidTransition(
                f"object {object_id} is not in use; release_in_use without mark_in_use"
            )
        entry.in_use -= 1
        if entry.in_use == 0 and object_id in self._zombies:
            del self._zombies[object_id]
            self._used -= entry.size
            return entry.size
        return 0

    def delete(self, object_id: str) -> int:
        """Forget the object; return the bytes of memory freed now.

        A sealed object still mapped by readers frees its bytes when the last
        reader releases it (0 is returned now). A spilled object frees none
        (the caller deletes its spill file).
        """
        entry = self._get(object_id)
        del self._objects[object_id]
        self._lru.pop(object_id, None)
        if entry.state is ObjectState.SPILLED:
            self._spilled_bytes -= entry.size
            return 0
        if entry.in_use > 0:
            self._zombies[object_id] = entry
            return 0
        self._used -= entry.size
        return entry.size

    def on_spilled(self, object_id: str, path: str) -> None:
        """A spill instruction was carried out; the object lives at ``path``."""
        entry = self._get(object_id)
        if entry.state is not ObjectState.SPILLED or entry.spill_path is not None:
            raise InvalidTransition(
                f"object {object_id} was not being spilled (it is {entry.state.value})"
            )
        entry.spill_path = path
        self._spilled_total += 1

    def on_spill_failed(self, object_id: str) -> None:
        """A spill instruction could not be carried out: the object is back in
        memory. Used bytes may now exceed capacity until the caller aborts the
        reservation that asked for the spill."""
        entry = self._get(object_id)
        if entry.state is not ObjectState.SPILLED or entry.spill_path is not None:
            raise InvalidTransition(
                f"object {object_id} was not being spilled (it is {entry.state.value})"
            )
        entry.state = ObjectState.SEALED_IN_MEMORY
        self._spilled_bytes -= entry.size
        self._used += entry.size
        self._lru[object_id] = None
        self._lru.move_to_end(object_id, last=False)

    # ---- queries ------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes of shared memory accounted for (including reservations)."""
        return self._used

    @property
    def available(self) -> int:
        """Bytes free without evicting or spilling anything."""
        return self.capacity - self._used

    @property
    def spilled_bytes(self) -> int:
        """Bytes of objects that live only on disk."""
        return self._spilled_bytes

    @property
    def num_objects(self) -> int:
        """Objects known to the store, spilled ones included."""
        return len(self._objects)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def object_ids(self) -> list[str]:
        """Ids of every object known to the store."""
        return list(self._objects)

    def info(self, object_id: str) -> ObjectInfo | None:
        """A snapshot of the object's accounting, or None if unknown."""
        entry = self._objects.get(object_id)
        if entry is None:
            return None
        return ObjectInfo(
            object_id, entry.size, entry.state, entry.pinned, entry.in_use, entry.spill_path
        )

    def stats(self) -> dict[str, Any]:
        """Counters for metrics and ``distcore memory``-style reports."""
        in_memory = [e for e in self._objects.values() if e.state is not ObjectState.SPILLED]
        pinned = [e for e in in_memory if e.pinned and e.state is ObjectState.SEALED_IN_MEMORY]
        return {
            "capacity": self.capacity,
            "used": self._used,
            "available": self.available,
            "num_objects": len(self._objects),
            "num_in_memory": len(in_memory),
            "num_spilled": len(self._objects) - len(in_memory),
            "spilled_bytes": self._spilled_bytes,
            "num_pinned": len(pinned),
            "pinned_bytes": sum(e.size for e in pinned),
            "in_use_bytes": sum(e.size for e in in_memory if e.in_use)
            + sum(e.size for e in self._zombies.values()),
            "num_deleted_in_use": len(self._zombies),
            "num_spilled_total": self._spilled_total,
            "num_restored_total": self._restored_total,
        }

    # ---- internals ----------------------------------------------------

    def _get(self, object_id: str) -> _Entry:
        try:
            return self._objects[object_id]
        except KeyError:
            raise KeyError(f"unknown object {object_id}") from None

    def _make_room(self, object_id: str, size: int) -> tuple[list[str], list[str]]:
        """Choose objects to evict, then to spill, and apply the choice."""
        need = size - self.available
        if need <= 0:
            return [], []
        evict: list[str] = []
        spill: list[str] = []
        freed = 0
        for wanted_pinned, chosen in ((False, evict), (True, spill)):
            for oid in self._lru:
                if freed >= need:
                    break
                entry = self._objects[oid]
                if entry.pinned is wanted_pinned and entry.in_use == 0:
                    chosen.append(oid)
                    freed += entry.size
        if freed < need:
            raise ObjectStoreFullError(self._full_message(object_id, size, freed))
        for oid in evict:
            entry = self._objects.pop(oid)
            del self._lru[oid]
            self._used -= entry.size
        for oid in spill:
            entry = self._objects[oid]
            del self._lru[oid]
            entry.state = ObjectState.SPILLED
            entry.spill_path = None
            self._used -= entry.size
            self._spilled_bytes += entry.size
        return evict, spill

    def _full_message(self, object_id: str, size: int, movable: int) -> str:
        def total(entries: list[_Entry]) -> str:
            return f"{_fmt(sum(e.size for e in entries))} in {len(entries)} object(s)"

        live = list(self._objects.values())
        sealed = [e for e in live if e.state is ObjectState.SEALED_IN_MEMORY]
        creating = [e for e in live if e.state in (ObjectState.CREATING, ObjectState.RESTORING)]
        in_use = [e for e in sealed if e.in_use] + list(self._zombies.values())
        pinned = [e for e in sealed if e.pinned]
        return (
            f"object store full: cannot make room for {_fmt(size)} for object {object_id}. "
            f"Capacity {_fmt(self.capacity)}, used {_fmt(self._used)}, available {_fmt(self.available)}; "
            f"pinned (spillable unless in use): {total(pinned)}; being created or restored (not movable): "
            f"{total(creating)}; mapped by readers (not movable): {total(in_use)}. Evicting and spilling "
            f"everything movable frees only {_fmt(movable)}. Wait for in-flight puts and gets to finish, "
            "release references to objects you no longer need, or raise the store capacity."
        )
