"""A lean transport for core-worker RPCs between processes of one node.

gRPC aio costs ~550 us of wall time and most of ~600 us of CPU per round trip
on this kind of machine (docs/performance.md §4); the task data path
(``PushTask`` and its reply, actor calls, owner lookups) is all round trips.
Between processes of one node the same calls travel here as length-prefixed
pickled frames over one Unix-domain stream socket per peer, requests
multiplexed by id:

- the listener is an *abstract* Unix socket named after the process's gRPC
  address (``\\0distcore-<ip>:<port>``): nothing on disk to clean up, unique
  while that gRPC port is held, and invisible from another network namespace
  (a peer there falls back to gRPC);
- the cluster token is checked once, in the first frame of a connection;
- a frame is ``4-byte big-endian length + pickle``; a request is
  ``(id, method, message)``, a reply ``(id, status, payload)`` as in
  :mod:`distcore._private.rpc` (an exception raised by the handler is raised
  again in the caller);
- a lost connection fails every call waiting on it with ``RpcUnavailable``,
  as a closed gRPC channel does.

The head also serves the control store on a second listener
(``socket_name(address, "gcs")``) for the blocking calls of same-node
clients (``framed_blocking.py``). Anything else (the control store's other
callers, node managers, object transfer, other nodes) stays on gRPC.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import itertools
import logging
import os
import pickle
import struct
import threading
import traceback
from collections import deque
from typing import Any

from distcore._private.rpc import RemoteHandlerError, RpcUnavailable, _dumps

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_OK = 0
_ERR = 1
# Reply frames bigger than this are flushed before the next one is queued.
_HIGH_WATER = 4 << 20


#: A handler's reply already went out through :meth:`DirectReply.send`: nothing more to send.
ALREADY_SENT = object()
#: Inside a ``PushTask`` handler called over this transport: how to answer it from another thread.
current_direct_reply: contextvars.ContextVar[DirectReply | None] = contextvars.ContextVar(
    "distcore_direct_reply", default=None)


def socket_name(target: str, kind: str = "") -> str:
    """The abstract socket of the process whose gRPC server listens on ``target``; ``kind`` names
    another service of that process on its own socket (``"gcs"``: the control store)."""
    return f"\0distcore-{kind}-{target}" if kind else f"\0distcore-{target}"


def _write_now(fd: int, data: bytes) -> bytes:
    """Write what the socket takes now, from any thread (under the connection's write lock): the
    unsent rest, empty when all of it went."""
    try:
        sent = os.write(fd, data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sent = 0  # the transport sees the error on its next write or read
    return data[sent:]


def _frame(obj: Any) -> bytes:
    body = _dumps(obj)
    return _HEADER.pack(len(body)) + body


class _Frames(asyncio.Protocol):
    """Splits a byte stream into frames and hands each to ``on_frame``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        end = len(buf)
        while end - start >= 4:
            (size,) = _HEADER.unpack_from(buf, start)
            if end - start - 4 < size:
                break
            body = bytes(buf[start + 4:start + 4 + size])
            start += 4 + size
            self.on_frame(body)
            if self.transport is None or self.transport.is_closing():
                break
        if start:
            del buf[:start]

    def on_frame(self, body: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# ---------------------------------------------------------------- server


class DirectReply:
    """Answers one request from any thread (an executor thread that just ran the task), skipping the
    hop back to the io loop: one wake-up less per task on the worker's critical path."""

    __slots__ = ("_conn", "_rid")

    def __init__(self, conn: _ServerConnection, rid: int) -> None:
        self._conn = conn
        self._rid = rid

    def send(self, result: Any) -> None:
        self._conn.send_frame(_dumps((self._rid, _OK, result)))

    def answer(self, result: Any, error: BaseException | None = None) -> None:
        """Send ``result`` (or ``error``) as the handler's reply; an unpicklable one travels as an error."""
        self._conn.send_frame(_reply_body(self._rid, result, error))


def _reply_body(rid: int, result: Any, error: BaseException | None) -> bytes:
    if error is None:
        try:
            return _dumps((rid, _OK, result))
        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result: the caller gets why
            error = exc
    try:
        return _dumps((rid, _ERR, error))
    except Exception:  # noqa: BLE001 - an unpicklable exception travels as text
        return _dumps((rid, _ERR, RemoteHandlerError("".join(traceback.format_exception(error)))))


class _ServerConnection(_Frames):
    def __init__(self, server: FramedServer) -> None:
        super().__init__()
        self._server = server
        self._authenticated = False
        # Reply frames are written by the io loop or, for direct replies, by executor threads: all
        # writes go through send_frame, under this lock, in order.
        self._wlock = threading.Lock()
        self._outq: deque[bytes] = deque()  # frames (or their unsent rest) waiting for the io loop
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.connections.add(self)
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def send_frame(self, body: bytes) -> None:
        """Queue one reply frame for the caller; callable from any thread."""
        data = _HEADER.pack(len(body)) + body
        transport = self.transport
        with self._wlock:
            if transport is None or transport.is_closing():
                return  # the caller went away; gRPC would drop the reply too
            if not self._outq and self._fd >= 0 and transport.get_write_buffer_size() == 0:
                # Nothing queued before it: write it now, from this thread.
                data = _write_now(self._fd, data)
                if not data:
                    return
            self._outq.append(data)
        loop = self._loop
        if loop is None:
            return
        try:
            if threading.get_ident() == getattr(loop, "_thread_id", None):
                self._drain_outq()
            else:
                loop.call_soon_threadsafe(self._drain_outq)
        except RuntimeError:  # the loop is closed
            pass

    def _drain_outq(self) -> None:
        transport = self.transport
        with self._wlock:
            outq = self._outq
            while outq:
                data = outq.popleft()
                if transport is not None and not transport.is_closing():
                    transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)

    def on_frame(self, body: bytes) -> None:
        if not self._authenticated:
            expected = self._server.expected or b""
            if not hmac.compare_digest(body, expected):
                logger.warning("refused a framed connection with a missing or wrong cluster token")
                assert self.transport is not None
                self.transport.close()
                return
            self._authenticated = True
            return
        rid, method, request = pickle.loads(body)
        on_request = self._server.on_request
        if on_request is not None:
            on_request()
        if method == "PushTask":
            # Taken without an asyncio Task where the service can (``push_now``): it answers
            # through the DirectReply, from the thread that ran the task or from the io loop.
            push_now = getattr(self._server.service, "push_now", None)
            if push_now is not None and push_now(request, DirectReply(self, rid)):
                return
        asyncio.ensure_future(self._handle(rid, method, request))

    async def _handle(self, rid: int, method: str, request: Any) -> None:
        handler = getattr(self._server.service, "rpc_" + method, None)
        try:
            if handler is None:
                raise RuntimeError(f"unknown method {self._server.label}.{method}")
            if method == "PushTask":
                current_direct_reply.set(DirectReply(self, rid))  # this task's own context
            result = await handler(request)
            if result is ALREADY_SENT:
                return
            body = _reply_body(rid, result, None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - errors travel to the caller
            body = _reply_body(rid, None, exc)
        self.send_frame(body)


class FramedServer:
    """Serves one service object's ``rpc_*`` coroutines on an abstract Unix socket."""

    def __init__(self, service: object, token: str | None, label: str = "CoreWorker") -> None:
        self.service = service
        self.label = label  # the service's name in errors
        self.expected = token.encode() if token else b""
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_ServerConnection] = set()
        self.on_request: Any = None  # called on the io loop as each request arrives

    async def start(self, target: str, kind: str = "") -> bool:
        """Listen beside the gRPC server at ``target`` (on ``socket_name(target, kind)``); False where
        that is impossible."""
        try:
            self._server = await asyncio.get_running_loop().create_unix_server(
                lambda: _ServerConnection(self), path=socket_name(target, kind)
            )
        except OSError as exc:  # a peer in another namespace owns the name, or no Unix sockets
            logger.info("framed transport off for %s: %s", target, exc)
            return False
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)  # let the transports finish closing


