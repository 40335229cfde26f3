"""Drivers' and workers' calls to the control store, through a head restart.

Writes travel as ``Gcs.Once`` with a request id kept across the retries, so
one applied before its reply was lost is not applied twice
(``gcs/idempotency.py``). A call that finds the head unreachable
(``RpcUnavailable``: it crashed or is restarting) is retried with backoff; the channel reconnects by itself once a
head listens on the address again, which reloads its tables from the session
directory. After :data:`HEAD_RECONNECT_TIMEOUT_S` (or the call's own
``timeout``, if shorter) the call fails with :class:`HeadUnreachableError`,
a ``ConnectionError`` that says the head is unreachable.

:meth:`GcsClient.call_sync` makes the same call from the caller's own thread
over a blocking gRPC channel: no hop to the io loop and back, about a third
of the latency of a ``run(call(...))`` on a loaded 2-core machine (the
public API's control-store calls: placement groups, named actors, the
key-value store). To a head on the same node it travels over the framed
transport's blocking client (``framed_blocking.py``: a Unix socket the head
listens on beside its gRPC port) instead: the head's gRPC server was most of
its CPU per call. A head this process cannot reach that way (another
machine) is called over gRPC, as is every call with
``DISTCORE_GCS_FRAMED=0``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from distcore._private import rpc
from distcore._private.core_worker.framed_blocking import BlockingFramedClient, ListenerGone
from distcore._private.core_worker.framed_rpc import socket_name
from distcore._private.gcs.idempotency import WRITE_METHODS, OnceCall
from distcore._private.rpc import RpcClient, RpcUnavailable

#: Seconds a control-store call keeps retrying while the head is unreachable
#: (env ``DISTCORE_HEAD_RECONNECT_TIMEOUT_S``).
HEAD_RECONNECT_TIMEOUT_S = float(os.environ.get("DISTCORE_HEAD_RECONNECT_TIMEOUT_S", "30"))

# Calls not worth waiting for a head: telemetry (resent later) and a driver's
# goodbye (the head ends a vanished driver's job by itself).
_NO_RETRY = frozenset({"AddTaskEvents", "JobFinished"})

#: Blocking control-store calls to a same-node head travel framed (env ``DISTCORE_GCS_FRAMED=0``: gRPC only).
GCS_FRAMED = os.environ.get("DISTCORE_GCS_FRAMED", "1") != "0"


class HeadUnreachableError(RpcUnavailable, ConnectionError):
    """The control store (head) stayed unreachable for the whole retry window."""


class _RetryWindow:
    """When one call tries again: back-off from 0.1 s doubling to 1 s, for ``window`` seconds from
    its first failure."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._deadline: float | None = None
        self._delay = 0.1

    def next_wait(self) -> float | None:
        """Seconds to wait before the next try; None once the window is over."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._window
        if now >= self._deadline:
            return None
        wait = min(self._delay, self._deadline - now)
        self._delay = min(self._delay * 2, 1.0)
        return wait


def _listening_abstract_sockets() -> set[str]:
    """Abstract Unix socket names listened on in this network namespace (``/proc/net/unix``)."""
    try:
        with open("/proc/net/unix") as f:
            return {"\0" + line.split()[-1][1:] for line in f if line.rstrip().split()[-1].startswith("@")}
    except (OSError, IndexError):
        return set()


def framed_target(address: str) -> str:
    """The head's own ``ip:port`` behind ``address``, for its framed socket's name: ``address``
    itself when the head listens under it here, else the first of its host's IPv4 addresses
    (``localhost``, a host name) a head listens under here (``address`` when none does)."""
    host, _, port = address.rpartition(":")
    try:
        ipaddress.ip_address(host)
        return address  # an IP literal: the head's own form
    except ValueError:
        pass
    listening = _listening_abstract_sockets()
    if socket_name(address, "gcs") in listening:
        return address
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return address
    for info in infos:
        candidate = f"{info[4][0]}:{port}"
        if socket_name(candidate, "gcs") in listening:
            return candidate
    return address


class GcsClient:
    """``call``/``stream`` like :class:`RpcClient`, retrying while the head is away."""

    def __init__(self, address: str, client: Callable[[], RpcClient]) -> None:
        self.address = address
        self._client = client  # the pool's current client for the address
        self._sync_lock = threading.Lock()
        self._sync_channel: grpc.Channel | None = None
        self._sync_stubs: dict[str, Any] = {}
        self._framed: BlockingFramedClient | None = None
        self._framed_off = not GCS_FRAMED

    async def call(self, service: str, method: str, request: Any = None, timeout: float | None = None) -> Any:
        service, method, request, window = _prepare(service, method, request, timeout)
        retry = _RetryWindow(window)
        while True:
            try:
                return await self._client().call(service, method, request, timeout=timeout)
            except RpcUnavailable as exc:
                wait = retry.next_wait()
                if wait is None:
                    raise self._unreachable(service, method, window, exc) from None
                await asyncio.sleep(wait)

    def call_sync(self, service: str, method: str, request: Any = None, timeout: float | None = None) -> Any:
        """:meth:`call`, blocking this thread (never the io loop's): same retries, same errors."""
        service, method, request, window = _prepare(service, method, request, timeout)
        retry = _RetryWindow(window)
        while True:
            try:
                return self._call_blocking(service, method, request, timeout)
            except RpcUnavailable as exc:
                wait = retry.next_wait()
                if wait is None:
                    raise self._unreachable(service, method, window, exc) from None
                time.sleep(wait)

    def _call_blocking(self, service: str, method: str, request: Any, timeout: float | None) -> Any:
        if not self._framed_off and service == "Gcs":
            framed = self._framed
            if framed is None:
                framed = self._open_framed()
            try:
                return framed.call(method, request, timeout)
            except LookupError:  # no framed listener reachable from here: gRPC from now on
                self._framed_off = True
            except ListenerGone:  # none now (a head restarting, or one that could not listen framed): gRPC this time
                pass
        path = f"/{service}/{method}"
        stub = self._sync_stubs.get(path)
        if stub is None:
            with self._sync_lock:
                if self._sync_channel is None:
                    self._sync_channel = grpc.insecure_channel(self.address, options=rpc._OPTIONS)
                stub = self._sync_stubs[path] = self._sync_channel.unary_unary(
                    path, request_serializer=rpc._dumps, response_deserializer=None
                )
        try:
            raw = stub(request, timeout=timeout, metadata=self._client()._metadata)
        except grpc.RpcError as exc:
            raise rpc._translate(exc, self.address, f"{service}.{method}") from None  # type: ignore[arg-type]
        except ValueError:  # the channel was closed under this call (shutdown)
            raise RpcUnavailable(f"{service}.{method} to {self.address} failed: the channel was closed") from None
        return rpc._decode(raw)

    def _open_framed(self) -> BlockingFramedClient:
        with self._sync_lock:
            if self._framed is None:
                token = self._client()._token
                self._framed = BlockingFramedClient(socket_name(framed_target(self.address), "gcs"), token, "Gcs")
            return self._framed

    def _unreachable(self, service: str, method: str, window: float, exc: RpcUnavailable) -> Exception:
        if window <= 0:
            return exc
        return HeadUnreachableError(
            f"the distcore head (control store) at {self.address} is unreachable: {service}.{method} "
            f"kept failing for {window:g} s ({exc}). The head crashed or is restarting; restart it "
            "on the same address and session to recover, or call distcore.shutdown() and init() again"
        )

    def stream(self, service: str, method: str, request: Any = None) -> AsyncIterator[Any]:
        return self._client().stream(service, method, request)

    def close_sync(self) -> None:
        """Close the blocking channel of :meth:`call_sync` (a later call opens a new one)."""
        with self._sync_lock:
            channel, self._sync_channel = self._sync_channel, None
            self._sync_stubs = {}
            framed, self._framed = self._framed, None
        if framed is not None:
            framed.close()
        if channel is not None:
            channel.close()

    async def close(self) -> None:
        self.close_sync()
        await self._client().close()


def _prepare(service: str, method: str, request: Any, timeout: float | None) -> tuple[str, str, Any, float]:
    """The request as sent (writes wrapped in :class:`OnceCall`) and the retry window in seconds."""
    window = HEAD_RECONNECT_TIMEOUT_S if timeout is None else min(HEAD_RECONNECT_TIMEOUT_S, timeout)
    if method in _NO_RETRY:
        window = 0.0
    if service == "Gcs" and method in WRITE_METHODS:
        # One id for every try: a write the head applied before its reply was lost applies once.
        service, method, request = "Gcs", "Once", OnceCall(uuid.uuid4().hex, method, request)
    return service, method, request, window
