"""The replica actor: hosts one copy of a deployment's code behind a lean request server.

The controller creates it (``initialize`` runs the user's constructor and
``reconfigure``), routers connect to its socket (see ``wire.py``) and the
controller calls ``check_health``, ``get_metrics`` and ``prepare_shutdown``.
Requests and the user's async code run on the process's serve loop; sync user
methods run on a thread pool so a blocking one never stalls the server.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle

from distcore.serve._internal import context as ctx
from distcore.serve._internal import loop as serve_loop
from distcore.serve._internal import wire
from distcore.serve._internal.asgi_capture import ResponseCapture, make_receive, plain_response
from distcore.serve.exceptions import RayServeUserError

HTTP_METHOD = "__serve_http__"
WS_METHOD = "__serve_ws__"


def portable_error(exc: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RayServeUserError carrying its traceback."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        wire.dumps(exc)
        try:
            exc.__serve_traceback__ = text  # type: ignore[attr-defined]
        except Exception:
            pass
        return exc
    except Exception:
        return RayServeUserError(text, type(exc).__name__)


_ASGI = {"version": "3.0", "spec_version": "2.3"}
_Request: Any = None


def _request_class() -> Any:
    """starlette's Request, imported on the first HTTP request (not per request)."""
    global _Request
    if _Request is None:
        from starlette.requests import Request

        _Request = Request
    return _Request


def http_scope(compact: tuple) -> dict:
    """The ASGI scope from the proxy's compact request tuple (fewer bytes to pickle than a dict)."""
    method, path, raw_path, query, headers, client, server, root_path, prefix, version = compact
    return {"type": "http", "asgi": _ASGI, "http_version": version, "method": method, "scheme": "http",
            "path": path, "raw_path": raw_path, "query_string": query, "headers": headers, "client": client,
            "server": server, "root_path": root_path, "route_prefix": prefix}


