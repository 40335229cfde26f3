"""gRPC ingress: a user service (generic handlers, JSON messages: no protoc needed), unary and server streaming."""

from __future__ import annotations

import json

import grpc
import pytest

from distcore import serve

SERVICE = "demo.Calculator"


def _ser(obj) -> bytes:
    return json.dumps(obj).encode()


def _de(data: bytes):
    return json.loads(data)


def add_CalculatorServicer_to_server(servicer, server):  # noqa: N802 - the protoc naming convention
    handlers = {
        "Add": grpc.unary_unary_rpc_method_handler(servicer.Add, request_deserializer=_de,
                                                   response_serializer=_ser),
        "Count": grpc.unary_stream_rpc_method_handler(servicer.Count, request_deserializer=_de,
                                                      response_serializer=_ser),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@serve.deployment
class Calculator:
    async def Add(self, request: dict) -> dict:  # noqa: N802
        return {"sum": request["a"] + request["b"], "model": serve.get_multiplexed_model_id()}

    async def Count(self, request: dict):  # noqa: N802
        for i in range(request["n"]):
            yield {"i": i}


@pytest.fixture
def grpc_proxy(serve_instance):
    """A second proxy (gRPC + HTTP) beside the shared one: it follows the same routing table."""
    import distcore
    from distcore.serve._internal.config import HTTPOptions, gRPCOptions
    from distcore.serve._internal.proxy import ProxyActor

    options = gRPCOptions(port=0, grpc_servicer_functions=[add_CalculatorServicer_to_server])
    proxy = distcore.remote(ProxyActor).options(num_cpus=0, max_concurrency=100).remote(
        HTTPOptions(port=0, access_log=False), options)
    ports = distcore.get(proxy.ready.remote(), timeout=60)
    yield ports["grpc_port"]
    distcore.get(proxy.stop.remote(), timeout=30)
    distcore.kill(proxy)


def test_grpc_unary_and_streaming(grpc_proxy):
    serve.run(Calculator.bind(), name="grpc_app", route_prefix="/grpc-app")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_proxy}") as channel:
        add = channel.unary_unary(f"/{SERVICE}/Add", request_serializer=_ser, response_deserializer=_de)
        md = (("application", "grpc_app"), ("multiplexed_model_id", "m1"))
        assert add({"a": 2, "b": 40}, metadata=md, timeout=30) == {"sum": 42, "model": "m1"}
        count = channel.unary_stream(f"/{SERVICE}/Count", request_serializer=_ser, response_deserializer=_de)
        assert list(count({"n": 4}, metadata=md, timeout=30)) == [{"i": i} for i in range(4)]
        with pytest.raises(grpc.RpcError) as info:
            add({"a": 1, "b": 1}, metadata=(("application", "nope"),), timeout=30)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            add({"a": 1}, metadata=md, timeout=30)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "KeyError" in info.value.details()
    serve.delete("grpc_app")
