"""HTTP features through the proxy: streaming, SSE, WebSockets, FastAPI, timeouts, backpressure, metrics."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from distcore import serve
from distcore._private.testing import wait_for
from distcore.serve.exceptions import BackPressureError


@serve.deployment
class Streamer:
    async def __call__(self, request):
        n = int(request.query_params.get("n", "3"))

        async def gen():
            for i in range(n):
                yield f"data: {i}\n\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def numbers(self, n: int):
        for i in range(n):
            yield i

    def sync_numbers(self, n: int):
        yield from range(n)


def test_streaming_response_and_sse(serve_instance):
    handle = serve.run(Streamer.bind(), name="stream", route_prefix="/stream")
    with httpx.stream("GET", f"{serve_instance}/stream", params={"n": 5}, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data:")]
    assert events == [f"data: {i}" for i in range(5)]
    gen = handle.options(stream=True).numbers.remote(4)
    assert list(gen) == [0, 1, 2, 3]
    assert list(handle.options(stream=True, method_name="sync_numbers").remote(3)) == [0, 1, 2]

    async def consume():
        return [x async for x in handle.options(stream=True).numbers.remote(3)]

    assert asyncio.run(consume()) == [0, 1, 2]
    with pytest.raises(TypeError, match="stream=True"):
        handle.numbers.remote(2).result(timeout_s=30)


async def ws_echo(websocket):
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close()
            return
        await websocket.send_text(f"echo {text}")


async def plain(request):
    return PlainTextResponse(f"path={request.url.path} root={request.scope.get('root_path')}")


starlette_app = Starlette(routes=[Route("/plain", plain), WebSocketRoute("/ws", ws_echo)])


@serve.deployment
@serve.ingress(starlette_app)
class StarletteIngress:
    pass


def test_websocket_on_starlette_ingress(serve_instance):
    serve.run(StarletteIngress.bind(), name="ws", route_prefix="/app")
    r = httpx.get(f"{serve_instance}/app/plain", timeout=30)
    assert r.status_code == 200 and r.text.startswith("path=/app/plain")
    from websockets.sync.client import connect

    url = serve_instance.replace("http://", "ws://") + "/app/ws"
    with connect(url, open_timeout=10) as ws:
        for word in ("a", "bc", "def"):
            ws.send(word)
            assert ws.recv(timeout=10) == f"echo {word}"
        ws.send("bye")


def test_fastapi_ingress(serve_instance):
    fastapi = pytest.importorskip("fastapi")
    api = fastapi.FastAPI()

    @serve.deployment
    @serve.ingress(api)
    class Api:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        @api.get("/mul/{x}")
        def mul(self, x: int) -> dict:
            return {"value": x * self.factor}

        @api.post("/echo")
        async def echo(self, body: dict) -> dict:
            return body

    serve.run(Api.bind(3), name="fastapi", route_prefix="/api")
    assert httpx.get(f"{serve_instance}/api/mul/7", timeout=30).json() == {"value": 21}
    assert httpx.post(f"{serve_instance}/api/echo", json={"a": [1, 2]}, timeout=30).json() == {"a": [1, 2]}
    assert httpx.get(f"{serve_instance}/api/missing", timeout=30).status_code == 404


@serve.deployment(max_ongoing_requests=1, max_queued_requests=2)
class Slow:
    async def __call__(self, request):
        await asyncio.sleep(float(request.query_params.get("s", "0.5")))
        return "done"

    async def wait(self, s: float) -> str:
        await asyncio.sleep(s)
        return "done"


def test_backpressure_503_with_retry_after(serve_instance):
    serve.run(Slow.bind(), name="slow", route_prefix="/slow")

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.get(f"{serve_instance}/slow", params={"s": 0.5}) for _ in range(8)))

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    # one runs, two wait in the queue, the rest are refused at once
    assert codes.count(200) == 3, codes
    assert codes.count(503) == 5, codes
    refused = [r for r in responses if r.status_code == 503][0]
    assert refused.headers["retry-after"] == "1"
    assert "max_queued_requests is 2" in refused.text
    handle = serve.get_app_handle("slow")
    # handles see the same bound as a typed error
    with pytest.raises(BackPressureError):
        pending = [handle.wait.remote(0.3) for _ in range(10)]
        for p in pending:
            p.result(timeout_s=30)


@serve.deployment(request_timeout_s=0.3, max_ongoing_requests=1)
class Sleeper:
    async def __call__(self, request):
        await asyncio.sleep(float(request.query_params.get("s", "2")))
        return "late"


def test_request_timeout(serve_instance):
    serve.run(Sleeper.bind(), name="timeout", route_prefix="/timeout")
    t0 = time.monotonic()
    r = httpx.get(f"{serve_instance}/timeout", params={"s": 3}, timeout=30)
    assert r.status_code == 504, r.text
    assert "timed out after 0.3 s" in r.text
    assert time.monotonic() - t0 < 2.5
    assert httpx.get(f"{serve_instance}/timeout", params={"s": 0}, timeout=30).text == "late"
    # again on a warm replica connection (the proxy's direct path): the same 504, in time
    t0 = time.monotonic()
    with httpx.Client(timeout=30) as client:
        r = client.get(f"{serve_instance}/timeout", params={"s": 3})
        assert r.status_code == 504 and "timed out after 0.3 s" in r.text, r.text
        assert time.monotonic() - t0 < 2.5
        assert client.get(f"{serve_instance}/timeout", params={"s": 0}).text == "late"  # connection still fine


@serve.deployment
class Batched:
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.1)
    async def handle_batch(self, xs: list[int]) -> list[int]:
        self.batch_sizes.append(len(xs))
        return [x * 10 for x in xs]

    async def __call__(self, request):
        return await self.handle_batch(int(request.query_params["x"]))

    def sizes(self) -> list[int]:
        return self.batch_sizes


def test_batching_over_http(serve_instance):
    handle = serve.run(Batched.options(max_ongoing_requests=32).bind(), name="batch", route_prefix="/batch")

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.get(f"{serve_instance}/batch", params={"x": i}) for i in range(16)))

    responses = asyncio.run(burst())
    assert [r.json() for r in responses] == [i * 10 for i in range(16)]
    sizes = handle.sizes.remote().result(timeout_s=30)
    assert sum(sizes) == 16
    assert max(sizes) > 1 and max(sizes) <= 8, sizes


@serve.deployment(num_replicas=2)
class Models:
    def __init__(self) -> None:
        self.loads: list[str] = []

    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, model_id: str):
        self.loads.append(model_id)
        return f"model-{model_id}"

    async def __call__(self, request):
        model = await self.get_model(serve.get_multiplexed_model_id())
        return {"model": model, "replica": serve.get_replica_context().replica_tag}

    async def which(self) -> str:
        return await self.get_model(serve.get_multiplexed_model_id())


def test_multiplexing_routes_by_model_id(serve_instance):
    serve.run(Models.bind(), name="mux", route_prefix="/mux")
    with httpx.Client(base_url=serve_instance, timeout=30) as client:
        seen: dict[str, set[str]] = {}
        for _ in range(3):
            for model in ("a", "b", "c"):
                r = client.get("/mux", headers={"serve_multiplexed_model_id": model})
                assert r.status_code == 200
                assert r.json()["model"] == f"model-{model}"
                seen.setdefault(model, set()).add(r.json()["replica"])
    # a model sticks to the replica that loaded it
    assert all(len(replicas) == 1 for replicas in seen.values()), seen
    handle = serve.get_app_handle("mux")
    assert handle.options(multiplexed_model_id="z").which.remote().result(timeout_s=30) == "model-z"


def test_metrics_and_access_log(serve_instance):
    import os

    import distcore

    r = httpx.get(f"{serve_instance}/stream", params={"n": 1}, headers={"x-request-id": "trace-me-123"}, timeout=30)
    assert r.headers["x-request-id"] == "trace-me-123"
    log = os.path.join(distcore.init(ignore_reinit_error=True)["session_dir"], "logs", "serve_access.log")

    def logged() -> bool:
        if not os.path.exists(log):
            return False
        with open(log) as f:
            return "trace-me-123 stream GET /stream 200" in f.read()

    wait_for(logged, 10, message=f"request id not in the access log {log}")
    text = httpx.get(f"{serve_instance}/-/metrics", timeout=30).text
    assert 'serve_num_http_requests_total{application="compose",deployment="Pipeline"' in text or \
        "serve_num_http_requests_total{" in text
    assert "serve_http_request_latency_ms_bucket{" in text
    assert "serve_deployment_queued_queries" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("serve_num_http_requests_total{")]
    assert any('status_code="503"' in ln for ln in lines) or any('status_code="200"' in ln for ln in lines)
    assert json.loads(httpx.get(f"{serve_instance}/-/routes", timeout=30).text)
