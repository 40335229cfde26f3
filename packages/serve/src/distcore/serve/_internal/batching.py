"""``@serve.batch``: concurrent calls of one method are gathered into a list and run together."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from distcore.serve._internal.config import check_float, check_int


class _Batcher:
    def __init__(self, fn: Any, max_batch_size: int, wait_s: float) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def submit(self, owner: Any, item: Any) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((item, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(owner))
        return fut

    async def _run(self, owner: Any) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while len(batch) < self.max_batch_size:
                while not self.queue.empty() and len(batch) < self.max_batch_size:
                    batch.append(self.queue.get_nowait())
                remaining = deadline - asyncio.get_running_loop().time()
                if len(batch) >= self.max_batch_size or remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(i, f) for i, f in batch if not f.done()]
            if not live:
                continue
            items = [i for i, _ in live]
            try:
                out = self.fn(owner, items) if owner is not None else self.fn(items)
                if inspect.isawaitable(out):
                    out = await out
                out = list(out)
                if len(out) != len(items):
                    raise TypeError(f"@serve.batch function '{self.fn.__name__}' returned {len(out)} results for a "
                                    f"batch of {len(items)}: it must return one result per input")
                for (_, f), r in zip(live, out, strict=True):
                    if not f.done():
                        f.set_result(r)
            except Exception as exc:
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)


def batch(_func: Any = None, *, max_batch_size: int = 10, batch_wait_timeout_s: float = 0.0,
          max_concurrent_batches: int = 1) -> Any:
    """Decorate an ``async def`` method taking a list: callers pass one item and get one result.

    Example::

        @serve.deployment
        class Model:
            @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
            async def __call__(self, inputs: list[int]) -> list[int]:
                return [x * 2 for x in inputs]
    """
    check_int("max_batch_size", max_batch_size, 1)
    check_float("batch_wait_timeout_s", batch_wait_timeout_s)

    def decorator(fn: Any) -> Any:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@serve.batch needs an async def function, '{getattr(fn, '__name__', fn)}' is not")
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        attr = f"__serve_batcher_{fn.__name__}"
        free: dict[str, _Batcher] = {}

        @functools.wraps(fn)
        async def wrapper(*args: Any) -> Any:
            if is_method:
                owner, rest = args[0], args[1:]
                batcher = owner.__dict__.get(attr)
                if batcher is None:
                    batcher = _Batcher(fn, max_batch_size, batch_wait_timeout_s)
                    owner.__dict__[attr] = batcher
            else:
                owner, rest = None, args
                batcher = free.get("b")
                if batcher is None:
                    batcher = free["b"] = _Batcher(fn, max_batch_size, batch_wait_timeout_s)
            if len(rest) != 1:
                raise TypeError(f"a @serve.batch function takes exactly one item per call, got {len(rest)}")
            return await batcher.submit(owner, rest[0])

        wrapper.__serve_batch__ = True  # type: ignore[attr-defined]
        return wrapper

    if _func is not None:
        return decorator(_func)
    return decorator
