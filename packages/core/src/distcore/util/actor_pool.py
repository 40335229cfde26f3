"""A fixed pool of actors that work through values (Ray's ``ray.util.ActorPool``).

The pool hands each value to an idle actor through ``fn(actor, value)``, which
must start a call on that actor and return its ``ObjectRef`` (or a list of
refs, for a method with ``num_returns > 1``). An actor is busy from the moment
its call is submitted until its result has been returned by ``get_next`` or
``get_next_unordered``; values submitted while every actor is busy wait in the
pool and go out as actors come back.

Example::

    import distcore
    from distcore.util import ActorPool

    @distcore.remote
    class Doubler:
        def double(self, v):
            return 2 * v

    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    print(list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])))  # [2, 4, 6, 8]

    pool.submit(lambda a, v: a.double.remote(v), 10)
    pool.submit(lambda a, v: a.double.remote(v), 20)
    print(pool.get_next(), pool.get_next())  # 20 40

Only the public API (``distcore.get``/``distcore.wait``) is used here.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import distcore
from distcore.exceptions import ActorDiedError, GetTimeoutError

if TYPE_CHECKING:
    from distcore import ObjectRef

__all__ = ["ActorPool"]

V = TypeVar("V")

# What ``fn`` returns: one ref, or a list of refs for ``num_returns > 1``.
_Future: TypeAlias = "ObjectRef | list[ObjectRef]"
# A hashable key for a future (lists become tuples).
_Key: TypeAlias = "ObjectRef | tuple[ObjectRef, ...]"
_SubmitFn: TypeAlias = Callable[[Any, V], Any]

_TIMEOUT_MSG = "Timed out waiting for result"


class ActorPool:
    """Operate on a fixed pool of actors.

    Args:
        actors: Actor handles to use. They all start idle.

    Results come back through :meth:`get_next` (submission order) or
    :meth:`get_next_unordered` (completion order); :meth:`map` and
    :meth:`map_unordered` wrap both for a list of values. Do not mix the two
    orders on one batch: once ``get_next_unordered`` has returned a result,
    ``get_next`` only continues after the latest result returned so far.

    An actor whose call fails with :class:`~distcore.exceptions.ActorDiedError`
    is dropped from the pool; any other error is raised to the caller and the
    actor goes back to the idle set.

    Example::

        pool = ActorPool([Doubler.remote(), Doubler.remote()])
        results = pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
        assert sorted(results) == [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        # In-flight calls: future key -> (submission index, actor).
        self._future_to_actor: dict[_Key, tuple[int, Any]] = {}
        # In-flight calls by submission index, for ordered retrieval.
        self._index_to_future: dict[int, _Future] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        # Values submitted while no actor was idle, oldest first.
        self._pending_submits: collections.deque[tuple[_SubmitFn[Any], Any]] = collections.deque()

    # ------------------------------------------------------------ map

    def map(self, fn: _SubmitFn[V], values: Iterable[V]) -> Iterator[Any]:
        """Apply ``fn`` to every value on the pool; yield results in order of ``values``.

        Results still outstanding from earlier submissions are dropped first
        (finished ones are fetched, unfinished ones ignored; as in Ray, an
        error from a finished one is raised here), so the iterator yields
        exactly one result per value. All values are submitted before this
        returns; iterate the result to collect them.

        Args:
            fn: ``fn(actor, value)`` starts a call on ``actor`` and returns its
                ``ObjectRef``; the actor is busy until that result is returned.
            values: Values to apply ``fn`` to.

        Example::

            out = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])
            assert list(out) == [2, 4, 6]
        """
        while self.has_next():
            try:
                # Unordered, so leftovers of an earlier get_next_unordered() drain too.
                self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: _SubmitFn[V], values: Iterable[V]) -> Iterator[Any]:
        """Like :meth:`map`, but yield each result as soon as it is ready.

        Results still outstanding from earlier submissions are waited for and
        dropped first.

        Example::

            out = pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2, 3])
            assert sorted(out) == [2, 4, 6]
        """
        while self.has_next():
            try:
                self.get_next_unordered(timeout=None)
            except TimeoutError:
                pass
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    # ------------------------------------------------------------ one value

    def submit(self, fn: _SubmitFn[V], value: V) -> None:
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one is free.

        Retrieve the result with :meth:`get_next` or :meth:`get_next_unordered`.

        Raises:
            TypeError: ``fn`` returned something other than an ObjectRef or a
                list of ObjectRefs (the actor stays idle).

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            pool.submit(lambda a, v: a.double.remote(v), 2)
            assert (pool.get_next(), pool.get_next()) == (2, 4)
        """
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        try:
            future = fn(actor, value)
            key = self._key_of(future)
            if key in self._future_to_actor:
                raise ValueError(
                    f"ActorPool fn returned {future!r}, which the pool already tracks for an "
                    "earlier submission; fn must start a new call for every value"
                )
        except BaseException:
            self._idle_actors.append(actor)
            raise
        self._future_to_actor[key] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether any submitted call's result has not been returned yet.

        Example::

            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert pool.has_next()
            pool.get_next()
            assert not pool.has_next()
        """
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.
            ignore_if_timedout: On timeout, drop that call (its actor goes back
                to the idle set, its result is never returned) and move on to
                the next one before raising.

        Raises:
            StopIteration: no result is pending (check :meth:`has_next`).
            GetTimeoutError: (a ``TimeoutError``) the result was not ready in time.
            ValueError: ``get_next_unordered`` already returned a later result.

        Example::

            pool.submit(lambda a, v: a.slow.remote(v), 1)
            try:
                pool.get_next(timeout=0.1)
            except TimeoutError:
                ...  # still pending; ask again later
        """
        _check_timeout(timeout)
        if not self.has_next():
            raise StopIteration("No more results to get")
        index = self._next_return_index
        if index not in self._index_to_future:
            raise ValueError(
                "It is not allowed to call get_next() after get_next_unordered(): "
                f"results up to submission #{index - 1} were already returned out of order. "
                "Use get_next_unordered() for the remaining results."
            )
        future = self._index_to_future[index]
        timed_out = False
        if timeout is not None:
            refs = _refs_of(future)
            ready, _ = distcore.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise GetTimeoutError(
                        f"{_TIMEOUT_MSG} after {timeout} s (submission #{index})."
                    )
                timed_out = True
        del self._index_to_future[index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(self._key_of(future))
        if timed_out:
            self._return_actor(actor)
            raise GetTimeoutError(
                f"{_TIMEOUT_MSG} after {timeout} s. The task {future} has been ignored."
            )
        return self._get_result(future, actor)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Whichever pending result is ready first, waiting up to ``timeout`` seconds.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.
            ignore_if_timedout: On timeout, drop the oldest pending call (its
                actor goes back to the idle set) before raising.

        Raises:
            StopIteration: no result is pending.
            GetTimeoutError: (a ``TimeoutError``) nothing was ready in time.

        Example::

            for v in [3, 1, 2]:
                pool.submit(lambda a, v: a.sleep_then_return.remote(v), v)
            first = pool.get_next_unordered(timeout=10)
        """
        _check_timeout(timeout)
        if not self.has_next():
            raise StopIteration("No more results to get")
        key = self._wait_any(timeout)
        timed_out = key is None
        if key is None:
            if not ignore_if_timedout:
                raise GetTimeoutError(f"{_TIMEOUT_MSG} after {timeout} s.")
            key = next(iter(self._future_to_actor))
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if timed_out:
            self._return_actor(actor)
            raise GetTimeoutError(
                f"{_TIMEOUT_MSG} after {timeout} s. The task {future} has been ignored."
            )
        return self._get_result(future, actor)

    # ------------------------------------------------------------ idle actors

    def has_free(self) -> bool:
        """Whether an actor is idle and no submitted value is waiting for one.

        Example::

            pool = ActorPool([a1])
            pool.submit(lambda a, v: a.double.remote(v), 1)
            assert not pool.has_free()
        """
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any | None:
        """Remove an idle actor from the pool and return it; ``None`` if none is free.

        Example::

            actor = pool.pop_idle()
            if actor is not None:
                distcore.kill(actor)
        """
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add ``actor`` to the pool as idle; it takes a waiting value at once if any.

        Raises:
            ValueError: ``actor`` is already in this pool (idle or busy).

        Example::

            pool.push(Doubler.remote())
        """
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError(f"Actor already belongs to current ActorPool: {actor!r}")
        self._return_actor(actor)

    # ------------------------------------------------------------ internals

    def _get_result(self, future: _Future, actor: Any) -> Any:
        alive = True
        try:
            return distcore.get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive=alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        # A dead actor stays out: submit() would otherwise keep choosing it.
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.popleft())

    def _wait_any(self, timeout: float | None) -> _Key | None:
        """The key of the first in-flight call whose refs are all ready, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ready: set[ObjectRef] = set()
        while True:
            for key in self._future_to_actor:
                if all(r in ready for r in _refs_of(key)):
                    return key
            waiting = [r for key in self._future_to_actor for r in _refs_of(key) if r not in ready]
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = distcore.wait(waiting, num_returns=1, timeout=remaining)
            if not done:
                return None
            ready.update(done)

    def _key_of(self, future: Any) -> _Key:
        if isinstance(future, distcore.ObjectRef):
            key: _Key = future
        elif (
            isinstance(future, list | tuple)
            and future
            and all(isinstance(r, distcore.ObjectRef) for r in future)
        ):
            key = tuple(future)
        else:
            raise TypeError(
                "ActorPool fn must return the ObjectRef of a call on the actor it was given "
                f"(e.g. lambda a, v: a.method.remote(v)), or a non-empty list of ObjectRefs; "
                f"got {type(future).__name__}: {future!r}"
            )
        return key


def _refs_of(future: Any) -> list[ObjectRef]:
    return [future] if isinstance(future, distcore.ObjectRef) else list(future)


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or None, got {type(timeout).__name__}: {timeout!r}"
        )
    if timeout < 0:
        raise ValueError(f"timeout must be None or a non-negative number of seconds, got {timeout}")
