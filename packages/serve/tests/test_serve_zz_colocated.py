"""The opt-in mode where the proxy hosts an application's single ingress replica (runs last: it restarts Serve)."""

from __future__ import annotations

import os

import httpx
import pytest

from distcore import serve


@serve.deployment
class Inner:
    async def __call__(self, x: int) -> int:
        return x + 1


@serve.deployment
class Outer:
    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, request):
        value = await self.inner.remote(int(request.query_params["x"]))
        return {"value": value, "pid": os.getpid(), "replica": serve.get_replica_context().replica_tag}


@pytest.mark.slow
def test_ingress_hosted_in_the_proxy(serve_instance, serve_port):
    port = serve_port
    serve.shutdown()
    try:
        serve.start(http_options={"port": port, "colocate_ingress": True})
        serve.run(Outer.bind(Inner.bind()), name="colo", route_prefix="/colo")
        from distcore.serve._internal import api

        proxy_pid = api._ports["pid"]
        r = httpx.get(f"{serve_instance}/colo", params={"x": 41}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["value"] == 42
        # the ingress ran inside the proxy's process; its replica context is its own
        assert body["pid"] == proxy_pid
        assert body["replica"].startswith("Outer#")
        assert serve.status().applications["colo"].deployments["Outer"].replica_states == {"RUNNING": 1}
        serve.delete("colo")
    finally:
        serve.shutdown()
        serve.start(http_options={"port": port})
