"""A first-in, first-out queue shared across tasks and actors (Ray's ``ray.util.queue``).

The queue lives in an async actor that holds an :class:`asyncio.Queue`; a
:class:`Queue` object is a thin client of that actor. Pass it to tasks and
actors like any value: it pickles as its actor handle, so every copy talks to
the same queue.

Example::

    import distcore
    from distcore.util.queue import Empty, Queue

    q = Queue(maxsize=100)

    @distcore.remote
    def produce(q, n):
        for i in range(n):
            q.put(i)

    distcore.get(produce.remote(q, 5))
    assert [q.get(timeout=10) for _ in range(5)] == [0, 1, 2, 3, 4]
    try:
        q.get(timeout=0.1)
    except Empty:
        pass
    q.shutdown()

Only the public API is used here.
"""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

import distcore
from distcore.exceptions import ActorDiedError

__all__ = ["Empty", "Full", "Queue"]


class Empty(_stdlib_queue.Empty):
    """The queue had no item to return (``get`` timed out, or a non-blocking get).

    A subclass of :class:`queue.Empty`, so ``except queue.Empty`` catches it.
    """


class Full(_stdlib_queue.Full):
    """The queue had no room for the item(s) (``put`` timed out, or a non-blocking put).

    A subclass of :class:`queue.Full`, so ``except queue.Full`` catches it.
    """


