"""The wire: gRPC (asyncio) with pickled typed messages and token auth.

A *service* is any object whose ``async def rpc_<Method>(self, request)``
coroutines take and return dataclasses from :mod:`protocol`. An exception
raised by a handler travels back and is raised again in the caller (typed
errors cross process boundaries); transport failures raise
:class:`RpcUnavailable`.

Every call carries ``authorization: Bearer <token>``; the server refuses a
missing or wrong token with ``UNAUTHENTICATED`` before any handler runs,
except for the ``Health`` service.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import pickle
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from distcore.exceptions import AuthenticationError

logger = logging.getLogger(__name__)

_COMMON = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
# Clients ping idle connections so a vanished peer is noticed.
_OPTIONS = _COMMON + [
    ("grpc.enable_http_proxy", 0),
    ("grpc.keepalive_time_ms", 20000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A peer that comes back on its address (a restarted head) is found again within a second.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Subchannels are the channel's own: a new channel to an address (RpcClient._after_unreachable)
    # does not inherit a shared subchannel's reconnect back-off from the process that left it.
    ("grpc.use_local_subchannel_pool", 1),
]
# Servers accept those pings instead of answering GOAWAY "too_many_pings".
# gRPC core cancels calls that wait too long to be accepted by the (asyncio)
# application once more than 1,000 (soft) / 3,000 (hard) are queued: the client
# sees a bare CANCELLED although the server is alive. Thousands of in-flight
# actor calls from a few callers are normal here (issue 3's n:n hang), so the
# queue is bounded by the callers instead.
_SERVER_OPTIONS = _COMMON + [
    ("grpc.server.max_pending_requests", 1 << 30),
    ("grpc.server.max_pending_requests_hard_limit", 1 << 30),
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
# A channel set aside after a failed connection may finish the calls still on it for this long;
# a peer that stays away keeps at most this many of them.
_RETIRED_GRACE_S = 30.0
_RETIRED_MAX = 2

_OK = 0
_ERR = 1
_PUBLIC_SERVICES = ("Health",)


class RpcError(Exception):
    """A call failed in transport or in the server's framework."""


class RpcUnavailable(RpcError):
    """The peer is unreachable (down, or its address is wrong)."""


class NotThisWorker(RpcUnavailable):
    """The process at the address is not the one the call was for: that one is gone, and a new worker
    took its port (the kernel reuses them)."""


class RemoteHandlerError(RpcError):
    """A handler raised an exception that could not be pickled back."""


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=5)


def _encode_error(exc: BaseException) -> bytes:
    try:
        return pickle.dumps((_ERR, exc), protocol=5)
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return pickle.dumps((_ERR, RemoteHandlerError(text)), protocol=5)


class _AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong cluster token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        if self._expected is None:
            return await continuation(details)
        method = details.method or ""
        if method.startswith(tuple(f"/{s}/" for s in _PUBLIC_SERVICES)):
            return await continuation(details)
        got = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else value
                break
        if not hmac.compare_digest(got, self._expected):
            logger.warning("refused unauthenticated call to %s", method)
            return self._deny
        return await continuation(details)


class RpcServer:
    """A gRPC server hosting one or more services on one port."""

    def __init__(self, token: str | None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._token = token
        self._host = host
        self._port = port
        self._server = grpc.aio.server(interceptors=[_AuthInterceptor(token)], options=_SERVER_OPTIONS)
        self.port: int = 0
        self.add_service("Health", _Health())

    def add_service(self, name: str, service: object) -> None:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for attr in dir(service):
            fn = getattr(service, attr)
            if attr.startswith("rpc_"):
                handlers[attr[4:]] = grpc.unary_unary_rpc_method_handler(
                    _wrap_unary(fn), request_deserializer=pickle.loads, response_serializer=None
                )
            elif attr.startswith("stream_"):
                handlers[attr[7:]] = grpc.unary_stream_rpc_method_handler(
                    _wrap_stream(fn), request_deserializer=pickle.loads, response_serializer=None
                )
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))

    async def start(self) -> int:
        try:
            bound = self._server.add_insecure_port(f"{self._host}:{self._port}")
        except RuntimeError:  # newer grpc raises where older ones returned 0
            bound = 0
        if bound == 0:
            raise OSError(
                f"cannot listen on {self._host}:{self._port}: port {self._port} is already in use (or the address "
                "is not one of this machine's); stop what uses it or pick another port"
            )
        self.port = bound
        await self._server.start()
        return bound

    async def stop(self, grace: float | None = 0.5) -> None:
        await self._server.stop(grace)


class _Health:
    async def rpc_Check(self, request: Any) -> str:
        return "ok"


def _wrap_unary(fn: Callable) -> Callable:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        try:
            result = await fn(request)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - errors travel to the caller
            return _encode_error(exc)
        return _dumps((_OK, result))

    return handler


def _wrap_stream(fn: Callable) -> Callable:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            async for item in fn(request):
                yield _dumps((_OK, item))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001
            yield _encode_error(exc)

    return handler


