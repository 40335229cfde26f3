"""The proxy's HTTP/1.1 connection protocol: a request goes to its replica without an ASGI round trip.

uvicorn still runs the server (listening, graceful shutdown, the ``date`` header,
WebSocket upgrades); this class is handed to it as its ``http`` protocol. It
parses with httptools and, when the request's deployment has a replica with room
and an open connection right now, frames the request to that replica at once and
writes the HTTP response from the connection's reply callback: no task, no ASGI
messages, no futures (``request_timeout_s`` is a timer). Everything else (``/-/``
routes, 404s, waiting in the router's queue, retries after a refused or lost request) runs the
proxy's ASGI app on a task, through :meth:`ProxyHttpProtocol.asgi_send`, which
writes HTTP/1.1 itself (chunked when the body streams).

Measured (docs/benchmarks.md, serve): proxy + replica CPU per no-op request fell from
147-195 us to 62-84 us on the same loaded box, and req/s rose 2-3x.
"""

from __future__ import annotations

import asyncio
import http
import urllib.parse
from collections import deque
from typing import Any

import httptools


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


STATUS_LINES = {code: _status_line(code) for code in range(100, 600)}
_CRLF = b"\r\n"
_SEP = b": "
_CLOSE = b"connection: close\r\n"
_CHUNKED = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_MAX_PIPELINED = 64


class Request:
    """One parsed request waiting for (or being given) its response."""

    __slots__ = ("method", "url", "headers", "body", "keep_alive", "http_version")

    def __init__(self, method: str, url: bytes, headers: list, body: bytes, keep_alive: bool,
                 http_version: str) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http_version = http_version


