"""The HTTP proxy: uvicorn serving a lean ASGI app that routes by route prefix to ingress replicas.

It runs as a detached actor on the head node; uvicorn runs on the process's
serve loop, next to the routers, so a request costs one hop to a replica over
a persistent connection. Answers ``/-/routes``, ``/-/healthz`` and
``/-/metrics`` (Prometheus text) itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any

from distcore.serve._internal import loop as serve_loop
from distcore.serve._internal import wire
from distcore.serve._internal.config import HTTPOptions
from distcore.serve._internal.http_protocol import ProxyHttpProtocol
from distcore.serve._internal.metrics import ProxyMetrics
from distcore.serve._internal.replica import HTTP_METHOD, WS_METHOD
from distcore.serve._internal.router import Router, all_routers, get_router
from distcore.serve._internal.table import table_client
from distcore.serve._internal.wire import next_request_id
from distcore.serve.exceptions import BackPressureError, DeploymentUnavailableError

_SCOPE_KEYS = ("type", "http_version", "method", "scheme", "path", "raw_path", "query_string", "headers",
               "client", "server", "subprotocols")


class AccessLog:
    """Buffered access log lines (``request_id method path status ms``), flushed twice a second."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lines: list[tuple] = []
        self._file = open(path, "a", buffering=1 << 16) if path else None  # noqa: SIM115

    def write(self, request_id: str, app: str, method: str, path: str, status: int, ms: float) -> None:
        if self._file is not None:
            self.lines.append((time.time(), request_id, app, method, path, status, ms))

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.flush()

    def flush(self) -> None:
        if self._file is not None and self.lines:
            lines, self.lines = self.lines, []
            self._file.writelines(f"{t:.3f} {rid} {app} {method} {path} {status} {ms:.2f}ms\n"
                                  for t, rid, app, method, path, status, ms in lines)
            self._file.flush()