class RpcClient:
    """A channel to one peer; ``await client.call("Service", "Method", msg)``."""

    def __init__(self, address: str, token: str | None, framed: bool = False) -> None:
        self.address = address
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # CoreWorker calls to a process of this node travel on the lean framed
        # transport (core_worker/framed_rpc.py) where the peer listens for it.
        self._token = token
        self._framed_wanted = framed
        self._framed: Any = self._new_framed() if framed else None
        # Created on first use, inside the event loop that makes the calls.
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[str, Any] = {}
        # Channels set aside after a failed connection, closed with the client (calls may still run on them).
        self._retired: list[grpc.aio.Channel] = []

    def _new_framed(self) -> Any:
        from distcore._private.core_worker.framed_rpc import FramedClient

        return FramedClient(self.address, self._token)

    def _after_unreachable(self) -> None:
        """The peer could not be reached. The next call starts afresh: a new process may take over this
        address (a worker's port is reused by the kernel), and neither gRPC's reconnect back-off nor a
        framed transport given up on because the dead peer refused it may fail calls to the new one."""
        channel = self._channel
        if channel is not None:
            self._retired.append(channel)
            self._channel, self._stubs = None, {}
            # Closed soon after (or with the client), so it stops reconnecting to the address.
            asyncio.get_running_loop().call_later(_RETIRED_GRACE_S, self._close_retired, channel)
            while len(self._retired) > _RETIRED_MAX:
                self._close_retired(self._retired[0])
        if self._framed_wanted and self._framed is None:
            self._framed = self._new_framed()

    def _close_retired(self, channel: grpc.aio.Channel) -> None:
        if channel in self._retired:
            self._retired.remove(channel)
            asyncio.ensure_future(channel.close())

    def _stub(self, path: str, stream: bool) -> Any:
        stub = self._stubs.get(path)
        if stub is None:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self.address, options=_OPTIONS)
            factory = self._channel.unary_stream if stream else self._channel.unary_unary
            stub = factory(path, request_serializer=_dumps, response_deserializer=None)
            self._stubs[path] = stub
        return stub

    async def call(self, service: str, method: str, request: Any = None, timeout: float | None = None) -> Any:
        framed = self._framed
        if framed is not None and service == "CoreWorker":
            try:
                return await framed.call(method, request, timeout)
            except LookupError:  # no framed listener there: gRPC from now on
                self._framed = None
        stub = self._stub(f"/{service}/{method}", False)
        try:
            raw = await stub(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._after_unreachable()
            raise _translate(exc, self.address, f"{service}.{method}") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # grpc cancels the calls of a channel closed under them (ClientPool.drop).
            raise RpcUnavailable(f"{service}.{method} to {self.address} failed: the channel was closed") from None
        return _decode(raw)

    async def stream(self, service: str, method: str, request: Any = None) -> AsyncIterator[Any]:
        stub = self._stub(f"/{service}/{method}", True)
        try:
            async for raw in stub(request, metadata=self._metadata):
                yield _decode(raw)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._after_unreachable()
            raise _translate(exc, self.address, f"{service}.{method}") from None

    async def close(self) -> None:
        if self._framed is not None:
            self._framed.close()
        channels, self._retired = [*self._retired, self._channel], []
        for channel in channels:
            if channel is not None:
                await channel.close()


def _decode(raw: bytes) -> Any:
    status, payload = pickle.loads(raw)
    if status == _ERR:
        raise payload
    return payload


def _translate(exc: grpc.aio.AioRpcError, address: str, what: str) -> Exception:
    code = exc.code()
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(
            f"{address} refused {what}: missing or wrong cluster token "
            "(set DISTCORE_AUTH_TOKEN or use the cluster's token file)"
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return RpcUnavailable(f"{what} to {address} failed: {exc.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(f"{what} to {address} timed out")
    return RpcError(f"{what} to {address} failed: {code.name}: {exc.details()}")


class InProcessClient:
    """Services of this very process, called like an :class:`RpcClient`: the handler runs on this
    event loop, with no wire and no gRPC. Messages are copied as the wire would copy them (a pickle
    round trip), so neither side sees the other's later changes to them."""

    def __init__(self, services: dict[str, object]) -> None:
        self._services = services

    async def call(self, service: str, method: str, request: Any = None, timeout: float | None = None) -> Any:
        handler = getattr(self._services.get(service), "rpc_" + method, None)
        if handler is None:
            raise RpcError(f"{service}.{method} is not served in this process")
        work = handler(pickle.loads(_dumps(request)))
        reply = await (work if timeout is None else asyncio.wait_for(work, timeout))
        return pickle.loads(_dumps(reply))

    async def close(self) -> None:
        pass


class ClientPool:
    """One cached :class:`RpcClient` per address (an :class:`InProcessClient` for services of this
    process, see :meth:`set_local`)."""

    def __init__(self, token: str | None, framed: bool = False) -> None:
        self._token = token
        self._framed = framed
        self._clients: dict[str, RpcClient] = {}
        self._local: dict[str, InProcessClient] = {}

    def set_local(self, address: str, services: dict[str, object]) -> None:
        """Calls to ``services`` at ``address`` run in this process, which serves them."""
        self._local[address] = InProcessClient(services)

    def is_local(self, address: str) -> bool:
        return address in self._local

    def get(self, address: str) -> RpcClient:
        local = self._local.get(address)
        if local is not None:
            return local  # type: ignore[return-value]
        client = self._clients.get(address)
        if client is None:
            client = RpcClient(address, self._token, self._framed)
            self._clients[address] = client
        return client

    def framed(self, address: str) -> Any:
        """The framed transport's client for ``address`` when calls to it already travel framed
        (callable from any thread; creates nothing), else None."""
        client = self._clients.get(address)
        return None if client is None else client._framed

    def drop(self, address: str) -> None:
        client = self._clients.pop(address, None)
        if client is not None:
            asyncio.ensure_future(client.close())

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
