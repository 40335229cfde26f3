"""``ObjectRef`` and ``ObjectRefGenerator``: handles to remote values."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from distcore._private import ids, worker_state
from distcore._private.protocol import Address
from distcore._private.serialization import note_contained_ref

_future_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _future_pool
    with _pool_lock:
        if _future_pool is None:
            _future_pool = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="distcore-future")
        return _future_pool


class ObjectRef:
    """A reference to a value in the cluster, returned by ``.remote()`` and ``put``.

    Hashable and comparable by id; awaitable in asyncio code; ``get`` turns
    it into the value. Passing a ref to a task as a top-level argument
    passes the value; nested in a container it stays a ref.

    Example::

        ref = distcore.put([1, 2, 3])
        assert distcore.get(ref) == [1, 2, 3]
        value = await ref          # inside async code
    """

    __slots__ = ("_id", "_owner", "_core", "__weakref__")

    def __init__(self, object_id: str, owner: Address | None = None) -> None:
        self._id = object_id
        self._owner = owner
        core = worker_state.core_worker()
        self._core = core
        if core is not None:
            own = owner is None or owner.worker_id == core.worker_id
            if core.refs.add_local(object_id, None if own else owner) and not own:
                core.on_ref_deserialized(object_id, owner)  # type: ignore[arg-type]

    def __del__(self) -> None:
        core = self._core
        if core is not None and not core._closed:
            try:
                core.refs.remove_local(self._id)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def hex(self) -> str:
        return self._id

    def binary(self) -> bytes:
        return bytes.fromhex(self._id)

    def task_id(self) -> str:
        return ids.task_id_of(self._id)

    def owner_address(self) -> Address:
        if self._owner is not None:
            return self._owner
        assert self._core is not None and self._core.address is not None
        return self._core.address

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id})"

    def __reduce__(self) -> Any:
        note_contained_ref(self)
        return (_rebuild_ref, (self._id, self.owner_address()))

    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` of the value.

        No thread waits while the value is pending: the io loop watches for
        it, and only then is ``get`` run (on a small pool), so any number of
        futures can be pending at once.
        """
        from distcore._private.api.runtime import get

        core = self._core
        if core is None or core._closed or core is not worker_state.core_worker():
            return _pool().submit(get, self)  # get raises the clear error, or auto-inits
        out: concurrent.futures.Future = concurrent.futures.Future()

        def on_ready(_: concurrent.futures.Future) -> None:
            if not out.cancelled():
                _pool().submit(_complete, out, self)

        # resolve's errors are ignored here: get raises them into ``out``.
        core.spawn(core.resolve(self._id, self.owner_address(), None)).add_done_callback(on_ready)
        return out

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def as_future(self) -> asyncio.Future:
        return asyncio.wrap_future(self.future())


def _complete(out: concurrent.futures.Future, ref: ObjectRef) -> None:
    from distcore._private.api.runtime import get

    if not out.set_running_or_notify_cancel():
        return
    try:
        out.set_result(get(ref))
    except BaseException as exc:  # noqa: BLE001 - the future carries it
        out.set_exception(exc)


def _rebuild_ref(object_id: str, owner: Address) -> ObjectRef:
    return ObjectRef(object_id, owner)


def check_refs_alive(refs: Iterable[Any]) -> None:
    """Raise ``ObjectLostError`` for a ref made by a session this process shut down.

    Called by ``get`` and ``wait`` before anything else, so a dead cluster's
    ref fails with a clear message instead of auto-starting a new cluster in
    which it can never resolve.
    """
    for ref in refs:
        core = getattr(ref, "_core", None)
        if core is not None and core._closed:
            from distcore.exceptions import ObjectLostError

            raise ObjectLostError(
                ref.hex(), "",
                f"Cannot get {ref!r}: it belongs to a distcore cluster that was shut down (distcore.shutdown() "
                "was called or the driver disconnected), and objects do not outlive their cluster. Create the "
                "object again after distcore.init().",
            )


class ObjectRefGenerator:
    """Iterates over the refs a generator task yields.

    Returned by a task with ``num_returns="streaming"`` (refs arrive while the
    task runs) or, as the value of the single ref, with ``"dynamic"``.

    Example::

        @distcore.remote(num_returns="streaming")
        def count(n):
            for i in range(n):
                yield i

        for ref in count.remote(3):
            print(distcore.get(ref))
    """

    def __init__(self, task_id: str | None, refs: list[ObjectRef] | None = None, head: ObjectRef | None = None) -> None:
        self._task_id = task_id
        self._refs = refs
        self._index = 0
        self._head = head  # keeps the task's first return alive while iterating

    @classmethod
    def static(cls, refs: list[ObjectRef]) -> ObjectRefGenerator:
        return cls(None, list(refs))

    def __reduce__(self) -> Any:
        if self._refs is None:
            raise TypeError("a streaming ObjectRefGenerator cannot be passed to another process")
        return (ObjectRefGenerator.static, (self._refs,))

    def __iter__(self) -> Iterator[ObjectRef]:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._next(None)
        if ref is None:
            raise StopIteration
        return ref

    def _next(self, timeout: float | None) -> ObjectRef | None:
        if self._refs is not None:
            if self._index >= len(self._refs):
                return None
            ref = self._refs[self._index]
            self._index += 1
            return ref
        core = worker_state.core_worker()
        assert core is not None and self._task_id is not None
        object_id = core.run(core.submitter.next_generator_item(self._task_id, self._index + 1, timeout))
        if object_id is None:
            return None
        self._index += 1
        return ObjectRef(object_id, core.address)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        if self._refs is not None:
            ref = self._next(None)
        else:
            core = worker_state.core_worker()
            assert core is not None and self._task_id is not None
            fut = core.spawn(core.submitter.next_generator_item(self._task_id, self._index + 1, None))
            object_id = await asyncio.wrap_future(fut)
            ref = None
            if object_id is not None:
                self._index += 1
                ref = ObjectRef(object_id, core.address)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def __len__(self) -> int:
        if self._refs is None:
            raise TypeError("the length of a streaming generator is not known until it finishes")
        return len(self._refs)

    def completed(self) -> ObjectRef | None:
        return self._head

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id or len(self._refs or [])})"

    def __del__(self) -> None:
        core = worker_state.core_worker()
        if self._task_id is not None and core is not None and not core._closed:
            core.call_soon(core.submitter.release_generator, self._task_id)


DynamicObjectRefGenerator = ObjectRefGenerator
