"""The lean request transport between routers (proxy, handles) and replicas.

A replica listens on a TCP socket; routers keep one persistent, pipelined
connection per replica. Frames are a 4-byte big-endian length and a pickle.
The client's first frame is the cluster-unique serve token; a wrong token
closes the connection before anything runs.

Client -> server: ``(CALL, rid, method, args, kwargs, meta)`` or ``(CANCEL, rid)``.
Server -> client: ``(rid, kind, payload)`` with ``kind`` one of OK, ERR, ITEM, END, REJECT.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle

CALL, CANCEL, WSIN = 0, 1, 2
OK, ERR, ITEM, END, REJECT = 0, 1, 2, 3, 4
_HDR = struct.Struct("!I")
MAX_FRAME = 1 << 30


_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def next_request_id() -> str:
    """A unique request id, cheaper than uuid4 (no syscall): a per-process random prefix and a counter."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def dumps(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:
        return cloudpickle.dumps(obj, protocol=5)


def frame(obj: Any) -> bytes:
    data = dumps(obj)
    return _HDR.pack(len(data)) + data


class FrameProtocol(asyncio.Protocol):
    """Splits the byte stream into frames and hands each unpickled message to ``on_message``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] | None = None
        self.closed = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _HDR.unpack_from(buf, pos)
            if n - pos - 4 < size:
                break
            msg = pickle.loads(memoryview(buf)[pos + 4:pos + 4 + size])
            pos += 4 + size
            self.on_message(msg)
        if pos:
            del buf[:pos]

    def on_message(self, msg: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def send(self, obj: Any) -> None:
        """Queue a frame; frames queued in one loop iteration go out in one write (fewer syscalls under load)."""
        data = frame(obj)
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


class ReplicaConnectionError(ConnectionError):
    """The connection to a replica broke before its answer came."""


class ClientConnection(FrameProtocol):
    """One pipelined connection to a replica; ``call`` returns the answer, ``stream`` yields items."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0
        self._waiters: dict[int, Any] = {}
        self._rest: dict[int, asyncio.Queue] = {}
        self.lost = False

    def on_message(self, msg: Any) -> None:
        rid, kind, payload = msg
        waiter = self._waiters.get(rid)
        if waiter is None:
            return
        if not isinstance(waiter, (asyncio.Future, asyncio.Queue)):
            # a callback (the proxy's fast path) takes every frame
            if kind != ITEM:
                del self._waiters[rid]
            waiter(kind, payload)
            return
        if isinstance(waiter, asyncio.Queue):
            waiter.put_nowait((kind, payload))
            if kind in (OK, END, ERR, REJECT):
                self._waiters.pop(rid, None)
        else:
            # a future takes the first frame; a stream's later frames go to a queue made on demand
            if kind == ITEM:
                self._waiters[rid] = self._rest[rid] = asyncio.Queue()
            else:
                self._waiters.pop(rid, None)
            if not waiter.done():
                waiter.set_result((kind, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        err = ReplicaConnectionError("connection to the replica was lost")
        waiters = list(self._waiters.values())
        self._waiters.clear()
        for waiter in waiters:
            if isinstance(waiter, asyncio.Queue):
                waiter.put_nowait((ERR, err))
            elif isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result((ERR, err))
            else:
                waiter(ERR, err)
        super().connection_lost(exc)

    def _rid(self) -> int:
        self._next += 1
        return self._next

    def start_call(self, method: str, args: tuple, kwargs: dict, meta: dict | None) -> tuple[int, asyncio.Future]:
        if self.lost:
            raise ReplicaConnectionError("connection to the replica is closed")
        rid = self._rid()
        fut = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        self.send((CALL, rid, method, args, kwargs, meta))
        return rid, fut

    def start_stream(self, method: str, args: tuple, kwargs: dict, meta: dict) -> tuple[int, asyncio.Future]:
        """Start a call whose answer may be streamed: the future holds the first frame, ``rest(rid)`` the others."""
        if self.lost:
            raise ReplicaConnectionError("connection to the replica is closed")
        rid = self._rid()
        fut = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        meta = dict(meta)
        meta["stream"] = True
        self.send((CALL, rid, method, args, kwargs, meta))
        return rid, fut

    def start_callback(self, method: str, args: tuple, kwargs: dict, meta: dict, callback: Any) -> int:
        """Start a call whose frames all go to ``callback(kind, payload)`` (``meta`` is sent as given)."""
        if self.lost:
            raise ReplicaConnectionError("connection to the replica is closed")
        rid = self._rid()
        self._waiters[rid] = callback
        self.send((CALL, rid, method, args, kwargs, meta))
        return rid

    def rest(self, rid: int) -> asyncio.Queue | None:
        return self._rest.pop(rid, None)

    def ws_send(self, rid: int, message: dict) -> None:
        self.send((WSIN, rid, message))

    def cancel(self, rid: int) -> None:
        self._waiters.pop(rid, None)
        self._rest.pop(rid, None)
        self.send((CANCEL, rid))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def unix_server(factory: Callable[[], asyncio.Protocol], label: str) -> tuple[Any, str]:
    """A listener on an abstract-namespace Unix socket (Linux: no file to clean up); (None, "") elsewhere."""
    if not sys.platform.startswith("linux"):
        return None, ""
    name = f"\0distcore-serve-{os.getpid()}-{label}-{os.urandom(4).hex()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
        sock.listen(1024)
        sock.setblocking(False)
        server = await asyncio.get_running_loop().create_unix_server(factory, sock=sock)
    except OSError:
        sock.close()
        return None, ""
    return server, name


async def connect_unix(name: str, token: str, timeout: float = 5.0) -> ClientConnection:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, name), timeout)
        _, proto = await loop.create_unix_connection(ClientConnection, sock=sock)
    except BaseException:
        sock.close()
        raise
    proto.send(token)
    return proto


async def connect(host: str, port: int, token: str, timeout: float = 5.0) -> ClientConnection:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(ClientConnection, host, port), timeout)
    proto.send(token)
    return proto


class ServerConnection(FrameProtocol):
    """The replica's side of one connection: checks the token, then hands calls to ``handler``."""

    def __init__(self, token: str, handler: Callable[[ServerConnection, Any], None]) -> None:
        super().__init__()
        self._token = token
        self._authed = False
        self._handler = handler
        self.tasks: dict[int, asyncio.Task] = {}

    def on_message(self, msg: Any) -> None:
        if not self._authed:
            if msg != self._token:
                if self.transport is not None:
                    self.transport.close()
                return
            self._authed = True
            return
        self._handler(self, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        super().connection_lost(exc)