async def _send_simple(send: Any, status: int, body: bytes, headers: list | None = None,
                       content_type: bytes = b"text/plain; charset=utf-8") -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class FastReply:
    """The reply frames of one request sent by :meth:`ProxyApp.fast_http`, written straight to the client."""

    __slots__ = ("proto", "proxy", "router", "req", "path", "raw_path", "query", "request_id", "app", "ingress",
                 "prefix", "start", "status", "replica", "conn", "rid", "finished", "timer", "timeout")

    def __init__(self, proto: ProxyHttpProtocol, proxy: ProxyApp, router: Router, req: Any, path: str,
                 raw_path: bytes, query: bytes, request_id: str, app: str, ingress: str, prefix: str) -> None:
        self.proto = proto
        self.proxy = proxy
        self.router = router
        self.req = req
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.request_id = request_id
        self.app = app
        self.ingress = ingress
        self.prefix = prefix
        self.start = time.perf_counter()
        self.status: int | None = None
        self.replica: Any = None
        self.conn: Any = None
        self.rid = 0
        self.finished = False
        self.timer: Any = None  # request_timeout_s: fires unless the first frame comes first
        self.timeout = 0.0

    def _release(self) -> None:
        if not self.finished:
            self.finished = True
            self.router._release(self.replica.replica_id)

    def abandon(self) -> None:
        """The client went away: cancel the call at the replica and free its slot."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.finished:
            self.conn.cancel(self.rid)
            self._release()

    def on_timeout(self) -> None:
        self.timer = None
        if self.finished or self.proto.fast is not self:
            return
        self.abandon()
        self.proto.write_response(504, [(b"content-type", b"text/plain; charset=utf-8")],
                                  f"Request {self.request_id} timed out after {self.timeout} s.".encode(),
                                  [(b"x-request-id", self.request_id.encode())])
        self._done(504)

    def _fall_back(self) -> None:
        """Refused or lost before any answer: the general path retries (and queues, and times out)."""
        proto = self.proto
        if proto.fast is not self:
            return
        proto.fast = None
        if not any(k == b"x-request-id" for k, _ in self.req.headers):
            self.req.headers.append((b"x-request-id", self.request_id.encode()))
        proto.run_asgi(self.req, self.path, self.raw_path, self.query)

    def _done(self, status: int) -> None:
        ms = (time.perf_counter() - self.start) * 1000
        proxy = self.proxy
        proxy.metrics.record(self.app, self.ingress, self.prefix, status, ms)
        if proxy.access.path is not None:
            proxy.access.write(self.request_id, self.app, self.req.method, self.path, status, ms)

    def __call__(self, kind: int, payload: Any) -> None:
        proto = self.proto
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if kind == wire.OK:
            self._release()
            status, headers, body = payload
            proto.write_response(status, headers, body, [(b"x-request-id", self.request_id.encode())])
            self._done(status)
        elif kind == wire.ITEM:
            if self.status is None:  # the first item of a streamed response: ("start", status, headers)
                _, self.status, headers = payload
                proto.write_stream_start(self.status, headers, [(b"x-request-id", self.request_id.encode())])
            else:
                proto.write_stream_chunk(payload[1])
        elif kind == wire.END:
            self._release()
            proto.write_stream_end()
            self._done(self.status or 200)
        elif kind == wire.REJECT:
            self._release()
            self.router.full_until[self.replica.replica_id] = time.monotonic() + 0.01
            self._fall_back()
        else:  # ERR
            self._release()
            lost = isinstance(payload, wire.ReplicaConnectionError)
            if lost:
                self.router._replica_failed(self.replica)
            if self.status is not None:  # a stream cut short: the client must see the connection end
                if proto.transport is not None:
                    proto.transport.close()
                self._done(500)
            elif lost:
                self._fall_back()
            else:
                text = getattr(payload, "__serve_traceback__", None) or f"{type(payload).__name__}: {payload}"
                proto.write_response(500, [(b"content-type", b"text/plain; charset=utf-8")],
                                     f"Internal Server Error (request {self.request_id}):\n{text}".encode(),
                                     [(b"x-request-id", self.request_id.encode())])
                self._done(500)


class ProxyApp:
    """The ASGI app uvicorn serves (with :meth:`fast_http` as the shortcut for plain requests)."""

    def __init__(self, options: HTTPOptions) -> None:
        self.options = options
        self.client = table_client()
        self.metrics = ProxyMetrics()
        self.access = AccessLog(options_access_path(options))
        self._routes_version = -1
        self._routes: list[tuple[str, str, str]] = []

    def _match(self, path: str) -> tuple[str, str, str] | None:
        table = self.client.table
        if table.version != self._routes_version:
            routes = [(prefix, app, ingress) for app, (prefix, ingress) in table.apps.items() if prefix is not None]
            routes.sort(key=lambda r: len(r[0]), reverse=True)
            self._routes, self._routes_version = routes, table.version
        for prefix, app, ingress in self._routes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/") or (
                    prefix.endswith("/") and path.startswith(prefix)):
                return prefix, app, ingress
        return None

    def fast_http(self, proto: ProxyHttpProtocol, req: Any, path: str, raw_path: bytes, query: bytes) -> bool:
        """Send a plain request to a replica with room at once; False when it needs the general path."""
        if path.startswith("/-/"):
            return False
        match = self._match(path)
        if match is None:
            return False
        prefix, app, ingress = match
        router = get_router(app, ingress)
        if router.waiters:
            return False
        route = router.route()
        if route is None:
            return False
        timeout = route.request_timeout_s or self.client.table.request_timeout_s
        request_id = model_id = ""
        for k, v in req.headers:
            if k == b"x-request-id":
                request_id = v.decode("latin-1")
            elif k == b"serve_multiplexed_model_id":
                model_id = v.decode("latin-1")
        if not request_id:
            request_id = next_request_id()
        meta = {"request_id": request_id, "stream": True}
        if model_id:
            meta["model_id"] = model_id
        scope = (req.method, path, raw_path, query, req.headers, proto.client, proto.server,
                 "" if prefix == "/" else prefix.rstrip("/"), prefix, req.http_version)
        reply = FastReply(proto, self, router, req, path, raw_path, query, request_id, app, ingress, prefix)
        proto.fast = reply
        if not router.try_send(HTTP_METHOD, (scope, req.body), meta, reply):
            proto.fast = None
            return False
        if timeout and not reply.finished and proto.fast is reply:
            reply.timeout = timeout
            reply.timer = proto.loop.call_later(timeout, reply.on_timeout)
        return True

    def _queue_lengths(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {k: (r.queued(), sum(r.inflight.values())) for k, r in all_routers().items()}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path.startswith("/-/"):
            await self._builtin(path, send)
            return
        match = self._match(path)
        if match is None:
            if not self.client.table.apps and not self.client._first.is_set():
                try:
                    await self.client.wait_first(5.0)
                except TimeoutError:
                    pass
                match = self._match(path)
            if match is None:
                if kind == "http":
                    await _send_simple(send, 404, f"Path '{path}' not found. Ping http://.../-/routes for routing "
                                                  "table.".encode())
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        prefix, app, ingress = match
        headers = scope.get("headers", [])
        request_id = ""
        for k, v in headers:
            if k == b"x-request-id":
                request_id = v.decode("latin-1")
                break
        if not request_id:
            request_id = next_request_id()
        meta: dict[str, Any] = {"request_id": request_id}
        for k, v in headers:
            if k == b"serve_multiplexed_model_id":
                meta["model_id"] = v.decode("latin-1")
        small = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
        small["root_path"] = scope.get("root_path", "") + ("" if prefix == "/" else prefix.rstrip("/"))
        small["route_prefix"] = prefix
        if kind == "websocket":
            await self._websocket(small, receive, send, app, ingress, meta)
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        start = time.perf_counter()
        status = await self._forward(small, body, send, app, ingress, meta, request_id)
        ms = (time.perf_counter() - start) * 1000
        self.metrics.record(app, ingress, prefix, status, ms)
        self.access.write(request_id, app, small["method"], path, status, ms)

    async def _forward(self, scope: dict, body: bytes, send: Any, app: str, ingress: str, meta: dict,
                       request_id: str) -> int:
        router = get_router(app, ingress)
        route = router.route()
        timeout = (route.request_timeout_s if route is not None else None) or self.client.table.request_timeout_s
        deadline = time.monotonic() + timeout if timeout else None
        rid_header = [(b"x-request-id", request_id.encode())]
        try:
            stream = await router.stream(HTTP_METHOD, (scope, body), {}, meta, deadline)
        except TimeoutError:
            await _send_simple(send, 504, f"Request {request_id} timed out after {timeout} s.".encode(), rid_header)
            return 504
        except BackPressureError as exc:
            await _send_simple(send, 503, str(exc).encode(), [(b"retry-after", b"1")] + rid_header)
            return 503
        except DeploymentUnavailableError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                await _send_simple(send, 408, f"Request {request_id} timed out after {timeout} s waiting for a "
                                              f"replica: {exc}".encode(), rid_header)
                return 408
            await _send_simple(send, 503, str(exc).encode(), [(b"retry-after", b"1")] + rid_header)
            return 503
        try:
            if deadline is not None:
                try:
                    kind, payload = await asyncio.wait_for(stream.next(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    stream.close()
                    await _send_simple(send, 504, f"Request {request_id} timed out after {timeout} s.".encode(),
                                       rid_header)
                    return 504
            else:
                kind, payload = await stream.next()
            if kind == wire.OK:
                status, headers, body_out = payload
                headers = list(headers)
                if not any(k == b"content-length" for k, _ in headers):
                    headers.append((b"content-length", str(len(body_out)).encode()))
                headers.extend(rid_header)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body_out})
                return status
            if kind == wire.ERR:
                text = getattr(payload, "__serve_traceback__", None) or f"{type(payload).__name__}: {payload}"
                await _send_simple(send, 500, f"Internal Server Error (request {request_id}):\n{text}".encode(),
                                   rid_header)
                return 500
            # a streamed response: the first item holds status and headers
            _, status, headers = payload
            await send({"type": "http.response.start", "status": status, "headers": list(headers) + rid_header})
            while True:
                kind, payload = await stream.next()
                if kind == wire.ITEM:
                    await send({"type": "http.response.body", "body": payload[1], "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return status
        except asyncio.CancelledError:
            stream.close()
            raise
        finally:
            stream.close()

    async def _websocket(self, scope: dict, receive: Any, send: Any, app: str, ingress: str, meta: dict) -> None:
        router = get_router(app, ingress)
        try:
            stream = await router.stream(WS_METHOD, (scope,), {}, meta, None)
        except Exception:
            await send({"type": "websocket.close", "code": 1013})
            return

        async def pump_in() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "websocket.connect":
                    continue  # the replica starts from its own connect message
                stream.conn.ws_send(stream.rid, msg)
                if msg["type"] == "websocket.disconnect":
                    return

        inbound = asyncio.get_running_loop().create_task(pump_in())
        try:
            while True:
                kind, payload = await stream.next()
                if kind == wire.ITEM:
                    await send(payload)
                else:
                    if kind == wire.ERR:
                        try:
                            await send({"type": "websocket.close", "code": 1011})
                        except Exception:
                            pass
                    return
        except Exception:
            return
        finally:
            inbound.cancel()
            stream.close()

    async def _builtin(self, path: str, send: Any) -> None:
        if path == "/-/healthz":
            await _send_simple(send, 200, b"success")
        elif path == "/-/routes":
            routes = {prefix: app for app, (prefix, _) in self.client.table.apps.items() if prefix is not None}
            await _send_simple(send, 200, json.dumps(routes).encode(), content_type=b"application/json")
        elif path == "/-/metrics":
            text = self.metrics.render(self._queue_lengths)
            await _send_simple(send, 200, text.encode(), content_type=b"text/plain; version=0.0.4")
        else:
            await _send_simple(send, 404, b"not found")


def options_access_path(options: HTTPOptions) -> str | None:
    return getattr(options, "access_log_path", None)


class ProxyServer:
    """uvicorn on the serve loop, bound by us so a busy port is a clear error."""

    def __init__(self, options: HTTPOptions) -> None:
        self.options = options
        self.server: Any = None
        self.task: asyncio.Task | None = None
        self.app: ProxyApp | None = None
        self.port = options.port

    async def start(self) -> int:
        import uvicorn

        self.app = ProxyApp(self.options)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if getattr(self.options, "location", "HeadOnly") == "EveryNode" and hasattr(socket, "SO_REUSEPORT"):
            # proxies of nodes that share a host (a local multi-node cluster) share the port, as in Ray
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.options.host, self.options.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"Serve's HTTP proxy cannot listen on {self.options.host}:{self.options.port}: {exc}. "
                          "Pick another port with serve.start(http_options={'port': ...}).") from None
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, loop="none", http=ProxyHttpProtocol, lifespan="off", log_level="warning", access_log=False,
                                proxy_headers=False, server_header=False,
                                timeout_keep_alive=self.options.keep_alive_timeout_s, ws="websockets-sansio"
                                if _has_sansio() else "websockets")
        self.server = uvicorn.Server(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        flush = asyncio.get_running_loop().create_task(self.app.access.flush_forever())
        self.task.add_done_callback(lambda _: flush.cancel())
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            if self.task is not None:
                try:
                    await asyncio.wait_for(self.task, 10)
                except Exception:
                    pass
        if self.app is not None:
            self.app.access.flush()


def _has_sansio() -> bool:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401

        return True
    except Exception:
        return False


class ProxyActor:
    """The proxy actor: its constructor binds the HTTP (and gRPC) servers, so a restart rebinds them."""

    def __init__(self, options: HTTPOptions, grpc_options: Any = None) -> None:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server: ProxyServer | None = None
        self._grpc: Any = None

        import distcore

        node_id = distcore.get_runtime_context().get_node_id()

        async def run() -> dict:
            self._server = ProxyServer(options)
            out = {"http_port": await self._server.start(), "pid": os.getpid(), "node_id": node_id}
            if grpc_options is not None and grpc_options.grpc_servicer_functions:
                from distcore.serve._internal.grpc_proxy import GrpcProxy

                self._grpc = GrpcProxy(grpc_options)
                out["grpc_port"] = await self._grpc.start()
            return out

        self._ports = serve_loop.submit(run()).result(30)

    async def ready(self) -> dict:
        return self._ports

    async def stats(self) -> dict:
        """Where this proxy runs and how many HTTP requests it answered."""
        app = self._server.app if self._server is not None else None
        n = sum(app.metrics.requests.values()) if app is not None else 0
        return {**self._ports, "requests": n}

    # ---------------------------------------------------------------- hosted replicas

    async def host_replica(self, replica_id: str, ctor_args: tuple) -> None:
        """Create a replica in this process (the controller then calls ``replica_call(..., 'initialize')``)."""
        from distcore.serve._internal.replica import ReplicaActor

        self._hosted = getattr(self, "_hosted", {})
        self._hosted[replica_id] = ReplicaActor(*ctor_args)

    async def replica_call(self, replica_id: str, method: str, args: tuple) -> Any:
        hosted = getattr(self, "_hosted", {}).get(replica_id)
        if hosted is None:
            raise RuntimeError(f"replica {replica_id} is not hosted by this proxy")
        return await getattr(hosted, method)(*args)

    async def remove_replica(self, replica_id: str) -> None:
        hosted = getattr(self, "_hosted", {}).pop(replica_id, None)
        if hosted is not None:
            await hosted.close()

    async def stop(self) -> None:
        async def run() -> None:
            if self._grpc is not None:
                await self._grpc.stop()
            if self._server is not None:
                await self._server.stop()

        await asyncio.wrap_future(serve_loop.submit(run()))