class ReplicaServer:
    """The request server and the user's object; lives on the serve loop."""

    def __init__(self, app_name: str, deployment: str, replica_id: str, user_def: Any, init_args: tuple,
                 init_kwargs: dict, max_ongoing: int, token: str, is_function: bool) -> None:
        self.app_name = app_name
        self.deployment = deployment
        self.replica_id = replica_id
        self.user_def = user_def
        self.init_args = init_args
        self.init_kwargs = init_kwargs
        self.max_ongoing = max_ongoing
        self.token = token
        self.is_function = is_function
        self.instance: Any = None
        self.context: ctx.ReplicaContext | None = None
        self.ongoing = 0
        self.num_requests = 0
        self.num_errors = 0
        self.draining = False
        self.draining_done = False
        self.server: asyncio.AbstractServer | None = None
        # a Unix socket beside the TCP one: routers on this node connect there (cheaper than TCP loopback)
        self.uds_server: asyncio.AbstractServer | None = None
        self.uds_name = ""
        self.pool = ThreadPoolExecutor(max_workers=max(4, max_ongoing), thread_name_prefix="serve-replica")
        self.idle = asyncio.Event()
        self.idle.set()
        self.loop = asyncio.get_running_loop()
        self.ws_inboxes: dict[tuple[int, int], asyncio.Queue] = {}
        self._async_cache: dict[Any, bool] = {}
        self._call_fn: Any = None  # the bound __call__, looked up once

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str) -> int:
        from distcore.serve._internal.local import LOCAL_SERVERS

        self.server = await self.loop.create_server(
            lambda: wire.ServerConnection(self.token, self.on_message), host, 0)
        self.uds_server, self.uds_name = await wire.unix_server(
            lambda: wire.ServerConnection(self.token, self.on_message), f"replica-{self.replica_id}")
        LOCAL_SERVERS[self.replica_id] = self
        return self.server.sockets[0].getsockname()[1]

    async def init_user(self) -> None:
        ctx.set_replica_context(ctx.ReplicaContext(self.app_name, self.deployment, self.replica_id))
        if self.is_function:
            self.instance = self.user_def
        else:
            make = functools.partial(self.user_def, *self.init_args, **self.init_kwargs)
            run = contextvars.copy_context().run
            self.instance = await self.loop.run_in_executor(self.pool, functools.partial(run, make))
        self.context = ctx.ReplicaContext(self.app_name, self.deployment, self.replica_id, self.instance)
        ctx.set_replica_context(self.context)

    async def reconfigure(self, user_config: Any) -> None:
        hook = getattr(self.instance, "reconfigure", None)
        if hook is None or self.is_function:
            if user_config is not None:
                raise ValueError(f"deployment '{self.deployment}' got a user_config but defines no reconfigure() method")
            return
        await self._invoke(hook, (user_config,), {})

    async def check_health(self) -> None:
        hook = getattr(self.instance, "check_health", None)
        if hook is not None and not self.is_function:
            await self._invoke(hook, (), {})

    async def drain(self, timeout_s: float) -> None:
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self.ongoing and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self.idle.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
        self.stop_listening()
        hook = getattr(self.instance, "__del__", None)
        if hook is not None and not self.is_function:
            try:
                await self._invoke(hook, (), {})
            except Exception:
                pass

    def stop_listening(self) -> None:
        from distcore.serve._internal.local import LOCAL_SERVERS

        self.draining_done = True
        if LOCAL_SERVERS.get(self.replica_id) is self:
            del LOCAL_SERVERS[self.replica_id]
        if self.server is not None:
            self.server.close()
        if self.uds_server is not None:
            self.uds_server.close()

    # ---------------------------------------------------------------- requests

    def on_message(self, conn: wire.ServerConnection, msg: Any) -> None:
        if msg[0] == wire.WSIN:
            queue = self.ws_inboxes.get((id(conn), msg[1]))
            if queue is not None:
                queue.put_nowait(msg[2])
            return
        if msg[0] == wire.CANCEL:
            task = conn.tasks.pop(msg[1], None)
            if task is not None:
                task.cancel()
            return
        _, rid, method, args, kwargs, meta = msg
        if self.draining or self.ongoing >= self.max_ongoing:
            conn.send((rid, wire.REJECT, self.ongoing))
            return
        self.ongoing += 1
        self.idle.clear()
        conn.tasks[rid] = self.loop.create_task(self._run(conn, rid, method, args, kwargs, meta))

    async def _run(self, conn: wire.ServerConnection, rid: int, method: str, args: tuple, kwargs: dict,
                   meta: dict | None) -> None:
        self.num_requests += 1
        ctx.replica_context_var.set(self.context)
        try:
            if meta:
                if meta.get("request_id"):
                    ctx.request_id.set(meta["request_id"])
                if meta.get("model_id"):
                    ctx.multiplexed_model_id.set(meta["model_id"])
            if method == HTTP_METHOD:
                await self._http(conn, rid, args[0], args[1])
            elif method == WS_METHOD:
                await self._websocket(conn, rid, args[0])
            elif meta and meta.get("stream"):
                await self._stream(conn, rid, method, args, kwargs)
            else:
                result = await self._call(method, args, kwargs)
                self._reply(conn, rid, wire.OK, result)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - every user error goes back to the caller
            self.num_errors += 1
            self._reply(conn, rid, wire.ERR, portable_error(exc))
        finally:
            conn.tasks.pop(rid, None)
            self.ongoing -= 1
            if not self.ongoing:
                self.idle.set()

    def _reply(self, conn: wire.ServerConnection, rid: int, kind: int, payload: Any) -> None:
        try:
            conn.send((rid, kind, payload))
        except Exception as exc:  # an unpicklable result
            conn.send((rid, wire.ERR, RayServeUserError(f"could not serialize the result: {exc!r}", "TypeError")))

    def _target(self, method: str) -> Any:
        if self.is_function:
            if method not in ("__call__", HTTP_METHOD):
                raise AttributeError(f"function deployment '{self.deployment}' has no method '{method}'")
            return self.instance
        fn = getattr(self.instance, method, None)
        if fn is None:
            raise AttributeError(f"deployment '{self.deployment}' has no method '{method}'")
        return fn

    async def _invoke(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        is_async = self._async_cache.get(fn)
        if is_async is None:
            is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            if len(self._async_cache) < 1024:
                self._async_cache[fn] = is_async
        if is_async:
            out = fn(*args, **kwargs)
        else:
            run = contextvars.copy_context().run
            out = await self.loop.run_in_executor(self.pool, functools.partial(run, fn, *args, **kwargs))
        if inspect.isawaitable(out):
            out = await out
        return out

    async def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        out = await self._invoke(self._target(method), args, kwargs)
        if inspect.isgenerator(out) or inspect.isasyncgen(out):
            raise TypeError(f"method '{method}' of '{self.deployment}' returned a generator: call it through "
                            "handle.options(stream=True)")
        return out

    async def _stream(self, conn: wire.ServerConnection, rid: int, method: str, args: tuple, kwargs: dict) -> None:
        fn = self._target(method)
        if inspect.isasyncgenfunction(fn):
            gen = fn(*args, **kwargs)
        else:
            gen = await self._invoke(fn, args, kwargs)
        if inspect.isasyncgen(gen):
            async for item in gen:
                self._reply(conn, rid, wire.ITEM, item)
        elif inspect.isgenerator(gen):
            sentinel = object()
            while True:
                item = await self.loop.run_in_executor(self.pool, next, gen, sentinel)
                if item is sentinel:
                    break
                self._reply(conn, rid, wire.ITEM, item)
        else:
            raise TypeError(f"handle.options(stream=True) needs '{method}' to be a generator, got {type(gen).__name__}")
        conn.send((rid, wire.END, None))

    async def _http(self, conn: wire.ServerConnection, rid: int, scope: dict | tuple, body: bytes) -> None:
        if type(scope) is tuple:
            scope = http_scope(scope)
        receive = make_receive(body, conn.closed)
        asgi_app = getattr(self.instance, "__serve_asgi_app__", None)
        if asgi_app is None:
            value = await self._invoke(self._call_target(), (_request_class()(scope, receive),), {})
            plain = plain_response(value)
            if plain is not None:
                conn.send((rid, wire.OK, plain))
                return
            asgi_app = value  # a Starlette Response: run it as an ASGI app
        capture = ResponseCapture(lambda r: conn.send((rid, wire.OK, r)), lambda i: conn.send((rid, wire.ITEM, i)))
        await asgi_app(scope, receive, capture.send)
        if capture.streaming:
            conn.send((rid, wire.END, None))
        elif not capture.done:
            conn.send((rid, wire.OK, (500, [], b"the ASGI app sent no response")))

    def _call_target(self) -> Any:
        fn = self._call_fn
        if fn is None:
            fn = self._call_fn = self._target("__call__")
        return fn

    async def _websocket(self, conn: wire.ServerConnection, rid: int, scope: dict) -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        # the proxy holds the client's connect message: the app may accept before the first frame flows
        inbox.put_nowait({"type": "websocket.connect"})
        key = (id(conn), rid)
        self.ws_inboxes[key] = inbox

        async def send(message: dict) -> None:
            conn.send((rid, wire.ITEM, message))

        try:
            asgi_app = getattr(self.instance, "__serve_asgi_app__", None)
            if asgi_app is None:
                raise TypeError(f"deployment '{self.deployment}' is not an ASGI ingress: WebSockets need "
                                "@serve.ingress(app) with a Starlette or FastAPI app")
            await asgi_app(scope, inbox.get, send)
        finally:
            self.ws_inboxes.pop(key, None)
        conn.send((rid, wire.END, None))



class ReplicaActor:
    """The actor class (the controller wraps it with ``distcore.remote``)."""

    def __init__(self, app_name: str, deployment: str, replica_id: str, serialized_def: bytes, init_args: tuple,
                 init_kwargs: dict, max_ongoing: int, token: str, is_function: bool) -> None:
        self._args = (app_name, deployment, replica_id, serialized_def, init_args, init_kwargs, max_ongoing,
                      token, is_function)
        self._server: ReplicaServer | None = None
        self._info: dict | None = None

    async def _on_loop(self, coro: Any) -> Any:
        return await asyncio.wrap_future(serve_loop.submit(coro))

    async def initialize(self, user_config: Any, has_user_config: bool) -> dict:
        import distcore

        app_name, deployment, replica_id, serialized_def, init_args, init_kwargs, max_ongoing, token, is_function = (
            self._args)
        runtime = distcore.get_runtime_context()
        host = runtime.get_node_ip_address() or "127.0.0.1"

        async def setup() -> int:
            user_def = cloudpickle.loads(serialized_def)
            self._server = ReplicaServer(app_name, deployment, replica_id, user_def, init_args, init_kwargs,
                                         max_ongoing, token, is_function)
            await self._server.init_user()
            if has_user_config:
                await self._server.reconfigure(user_config)
            return await self._server.start(host)

        port = await self._on_loop(setup())
        self._info = {"host": host, "port": port, "node_id": runtime.get_node_id(), "pid": os.getpid(),
                      "uds": self._server.uds_name if self._server is not None else ""}
        return self._info

    async def initialize_info(self, timeout_s: float = 60.0) -> dict:
        """The replica's address once its constructor finished (a restarted controller re-adopts it)."""
        deadline = time.monotonic() + timeout_s
        while self._info is None:
            if time.monotonic() > deadline:
                raise TimeoutError("replica did not finish initializing")
            await asyncio.sleep(0.05)
        return self._info

    async def reconfigure(self, user_config: Any) -> None:
        assert self._server is not None
        await self._on_loop(self._server.reconfigure(user_config))

    async def check_health(self) -> None:
        if self._server is None:
            return
        await self._on_loop(self._server.check_health())

    async def get_metrics(self) -> dict:
        s = self._server
        if s is None:
            return {"ongoing": 0, "requests": 0, "errors": 0}
        return {"ongoing": s.ongoing, "requests": s.num_requests, "errors": s.num_errors}

    async def prepare_shutdown(self, timeout_s: float) -> None:
        if self._server is not None:
            await self._on_loop(self._server.drain(timeout_s))

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Stop serving at once (a hosted replica being removed from the proxy)."""
        if self._server is not None:
            server = self._server

            async def stop() -> None:
                server.draining = True
                server.stop_listening()

            await self._on_loop(stop())
