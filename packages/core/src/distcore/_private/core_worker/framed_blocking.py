"""Blocking calls over the framed transport, from the caller's own thread.

The public API's control-store calls (placement groups, named actors, the
key-value store) block the calling thread anyway. To a control store on the
same node they travel here: the frames of :mod:`framed_rpc` (token frame
first, then ``(id, method, message)`` requests and ``(id, status, payload)``
replies) over a plain blocking Unix socket, one connection per concurrent
caller (idle ones are kept for the next call). No io loop, no gRPC channel:
one ``sendall`` and a ``recv`` or two per call on this side, one frame read
and one write on the server's.

:meth:`BlockingFramedClient.call` raises

- ``LookupError`` when the peer has no framed listener this process could
  ever reach (another machine or network namespace, an older peer), or a
  connection was closed before its first reply and none ever answered (a
  wrong token: the server closes such connections). The caller then uses
  gRPC, which reports the real reason;
- :class:`RpcUnavailable` when the connection was lost (the peer died or
  restarts) after it once answered: the caller's retries reconnect;
  :class:`ListenerGone`, a kind of it, when nothing listens on the socket
  now although something once answered there (the caller may try gRPC: a
  restarted peer that could not listen framed still answers there);
- ``TimeoutError`` when ``timeout`` passed without a reply.

Example::

    client = BlockingFramedClient(socket_name("10.0.0.1:6379", "gcs"), token, "Gcs")
    view = client.call("GetClusterView", None, timeout=10)
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import struct
import threading
from typing import Any

from distcore._private.rpc import RpcUnavailable, _dumps

_HEADER = struct.Struct(">I")
_OK = 0
#: Idle connections kept per client (more concurrent callers open and close their own).
MAX_IDLE = 4


class ListenerGone(RpcUnavailable):
    """Nothing listens on the framed socket now (it once answered): nothing was sent."""


class BlockingFramedClient:
    """Calls to one :class:`~distcore._private.core_worker.framed_rpc.FramedServer` from any thread."""

    def __init__(self, name: str, token: str | None, label: str) -> None:
        self._name = name
        self._token_frame = _frame_bytes(token.encode() if token else b"")
        self._label = label
        self._lock = threading.Lock()
        self._idle: list[socket.socket] = []
        self._pid = os.getpid()
        self._ids = itertools.count()
        self._answered = False  # some call got a reply: the listener is real and takes our token
        self.closed = False

    def call(self, method: str, request: Any, timeout: float | None) -> Any:
        what = f"{self._label}.{method}"
        if timeout is not None and timeout <= 0:
            raise TimeoutError(f"{what} to {self._name[1:]} timed out")
        sock = self._take(what)
        body = _dumps((next(self._ids), method, request))
        try:
            sock.settimeout(timeout)
            sock.sendall(_HEADER.pack(len(body)) + body)
            reply = _read_frame(sock)
        except TimeoutError:
            sock.close()  # its reply may still come: never reused
            raise TimeoutError(f"{what} to {self._name[1:]} timed out") from None
        except OSError as exc:
            sock.close()
            reply = None
            why = str(exc)
        else:
            why = "the connection was closed"
        if reply is None:
            sock.close()
            if not self._answered:
                raise LookupError(self._name)
            raise RpcUnavailable(f"{what} over {self._name[1:]} failed: {why}")
        self._answered = True
        self._give_back(sock)
        _, status, payload = pickle.loads(reply)
        if status != _OK:
            raise payload
        return payload

    def _take(self, what: str) -> socket.socket:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's connections are not ours
                self._idle, self._pid = [], os.getpid()
            if self.closed:
                raise RpcUnavailable(f"{what} failed: the client was closed")
            if self._idle:
                return self._idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(10.0)
            sock.connect(self._name)
            sock.sendall(self._token_frame)
        except OSError as exc:
            sock.close()
            if not self._answered:
                raise LookupError(self._name) from None  # never reached a listener: use gRPC
            raise ListenerGone(f"{what}: connecting to {self._name[1:]} failed: {exc}") from None
        return sock

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.closed and len(self._idle) < MAX_IDLE and self._pid == os.getpid():
                self._idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _frame_bytes(body: bytes) -> bytes:
    return _HEADER.pack(len(body)) + body


def _read_frame(sock: socket.socket) -> bytes | None:
    """One frame's body; None when the peer closed the connection first."""
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buf)