# ---------------------------------------------------------------- client


class _ClientConnection(_Frames):
    def __init__(self, client: FramedClient) -> None:
        super().__init__()
        self._client = client
        self.fd = -1
        self.loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def on_frame(self, body: bytes) -> None:
        rid, status, payload = pickle.loads(body)
        fut = self._client.pending.pop(rid, None)
        if fut is not None and not fut.done():
            try:
                fut.set_result((status, payload))
            except Exception:  # noqa: BLE001 - a direct call's handler failed: the other frames still go
                logger.exception("handling the reply to a framed call failed")

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.on_lost(self)


class FramedClient:
    """Calls to one peer's :class:`FramedServer`; ``None`` from :meth:`connect` means use gRPC."""

    def __init__(self, target: str, token: str | None) -> None:
        self.target = target
        self._token = token.encode() if token else b""
        self._conn: _ClientConnection | None = None
        self._connecting: asyncio.Future | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self.unsupported = False  # the peer has no framed listener here
        self.closed = False
        # Requests are written by the io loop (call) or by caller threads (send_direct): every write
        # goes through _write_locked under this lock, so frames stay whole and in order.
        self._wlock = threading.Lock()
        self._outq: deque[bytes] = deque()  # the unsent rest of frames, waiting for the io loop

    async def _connect(self) -> _ClientConnection | None:
        if self._conn is not None:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _ClientConnection | None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(lambda: _ClientConnection(self), path=socket_name(self.target))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if not self._was_connected:
                self.unsupported = True  # never listened: an older peer, or another network namespace
                return None
            raise RpcUnavailable(f"connecting to {self.target} failed: {exc}") from None
        except OSError as exc:
            raise RpcUnavailable(f"connecting to {self.target} failed: {exc}") from None
        assert conn.transport is not None
        conn.transport.write(_HEADER.pack(len(self._token)) + self._token)
        self._conn = conn
        self._was_connected = True
        return conn

    _was_connected = False

    async def call(self, method: str, request: Any, timeout: float | None) -> Any:
        """The reply; raises ``LookupError`` when the peer has no framed listener."""
        if self.closed:
            raise RpcUnavailable(f"CoreWorker.{method} to {self.target} failed: the channel was closed")
        conn = self._conn or await self._connect()
        if conn is None:
            raise LookupError(self.target)
        if conn.transport is None or conn.transport.is_closing():
            # Lost while it was being opened (the peer died just then): its on_lost already ran, so
            # a call sent on it now would wait for a reply that never comes.
            raise RpcUnavailable(f"CoreWorker.{method} to {self.target} failed: the connection was lost")
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        body = _dumps((rid, method, request))
        with self._wlock:
            if self._conn is not conn:  # lost just now (on_lost already failed the pending calls)
                raise RpcUnavailable(f"CoreWorker.{method} to {self.target} failed: the connection was lost")
            self.pending[rid] = fut
            self._write_locked(conn, _HEADER.pack(len(body)) + body)
        try:
            if timeout is None:
                status, payload = await fut
            else:
                status, payload = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TimeoutError(f"CoreWorker.{method} to {self.target} timed out") from None
        finally:
            self.pending.pop(rid, None)
        if status != _OK:
            raise payload
        return payload

    def send_direct(self, method: str, request: Any, waiter: Any) -> bool:
        """Send a request from any thread, without waking the io loop; its reply is handed to
        ``waiter.set_result((status, payload))`` on the io loop as it arrives (``set_exception``
        with ``RpcUnavailable`` when the connection is lost first). ``waiter.done()`` must say False.
        False, with nothing sent, when no connection is open yet (use :meth:`call`)."""
        conn = self._conn
        if conn is None or self.closed or conn.fd < 0:
            return False
        rid = next(self._ids)  # itertools.count: atomic under the GIL
        body = _dumps((rid, method, request))
        with self._wlock:
            transport = conn.transport
            if self._conn is not conn or transport is None or transport.is_closing():
                return False
            self.pending[rid] = waiter
            self._write_locked(conn, _HEADER.pack(len(body)) + body)
        return True

    def _write_locked(self, conn: _ClientConnection, data: bytes) -> None:
        """Write one whole frame (``_wlock`` held): straight to the socket when nothing is queued
        before it, else behind the queued bytes, which the io loop writes."""
        transport = conn.transport
        assert transport is not None
        outq = self._outq
        loop = conn.loop
        on_loop = loop is not None and threading.get_ident() == getattr(loop, "_thread_id", None)
        if on_loop:
            while outq:
                transport.write(outq.popleft())
            transport.write(data)
            return
        if not outq and conn.fd >= 0 and transport.get_write_buffer_size() == 0:
            data = _write_now(conn.fd, data)
            if not data:
                return
        outq.append(data)
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._drain_outq, conn)
            except RuntimeError:  # the loop is closed
                pass

    def _drain_outq(self, conn: _ClientConnection) -> None:
        with self._wlock:
            transport = conn.transport
            outq = self._outq
            while outq:
                data = outq.popleft()
                if self._conn is conn and transport is not None and not transport.is_closing():
                    transport.write(data)

    def on_lost(self, conn: _ClientConnection) -> None:
        with self._wlock:
            if self._conn is conn:
                self._conn = None
                self._outq.clear()
            pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                try:
                    fut.set_exception(RpcUnavailable(f"CoreWorker call to {self.target} failed: the connection was lost"))
                except Exception:  # noqa: BLE001 - a direct call's handler failed: fail the others still
                    logger.exception("failing a framed call on a lost connection failed")

    def close(self) -> None:
        self.closed = True
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()


__all__ = ["ALREADY_SENT", "DirectReply", "FramedClient", "FramedServer", "current_direct_reply", "socket_name"]
