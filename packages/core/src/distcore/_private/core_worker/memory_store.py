"""The in-process store of objects this process knows the state of.

An entry is an inline serialized value, or a marker saying the value sits
in a node's shared-memory store. Lives on the core worker's event loop;
waiters are futures of that loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from distcore._private.protocol import SerializedValue


@dataclass(slots=True)
class StoredObject:
    value: SerializedValue | None = None
    plasma_node: str | None = None
    size: int = 0


class MemoryStore:
    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}

    def put(self, object_id: str, obj: StoredObject) -> None:
        self._objects[object_id] = obj
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

    def delete(self, object_id: str) -> None:
        self._objects.pop(object_id, None)

    def __len__(self) -> int:
        return len(self._objects)
