"""The in-process store of objects this process knows the state of.

An entry is an inline serialized value, or a marker saying the value sits
in a node's shared-memory store. Lives on the core worker's event loop;
waiters are futures of that loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from distcore._private.protocol import SerializedValue


@dataclass(slots=True)
class StoredObject:
    value: SerializedValue | None = None
    plasma_node: str | None = None
    size: int = 0


class _Waiter:
    __slots__ = ("left", "event")

    def __init__(self) -> None:
        self.left = 0
        self.event = threading.Event()


class MemoryStore:
    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        # Threads blocked in ``wait_here`` (a sync ``get`` of objects owned
        # here): woken by ``put`` directly, without a hop through the loop.
        self._lock = threading.Lock()
        self._events: dict[str, list[_Waiter]] = {}
        self.closed = False

    def put(self, object_id: str, obj: StoredObject) -> None:
        with self._lock:
            self._objects[object_id] = obj
            waiters = self._events.pop(object_id, None)
            ready = None
            if waiters:
                for waiter in waiters:
                    waiter.left -= 1
                    if waiter.left <= 0:
                        ready = [waiter] if ready is None else ready + [waiter]
        if ready:
            for waiter in ready:
                waiter.event.set()
        for fut in self._waiters.pop(object_id, ()):
            if not fut.done():
                fut.set_result(obj)

    def get(self, object_id: str) -> StoredObject | None:
        return self._objects.get(object_id)

    def contains(self, object_id: str) -> bool:
        return object_id in self._objects

    async def wait(self, object_id: str, timeout: float | None = None) -> StoredObject | None:
        """The object once it is stored, or None on timeout."""
        obj = self._objects.get(object_id)
        if obj is not None:
            return obj
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(object_id, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(object_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[object_id]

    def wait_here(self, object_ids: list[str], timeout: float | None, count: int | None = None) -> bool:
        """Block the calling (non-loop) thread until every id is stored (``count``: until that many of
        them are); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        objects, events = self._objects, self._events
        while True:
            # One waiter for all the missing ids, woken once the last of them
            # (or the ``count``-th) is stored: not once per object (a get of 1,000 refs).
            waiter = _Waiter()
            with self._lock:
                if self.closed:
                    raise RuntimeError("distcore has been shut down")
                missing = [oid for oid in object_ids if oid not in objects]
                need = len(missing) if count is None else count - (len(object_ids) - len(missing))
                if need <= 0:
                    return True
                waiter.left = need
                for oid in missing:
                    events.setdefault(oid, []).append(waiter)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is None:
                woken = waiter.event.wait()
            else:
                woken = remaining > 0 and waiter.event.wait(remaining)
            if not woken or need < len(missing):
                with self._lock:  # the ids not stored yet still list this waiter
                    for oid in missing:
                        waiting = events.get(oid)
                        if waiting is not None and waiter in waiting:
                            waiting.remove(waiter)
                            if not waiting:
                                del events[oid]
            if not woken:
                if count is None:
                    return all(oid in objects for oid in object_ids)
                return sum(oid in objects for oid in object_ids) >= count

    def wake_all(self) -> None:
        """Shutdown: threads in ``wait_here`` return and raise."""
        with self._lock:
            self.closed = True
            events, self._events = self._events, {}
        for waiting in events.values():
            for waiter in waiting:
                waiter.event.set()

    def delete(self, object_id: str) -> None:
        self._objects.pop(object_id, None)

    def __len__(self) -> int:
        return len(self._objects)
