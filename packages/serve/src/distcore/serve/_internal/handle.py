"""DeploymentHandle, DeploymentResponse and DeploymentResponseGenerator (Ray Serve's handle API).

``handle.remote(...)`` starts the call on the process's serve loop at once and
returns a response that can be awaited (in async code), waited on with
``.result(timeout_s=...)`` (in sync code) or passed as an argument to another
handle call, which then waits for it before sending.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, replace
from typing import Any

from distcore.serve._internal import loop as serve_loop
from distcore.serve._internal import wire
from distcore.serve._internal.context import request_id as _request_var
from distcore.serve._internal.router import get_router
from distcore.serve._internal.wire import next_request_id
from distcore.serve.exceptions import RequestCancelledError


@dataclass(frozen=True)
class _HandleOptions:
    method_name: str = "__call__"
    stream: bool = False
    multiplexed_model_id: str = ""


async def _resolve(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if any(isinstance(a, DeploymentResponse) for a in args):
        args = tuple([await a._async_result() if isinstance(a, DeploymentResponse) else a for a in args])
    if any(isinstance(v, DeploymentResponse) for v in kwargs.values()):
        kwargs = {k: (await v._async_result() if isinstance(v, DeploymentResponse) else v) for k, v in kwargs.items()}
    return args, kwargs


class DeploymentHandle:
    """Calls a deployment's replicas from Python: ``handle.method.remote(...)`` or ``handle.remote(...)``."""

    def __init__(self, deployment_name: str, app_name: str = "default", options: _HandleOptions | None = None) -> None:
        self.deployment_name = deployment_name
        self.app_name = app_name
        self._options = options or _HandleOptions()

    def __reduce__(self):
        return (DeploymentHandle, (self.deployment_name, self.app_name, self._options))

    def __repr__(self) -> str:
        return f"DeploymentHandle(deployment='{self.deployment_name}', app='{self.app_name}')"

    def options(self, *, method_name: str | None = None, stream: bool | None = None,
                multiplexed_model_id: str | None = None, use_new_handle_api: bool = True,
                **_ignored: Any) -> DeploymentHandle:
        opts = self._options
        if method_name is not None:
            opts = replace(opts, method_name=method_name)
        if stream is not None:
            opts = replace(opts, stream=bool(stream))
        if multiplexed_model_id is not None:
            opts = replace(opts, multiplexed_model_id=multiplexed_model_id)
        return DeploymentHandle(self.deployment_name, self.app_name, opts)

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def _meta(self) -> dict:
        model = self._options.multiplexed_model_id or ""
        rid = _request_var.get() or next_request_id()
        meta = {"request_id": rid}
        if model:
            meta["model_id"] = model
        return meta

    def remote(self, *args: Any, **kwargs: Any) -> DeploymentResponse | DeploymentResponseGenerator:
        router_key = (self.app_name, self.deployment_name)
        opts = self._options
        meta = self._meta()
        if opts.stream:
            return DeploymentResponseGenerator(_start(_stream_call(router_key, opts.method_name, args, kwargs, meta)))
        return DeploymentResponse(_start(_unary_call(router_key, opts.method_name, args, kwargs, meta)))


async def _unary_call(key: tuple[str, str], method: str, args: tuple, kwargs: dict, meta: dict) -> Any:
    args, kwargs = await _resolve(args, kwargs)
    router = get_router(*key)
    route = router.route()
    timeout = route.request_timeout_s if route is not None else None
    deadline = time.monotonic() + timeout if timeout else None
    return await router.call(method, args, kwargs, meta, deadline)


async def _stream_call(key: tuple[str, str], method: str, args: tuple, kwargs: dict, meta: dict) -> Any:
    args, kwargs = await _resolve(args, kwargs)
    return await get_router(*key).stream(method, args, kwargs, meta)


def _start(coro: Any) -> asyncio.Future | concurrent.futures.Future:
    if serve_loop.on_serve_loop():
        return asyncio.get_running_loop().create_task(coro)
    return serve_loop.submit(coro)


class DeploymentResponse:
    """The future result of one handle call."""

    def __init__(self, fut: asyncio.Future | concurrent.futures.Future) -> None:
        self._fut = fut

    def result(self, timeout_s: float | None = None) -> Any:
        if serve_loop.on_serve_loop():
            raise RuntimeError("DeploymentResponse.result() would block the serve event loop: use `await response`")
        if isinstance(self._fut, asyncio.Future):
            raise RuntimeError("this response belongs to the serve event loop: use `await response`")
        try:
            return self._fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the deployment's response did not arrive within {timeout_s} s") from None
        except concurrent.futures.CancelledError:
            raise RequestCancelledError("the request was cancelled") from None

    async def _async_result(self) -> Any:
        if isinstance(self._fut, asyncio.Future) and serve_loop.on_serve_loop():
            return await self._fut
        if isinstance(self._fut, asyncio.Future):
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_await(self._fut), serve_loop.get_loop()))
        return await asyncio.wrap_future(self._fut)

    def __await__(self):
        return self._async_result().__await__()

    def cancel(self) -> None:
        fut = self._fut
        if isinstance(fut, asyncio.Future):
            fut.get_loop().call_soon_threadsafe(fut.cancel)
        else:
            fut.cancel()

    def cancelled(self) -> bool:
        return self._fut.cancelled()


async def _await(fut: asyncio.Future) -> Any:
    return await fut


class DeploymentResponseGenerator:
    """The streamed results of one handle call: iterate it (sync) or ``async for`` over it."""

    def __init__(self, start: asyncio.Future | concurrent.futures.Future) -> None:
        self._start = start
        self._stream: Any = None
        self._done = False

    async def _next_on_loop(self) -> Any:
        if self._stream is None:
            self._stream = await (self._start if isinstance(self._start, asyncio.Future)
                                  else asyncio.wrap_future(self._start))
        kind, payload = await self._stream.next()
        if kind == wire.ITEM:
            return payload
        if kind == wire.END:
            raise StopAsyncIteration
        if kind == wire.ERR:
            raise payload
        raise StopAsyncIteration

    def __aiter__(self) -> DeploymentResponseGenerator:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        try:
            if serve_loop.on_serve_loop():
                return await self._next_on_loop()
            return await asyncio.wrap_future(serve_loop.submit(self._next_on_loop()))
        except StopAsyncIteration:
            self._done = True
            raise

    def __iter__(self) -> DeploymentResponseGenerator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if serve_loop.on_serve_loop():
            raise RuntimeError("iterating a DeploymentResponseGenerator synchronously would block the serve loop")
        try:
            return serve_loop.submit(self._next_on_loop()).result()
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def cancel(self) -> None:
        stream = self._stream
        if stream is not None:
            serve_loop.get_loop().call_soon_threadsafe(stream.close)
        self._done = True
