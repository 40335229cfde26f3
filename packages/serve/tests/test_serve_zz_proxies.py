"""proxy_location: a proxy on every node of a 2-node cluster, and none at all (runs last: it stops the shared
cluster and Serve)."""

from __future__ import annotations

import socket

import httpx
import pytest

import distcore
from distcore import serve
from distcore._private.testing import wait_for
from distcore.cluster_utils import Cluster
from distcore.serve.exceptions import RayServeException


@serve.deployment
class Hello:
    async def __call__(self, request=None):
        return "hello"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_proxy_location_is_validated():
    with pytest.raises(ValueError, match="proxy_location must be one of"):
        serve.start(proxy_location="Everywhere")
    with pytest.raises(ValueError, match="proxy_location must be one of"):
        serve.HTTPOptions.parse({"location": "sometimes"})


@pytest.mark.slow
def test_every_node_proxy_answers_and_disabled_runs_none(cluster_manager):
    serve.shutdown()
    cluster_manager.stop()
    cluster = Cluster()
    head = cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=1)
    cluster.connect()
    try:
        port = _free_port()
        serve.start(http_options={"port": port}, proxy_location="EveryNode")
        serve.run(Hello.bind(), name="hello", route_prefix="/hello")
        wait_for(lambda: serve.status().proxies == {head.node_id: "HEALTHY", worker.node_id: "HEALTHY"}, 60,
                 message=f"not one healthy proxy per node: {serve.status().proxies}")
        # nodes on one host share the port (SO_REUSEPORT): fresh connections land on both proxies
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30) as client:
            for _ in range(40):
                r = client.get(f"http://127.0.0.1:{port}/hello")
                assert r.status_code == 200 and r.text == "hello"
        served = {}
        for name in ["SERVE_PROXY", f"SERVE_PROXY::{worker.node_id}"]:
            stats = distcore.get(distcore.get_actor(name, namespace="serve").stats.remote(), timeout=30)
            served[stats["node_id"]] = stats["requests"]
        assert set(served) == {head.node_id, worker.node_id}
        assert all(n > 0 for n in served.values()), served
        assert sum(served.values()) == 40
        serve.shutdown()
        with pytest.raises(ValueError):
            distcore.get_actor(f"SERVE_PROXY::{worker.node_id}", namespace="serve")

        # Disabled: no proxy anywhere, handles still work
        serve.start(proxy_location="Disabled")
        handle = serve.run(Hello.bind(), name="hello", route_prefix="/hello")
        assert handle.remote().result(timeout_s=30) == "hello"
        status = serve.status()
        assert status.proxies == {} and status.http_port is None
        with pytest.raises(ValueError):
            distcore.get_actor("SERVE_PROXY", namespace="serve")
    finally:
        try:
            serve.shutdown()
        except RayServeException:
            pass
        distcore.shutdown()
        cluster.shutdown()
