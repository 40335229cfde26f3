"""One asyncio loop per process on a daemon thread: routers, handles, replica servers and the proxy run on it.

uvloop is used when installed. Everything serve does on the request path runs
on this loop, so a request never hops threads between the proxy, the router
and the connection to a replica.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


def get_loop() -> asyncio.AbstractEventLoop:
    """The process's serve loop, started on first use."""
    global _loop, _thread
    if _loop is not None and _thread is not None and _thread.is_alive():
        return _loop
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = _new_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="distcore-serve-loop", daemon=True)
            thread.start()
            ready.wait(10)
            _loop, _thread = loop, thread
    return _loop


def on_serve_loop() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the serve loop and wait for it from another thread."""
    if on_serve_loop():
        coro.close()
        raise RuntimeError("run_sync() called on the serve loop; await the coroutine instead")
    fut = submit(coro)
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        fut.cancel()
        raise TimeoutError(f"serve operation did not finish within {timeout} s") from None