class Queue:
    """A FIFO queue backed by an actor; use it from the driver, tasks and actors.

    Args:
        maxsize: The most items the queue holds; ``0`` (or less) means unbounded.
        actor_options: Options for the queue's actor, passed to
            ``.options(...)`` (for example ``{"num_cpus": 0, "name": "jobs"}``).

    Blocking calls (``put``, ``get`` and their ``_async`` forms) take a
    ``timeout`` in seconds that bounds the wait for room or for an item; with
    ``timeout=None`` they wait as long as it takes. Order is first-in,
    first-out; among several producers blocked on a full queue (or consumers
    on an empty one) the order is not guaranteed.

    Example::

        q = Queue(maxsize=2)
        q.put_nowait_batch([1, 2])
        assert q.full() and q.qsize() == 2
        try:
            q.put(3, timeout=0.1)
        except Full:
            pass
        assert q.get_nowait_batch(2) == [1, 2]
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(
                f"maxsize must be an int (0 for unbounded), got {type(maxsize).__name__}: {maxsize!r}"
            )
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(
                f"actor_options must be a dict of actor options, got {type(actor_options).__name__}: {actor_options!r}"
            )
        self.maxsize = maxsize
        self.actor: Any = _queue_actor_class().options(**(actor_options or {})).remote(maxsize)

    def __reduce__(self) -> Any:
        # Copies share the actor: a Queue travels as its handle and maxsize.
        return (_rebuild_queue, (self.actor, self.maxsize))

    def __repr__(self) -> str:
        state = "shut down" if self.actor is None else repr(self.actor)
        return f"Queue(maxsize={self.maxsize}, {state})"

    def __len__(self) -> int:
        return self.size()

    # ------------------------------------------------------------ inspection

    def size(self, *, timeout: float | None = None) -> int:
        """The number of items in the queue.

        ``timeout`` bounds the wait for the actor's answer
        (:class:`~distcore.exceptions.GetTimeoutError` after it).
        """
        return int(distcore.get(self._handle().qsize.remote(), timeout=timeout))

    def qsize(self, *, timeout: float | None = None) -> int:
        """The number of items in the queue (same as :meth:`size`)."""
        return self.size(timeout=timeout)

    def empty(self, *, timeout: float | None = None) -> bool:
        """Whether the queue holds no item."""
        return bool(distcore.get(self._handle().empty.remote(), timeout=timeout))

    def full(self, *, timeout: float | None = None) -> bool:
        """Whether the queue holds ``maxsize`` items (never, when unbounded)."""
        return bool(distcore.get(self._handle().full.remote(), timeout=timeout))

    # ------------------------------------------------------------ put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item`` at the end of the queue.

        With ``block=True`` wait up to ``timeout`` seconds (``None``: forever)
        for room; with ``block=False`` fail at once if the queue is full
        (``timeout`` is then ignored).

        Raises:
            Full: no room (at once, or after ``timeout`` seconds).
            ValueError: ``timeout`` is negative.

        Example::

            q.put("job", timeout=5)
        """
        if not block:
            self.put_nowait(item)
            return
        _check_timeout(timeout)
        if not distcore.get(self._handle().put.remote(item, timeout)):
            raise Full(self._full_message(f"put timed out after {timeout} s"))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Awaitable :meth:`put`, for async actors and coroutines.

        Example::

            await q.put_async(item, timeout=5)
        """
        if not block:
            if not await self._handle().put_nowait.remote(item):
                raise Full(self._full_message("non-blocking put"))
            return
        _check_timeout(timeout)
        if not await self._handle().put.remote(item, timeout):
            raise Full(self._full_message(f"put timed out after {timeout} s"))

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``: add ``item`` or raise :class:`Full` at once."""
        if not distcore.get(self._handle().put_nowait.remote(item)):
            raise Full(self._full_message("non-blocking put"))

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all of ``items`` in order, or none of them if they do not all fit.

        Raises:
            Full: the queue has room for fewer than ``len(items)`` more items.
            TypeError: ``items`` is not iterable.

        Example::

            q.put_nowait_batch(range(10))
        """
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            raise TypeError(
                f"items must be an iterable of items, got {type(items).__name__}: {items!r}"
            )
        batch = list(items)
        size = distcore.get(self._handle().put_nowait_batch.remote(batch))
        if size is not None:
            raise Full(
                f"Cannot add {len(batch)} items to queue of size {size} and maxsize {self.maxsize}."
            )

    # ------------------------------------------------------------ get

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the item at the front of the queue.

        With ``block=True`` wait up to ``timeout`` seconds (``None``: forever)
        for an item; with ``block=False`` fail at once if the queue is empty.

        Raises:
            Empty: no item (at once, or after ``timeout`` seconds).
            ValueError: ``timeout`` is negative.

        Example::

            item = q.get(timeout=5)
        """
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        found, item = distcore.get(self._handle().get.remote(timeout))
        if not found:
            raise Empty(f"Queue is empty: get timed out after {timeout} s")
        return item

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """Awaitable :meth:`get`, for async actors and coroutines.

        Example::

            item = await q.get_async(timeout=5)
        """
        if not block:
            found, item = await self._handle().get_nowait.remote()
            if not found:
                raise Empty("Queue is empty: non-blocking get")
            return item
        _check_timeout(timeout)
        found, item = await self._handle().get.remote(timeout)
        if not found:
            raise Empty(f"Queue is empty: get timed out after {timeout} s")
        return item

    def get_nowait(self) -> Any:
        """``get(block=False)``: remove and return an item or raise :class:`Empty` at once."""
        found, item = distcore.get(self._handle().get_nowait.remote())
        if not found:
            raise Empty("Queue is empty: non-blocking get")
        return item

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Remove and return ``num_items`` items in order, or none if fewer are queued.

        Raises:
            Empty: the queue holds fewer than ``num_items`` items.
            TypeError / ValueError: ``num_items`` is not a non-negative int.

        Example::

            first_three = q.get_nowait_batch(3)
        """
        if isinstance(num_items, bool) or not isinstance(num_items, int):
            raise TypeError(
                f"num_items must be an int, got {type(num_items).__name__}: {num_items!r}"
            )
        if num_items < 0:
            raise ValueError(f"num_items must be non-negative, got {num_items}")
        found, result = distcore.get(self._handle().get_nowait_batch.remote(num_items))
        if not found:
            raise Empty(f"Cannot get {num_items} items from queue of size {result}.")
        return list(result)

    # ------------------------------------------------------------ lifetime

    def shutdown(self, force: bool = False, grace_period_s: float = 5) -> None:
        """End the queue's actor and release its resources; items still queued are lost.

        Args:
            force: Kill the actor at once. Otherwise ask it to exit and kill it
                only if it has not exited after ``grace_period_s`` seconds.
            grace_period_s: How long a graceful exit may take.

        Calls blocked on the queue anywhere fail with
        :class:`~distcore.exceptions.ActorDiedError`, as do later calls
        through any copy of this queue. Calling ``shutdown`` twice is harmless.

        Example::

            q.shutdown()
        """
        if self.actor is None:
            return
        actor, self.actor = self.actor, None
        if force:
            distcore.kill(actor, no_restart=True)
            return
        _check_timeout(grace_period_s, "grace_period_s")
        # The exit call runs after every call this process made before it.
        done = actor.__ray_terminate__.remote()
        distcore.wait([done], timeout=grace_period_s)
        # Kill whether or not it exited in time: the runtime may still run calls
        # for a moment after the exit call's result is ready, and a queue that
        # answers after shutdown() returned would hand out lost items.
        distcore.kill(actor, no_restart=True)

    # ------------------------------------------------------------ internals

    def _handle(self) -> Any:
        if self.actor is None:
            raise ActorDiedError(
                "This Queue was shut down (Queue.shutdown() was called); create a new Queue to go on."
            )
        return self.actor

    def _full_message(self, what: str) -> str:
        return f"Queue is full (maxsize={self.maxsize}): {what}"


def _rebuild_queue(actor: Any, maxsize: int) -> Queue:
    q = Queue.__new__(Queue)
    q.maxsize = maxsize
    q.actor = actor
    return q


def _check_timeout(timeout: float | None, name: str = "timeout") -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {type(timeout).__name__}: {timeout!r}"
        )
    if timeout < 0:
        raise ValueError(f"'{name}' must be a non-negative number, got {timeout}")


class _QueueActor:
    """The actor behind a :class:`Queue`: an :class:`asyncio.Queue` and its operations.

    Every method is ``async`` so the actor runs them all on one event loop
    (blocked ``put``/``get`` calls wait there without holding up the others).
    Outcomes come back as values, not exceptions: the client raises ``Full``
    or ``Empty`` with a message.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def empty(self) -> bool:
        return self.queue.empty()

    async def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None) -> bool:
        """True once ``item`` is queued; False if no room came within ``timeout``."""
        if timeout is not None and timeout <= 0:
            return await self.put_nowait(item)
        try:
            async with asyncio.timeout(timeout):
                await self.queue.put(item)
        except TimeoutError:
            return False
        return True

    async def put_nowait(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def put_nowait_batch(self, items: list[Any]) -> int | None:
        """None once all of ``items`` are queued; the current size if they do not fit."""
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return self.queue.qsize()
        for item in items:
            self.queue.put_nowait(item)
        return None

    async def get(self, timeout: float | None) -> tuple[bool, Any]:
        """``(True, item)``, or ``(False, None)`` if no item came within ``timeout``."""
        if timeout is not None and timeout <= 0:
            return await self.get_nowait()
        try:
            async with asyncio.timeout(timeout):
                return True, await self.queue.get()
        except TimeoutError:
            return False, None

    async def get_nowait(self) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    async def get_nowait_batch(self, num_items: int) -> tuple[bool, Any]:
        """``(True, items)``, or ``(False, current size)`` if fewer than ``num_items`` are queued."""
        if num_items > self.queue.qsize():
            return False, self.queue.qsize()
        return True, [self.queue.get_nowait() for _ in range(num_items)]


_QUEUE_ACTOR_CLASS: Any = None


def _queue_actor_class() -> Any:
    # Made on first use: ``distcore`` is still importing when this module is.
    global _QUEUE_ACTOR_CLASS
    if _QUEUE_ACTOR_CLASS is None:
        _QUEUE_ACTOR_CLASS = distcore.remote(_QueueActor)
    return _QUEUE_ACTOR_CLASS