class ProxyHttpProtocol(asyncio.Protocol):
    """One client connection. ``config.app`` is the :class:`~distcore.serve._internal.proxy.ProxyApp`."""

    def __init__(self, config: Any, server_state: Any, app_state: dict, _loop: Any = None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.proxy = config.app
        self.asgi_app = config.loaded_app
        self.server_state = server_state
        self.loop = _loop or asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # pragma: no cover - older httptools
            pass
        self.transport: asyncio.Transport | None = None
        self.client: tuple | None = None
        self.server: tuple | None = None
        self.keep_alive_s = float(config.timeout_keep_alive)
        # per-request parse state
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""
        self._upgrade = False
        # requests parsed but not yet answered, in order (HTTP/1.1 pipelining); the first is in progress
        self.pending: deque[Request] = deque()
        self.current: Request | None = None
        self.fast: Any = None  # the in-flight fast call (a FastReply), to cancel on disconnect
        self.task: asyncio.Task | None = None
        self.disconnected: asyncio.Future | None = None
        self.closing = False
        self._paused_reading = False
        self._writable: asyncio.Future | None = None
        self._last_active = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # the response being written through asgi_send
        self._start: dict | None = None
        self._chunked = False
        self._response_done = True

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        sock = transport.get_extra_info("socket")
        try:
            self.client = tuple(transport.get_extra_info("peername") or ())[:2] or None
            self.server = tuple(transport.get_extra_info("sockname") or ())[:2] or None
        except Exception:  # pragma: no cover - unix sockets
            self.client = self.server = None
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._last_active = self.loop.time()
        self._idle_timer = self.loop.call_later(self.keep_alive_s, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.closing = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        fast, self.fast = self.fast, None
        if fast is not None:
            fast.abandon()
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.pending.clear()
        self.current = None
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after the response in progress."""
        self.closing = True
        self.pending.clear()
        if self.current is None and self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_active
        if self.current is None and not self.pending and idle >= self.keep_alive_s:
            self.transport.close()
            return
        self._idle_timer = self.loop.call_later(max(0.05, self.keep_alive_s - idle), self._check_idle)

    # ------------------------------------------------------------------ parsing

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._upgrade:
                self._hand_over_websocket()
            else:
                self._reply_and_close(400, b"Unsupported upgrade request.")
        except httptools.HttpParserError:
            self._reply_and_close(400, b"Invalid HTTP request received.")

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = b""
        self._upgrade = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.should_upgrade():
            for name, value in self._headers:
                if name == b"upgrade" and value.lower() == b"websocket" and self.config.ws_protocol_class:
                    self._upgrade = True
            return
        for name, value in self._headers:
            if name == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if not self._upgrade:
            self._body += body

    def on_message_complete(self) -> None:
        if self._upgrade:
            return
        parser = self.parser
        version = parser.get_http_version()
        req = Request(parser.get_method().decode("ascii"), self._url, self._headers, self._body,
                      version != "1.0" and parser.should_keep_alive(), version)
        if self.current is None and not self.closing:
            self._dispatch(req)
        elif not self.closing:
            self.pending.append(req)
            if len(self.pending) >= _MAX_PIPELINED and not self._paused_reading and self.transport is not None:
                self._paused_reading = True
                self.transport.pause_reading()

    def _hand_over_websocket(self) -> None:
        """Give the connection to uvicorn's WebSocket protocol, replaying the request head to it."""
        self.server_state.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        method = self.parser.get_method()
        out = [method, b" ", self._url, b" HTTP/1.1\r\n"]
        for name, value in self._headers:
            out += [name, _SEP, value, _CRLF]
        out.append(_CRLF)
        protocol = self.config.ws_protocol_class(config=self.config, server_state=self.server_state,
                                                 app_state={})
        protocol.connection_made(self.transport)
        protocol.data_received(b"".join(out))
        self.transport.set_protocol(protocol)

    # ------------------------------------------------------------------ one request

    def _dispatch(self, req: Request) -> None:
        self.current = req
        parsed = httptools.parse_url(req.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        query = parsed.query or b""
        if not self.proxy.fast_http(self, req, path, raw_path, query):
            self.run_asgi(req, path, raw_path, query)

    def run_asgi(self, req: Request, path: str, raw_path: bytes, query: bytes) -> None:
        """The general path: the proxy's ASGI app on a task."""
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": req.http_version,
            "server": self.server, "client": self.client, "scheme": "http", "method": req.method,
            "root_path": "", "path": path, "raw_path": raw_path, "query_string": query, "headers": req.headers,
        }
        self._start = None
        self._chunked = False
        self._response_done = False
        if self.disconnected is None:
            self.disconnected = self.loop.create_future()
        body_sent = False
        disconnected = self.disconnected

        async def receive() -> dict:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": req.body, "more_body": False}
            await disconnected
            return {"type": "http.disconnect"}

        task = self.loop.create_task(self.asgi_app(scope, receive, self.asgi_send))
        self.task = task
        self.server_state.tasks.add(task)
        task.add_done_callback(self._asgi_done)

    def _asgi_done(self, task: asyncio.Task) -> None:
        self.server_state.tasks.discard(task)
        if self.task is not task:
            return  # its response completed (and the connection may have moved on to the next request)
        self.task = None
        if task.cancelled() or self.closing:
            return
        exc = task.exception()
        if not self._response_done:
            if self._start is None:
                text = b"Internal Server Error" if exc is not None else b"the proxy sent no response"
                self.write_simple(500, text)
            elif self.transport is not None:
                self.transport.close()  # a response cut short: the client must not wait for the rest

    async def asgi_send(self, message: dict) -> None:
        if self.closing or self.transport is None:
            return
        kind = message["type"]
        if kind == "http.response.start":
            self._start = message
            return
        if kind != "http.response.body" or self._start is None or self._response_done:
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        start = self._start
        if start is not False:
            self._start = False  # type: ignore[assignment]
            headers = start.get("headers", [])
            if not more:
                self.write_response(start["status"], headers, body)
                return
            has_length = any(k.lower() == b"content-length" for k, _ in headers)
            self._chunked = not has_length
            self.transport.write(self._head(start["status"], headers, None if has_length else _CHUNKED))
        if body:
            self.transport.write(b"%x\r\n%b\r\n" % (len(body), body) if self._chunked else body)
        if not more:
            if self._chunked:
                self.transport.write(_LAST_CHUNK)
            self.response_complete()
        elif self._writable is not None and not self._writable.done():
            await self._writable

    # ------------------------------------------------------------------ writing

    def _head(self, status: int, headers: Any, extra: bytes | None) -> bytes:
        out = [STATUS_LINES.get(status) or _status_line(status)]
        for name, value in self.server_state.default_headers:
            out += [name, _SEP, value, _CRLF]
        for name, value in headers:
            out += [name, _SEP, value, _CRLF]
        if extra is not None:
            out.append(extra)
        if self.current is None or not self.current.keep_alive or self.closing:
            out.append(_CLOSE)
        out.append(_CRLF)
        return b"".join(out)

    def write_response(self, status: int, headers: Any, body: bytes, extra: list | None = None) -> None:
        """A whole response (content-length added unless given), then the next request."""
        if self.transport is None or self.closing and self.current is None:
            return
        out = [STATUS_LINES.get(status) or _status_line(status)]
        for name, value in self.server_state.default_headers:
            out += [name, _SEP, value, _CRLF]
        has_length = False
        for name, value in headers:
            if not has_length and name.lower() == b"content-length":
                has_length = True
            out += [name, _SEP, value, _CRLF]
        if extra:
            for name, value in extra:
                out += [name, _SEP, value, _CRLF]
        if not has_length:
            out += [b"content-length: ", str(len(body)).encode(), _CRLF]
        req = self.current
        if req is None or not req.keep_alive or self.closing:
            out.append(_CLOSE)
        out.append(_CRLF)
        if req is None or req.method != "HEAD":
            out.append(body)
        self.transport.write(b"".join(out))
        self.response_complete()

    def write_simple(self, status: int, body: bytes) -> None:
        self.write_response(status, [(b"content-type", b"text/plain; charset=utf-8")], body)

    def write_stream_start(self, status: int, headers: Any, extra: list | None = None) -> None:
        if self.transport is None or self.closing and self.current is None:
            return
        hdrs = list(headers) + (extra or [])
        has_length = any(k.lower() == b"content-length" for k, _ in hdrs)
        self._chunked = not has_length
        self.transport.write(self._head(status, hdrs, None if has_length else _CHUNKED))

    def write_stream_chunk(self, body: bytes) -> None:
        if self.transport is not None and body:
            self.transport.write(b"%x\r\n%b\r\n" % (len(body), body) if self._chunked else body)

    def write_stream_end(self) -> None:
        if self.transport is not None and self._chunked:
            self.transport.write(_LAST_CHUNK)
        self.response_complete()

    def response_complete(self) -> None:
        """The current response is written: close, or start the next pipelined request."""
        self._response_done = True
        req, self.current = self.current, None
        self.fast = None
        self.task = None
        if self.transport is None:
            return
        if req is None or not req.keep_alive or self.closing:
            self.transport.close()
            return
        self._last_active = self.loop.time()
        if self.pending:
            nxt = self.pending.popleft()
            if self._paused_reading and len(self.pending) < _MAX_PIPELINED // 2:
                self._paused_reading = False
                self.transport.resume_reading()
            self._dispatch(nxt)

    def _reply_and_close(self, status: int, body: bytes) -> None:
        if self.transport is None:
            return
        self.transport.write(STATUS_LINES[status] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()
