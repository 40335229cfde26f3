"""The gRPC ingress: user protobuf services (unary and server streaming) routed to ingress replicas.

``gRPCOptions(port=..., grpc_servicer_functions=[add_FooServicer_to_server, ...])``:
each function (or its import path) is called once with a stand-in servicer and a
recording server, which learns the service's methods and their (de)serializers.
A call to ``/pkg.Foo/Method`` then runs ``Method(request)`` on the ingress
replica of the application named by the ``application`` metadata key (or the
only application), and returns its result (server streaming: yields its items).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc

from distcore.serve._internal.router import get_router
from distcore.serve._internal.table import table_client
from distcore.serve.exceptions import BackPressureError, DeploymentUnavailableError


class _NoSuchApp(LookupError):
    """The call names no running application."""


class _StandIn:
    """A servicer whose methods are never called: only its attribute names matter."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: None


class _Recorder:
    """Passed as ``server`` to ``add_*Servicer_to_server``: records the method handlers."""

    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        for handler in handlers:
            service = getattr(handler, "_name", "")
            for method, h in getattr(handler, "_method_handlers", {}).items():
                full = method if method.startswith("/") else f"/{service}/{method}"
                self.methods[full] = h

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        for method, h in handlers.items():
            self.methods[f"/{service}/{method}"] = h


def _resolve(fn: Any) -> Any:
    if isinstance(fn, str):
        from distcore.serve._internal.schema import import_attr

        return import_attr(fn)
    return fn


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: GrpcProxy) -> None:
        self.proxy = proxy

    def service(self, details: Any) -> Any:
        recorded = self.proxy.methods.get(details.method)
        if recorded is None:
            return None
        name = details.method.rsplit("/", 1)[1]
        if recorded.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self.proxy.streaming(name), request_deserializer=recorded.request_deserializer,
                response_serializer=recorded.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            self.proxy.unary(name), request_deserializer=recorded.request_deserializer,
            response_serializer=recorded.response_serializer)


class GrpcProxy:
    def __init__(self, options: Any) -> None:
        self.options = options
        self.methods: dict[str, Any] = {}
        self.server: Any = None
        self.client = table_client()

    def _target(self, context: Any) -> tuple[str, str, dict]:
        md = dict(context.invocation_metadata() or ())
        apps = self.client.table.apps
        app = md.get("application")
        if app is None:
            if len(apps) != 1:
                raise _NoSuchApp(f"set the 'application' metadata key to one of {sorted(apps)}")
            app = next(iter(apps))
        if app not in apps:
            raise _NoSuchApp(f"application {app!r} does not exist (running: {sorted(apps)})")
        meta = {"request_id": md.get("request_id") or uuid.uuid4().hex[:16]}
        if md.get("multiplexed_model_id"):
            meta["model_id"] = md["multiplexed_model_id"]
        return app, apps[app][1], meta

    def _deadline(self, app: str, ingress: str, context: Any) -> float | None:
        route = self.client.table.deployments.get((app, ingress))
        timeout = route.request_timeout_s if route is not None else None
        remaining = context.time_remaining()
        if remaining is not None and (timeout is None or remaining < timeout):
            timeout = remaining
        return time.monotonic() + timeout if timeout else None

    async def _fail(self, context: Any, exc: BaseException) -> None:
        if isinstance(exc, BackPressureError):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        if isinstance(exc, (DeploymentUnavailableError, TimeoutError)):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(exc, TimeoutError)
                                else grpc.StatusCode.UNAVAILABLE, str(exc))
        if isinstance(exc, _NoSuchApp):
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def unary(self, method: str) -> Any:
        async def call(request: Any, context: Any) -> Any:
            try:
                app, ingress, meta = self._target(context)
                return await get_router(app, ingress).call(method, (request,), {}, meta,
                                                           self._deadline(app, ingress, context))
            except Exception as exc:
                await self._fail(context, exc)

        return call

    def streaming(self, method: str) -> Any:
        async def call(request: Any, context: Any) -> Any:
            from distcore.serve._internal import wire

            try:
                app, ingress, meta = self._target(context)
                stream = await get_router(app, ingress).stream(method, (request,), {}, dict(meta, stream=True),
                                                               self._deadline(app, ingress, context))
            except Exception as exc:
                await self._fail(context, exc)
                return
            try:
                while True:
                    kind, payload = await stream.next()
                    if kind == wire.ITEM:
                        yield payload
                    elif kind == wire.ERR:
                        await self._fail(context, payload)
                    else:
                        return
            finally:
                stream.close()

        return call

    async def start(self) -> int:
        recorder = _Recorder()
        for fn in self.options.grpc_servicer_functions:
            _resolve(fn)(_StandIn(), recorder)
        self.methods = recorder.methods
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((_Handler(self),))
        port = self.server.add_insecure_port(f"127.0.0.1:{self.options.port}")
        if port == 0:
            raise OSError(f"Serve's gRPC proxy cannot listen on port {self.options.port}")
        await self.server.start()
        return port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1)
