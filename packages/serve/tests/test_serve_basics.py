"""Deployments, composition, handles and status, driven through real HTTP against the proxy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import distcore
from distcore import serve
from distcore.serve.exceptions import RayServeException


@serve.deployment
class Doubler:
    async def __call__(self, x: int) -> int:
        return 2 * x


@serve.deployment
class Adder:
    def __init__(self, n: int) -> None:
        self.n = n

    def add(self, x: int) -> int:  # a sync method runs on the replica's thread pool
        return x + self.n


@serve.deployment(num_replicas=2)
class Pipeline:
    def __init__(self, doubler, adder) -> None:
        self.doubler = doubler
        self.adder = adder

    async def __call__(self, request) -> dict:
        x = int(request.query_params["x"])
        # the doubler's response goes into the adder's call without waiting here
        total = await self.adder.add.remote(self.doubler.remote(x))
        ctx = serve.get_replica_context()
        return {"result": total, "deployment": ctx.deployment, "app": ctx.app_name}


def test_three_deployments_compose_over_http(serve_instance):
    serve.run(Pipeline.bind(Doubler.bind(), Adder.bind(100)), name="compose", route_prefix="/compose")
    with httpx.Client(base_url=serve_instance, timeout=30) as client:
        for x in (1, 7, 20):
            r = client.get("/compose", params={"x": x})
            assert r.status_code == 200, r.text
            assert r.json() == {"result": 2 * x + 100, "deployment": "Pipeline", "app": "compose"}
            assert r.headers["x-request-id"]
        r = client.get("/compose/sub/path", params={"x": 1})
        assert r.json()["result"] == 102
    st = serve.status().applications["compose"]
    assert st.status == "RUNNING"
    assert st.deployments["Pipeline"].replica_states == {"RUNNING": 2}
    assert set(st.deployments) == {"Pipeline", "Doubler", "Adder"}


def test_handles_from_the_driver(serve_instance):
    handle = serve.get_deployment_handle("Adder", "compose")
    assert handle.add.remote(1).result(timeout_s=30) == 101
    responses = [handle.add.remote(i) for i in range(50)]
    assert [r.result(timeout_s=30) for r in responses] == [i + 100 for i in range(50)]
    doubler = serve.get_deployment_handle("Doubler", app_name="compose")
    assert handle.options(method_name="add").remote(doubler.remote(5)).result(timeout_s=30) == 110

    async def use_async():
        return await asyncio.gather(*(doubler.remote(i) for i in range(10)))

    assert asyncio.run(use_async()) == [2 * i for i in range(10)]
    app = serve.get_app_handle("compose")
    assert app.deployment_name == "Pipeline"
    with pytest.raises(RayServeException, match="no deployment 'Nope'"):
        serve.get_deployment_handle("Nope", "compose")
    with pytest.raises(RayServeException, match="does not exist"):
        serve.get_app_handle("no-such-app")


@serve.deployment
def hello(request) -> str:
    return f"hello {request.query_params.get('name', 'world')}"


@serve.deployment(user_config={"greeting": "hi"})
class Configurable:
    def __init__(self) -> None:
        self.greeting = ""

    def reconfigure(self, config: dict) -> None:
        self.greeting = config["greeting"]

    async def __call__(self, request) -> str:
        return self.greeting


def test_function_deployment_and_user_config(serve_instance):
    serve.run(hello.bind(), name="fn", route_prefix="/hello")
    r = httpx.get(f"{serve_instance}/hello", params={"name": "distcore"}, timeout=30)
    assert r.status_code == 200 and r.text == "hello distcore"
    assert r.headers["content-type"].startswith("text/plain")

    serve.run(Configurable.bind(), name="cfg", route_prefix="/cfg")
    assert httpx.get(f"{serve_instance}/cfg", timeout=30).text == "hi"
    # a new user_config reconfigures the running replica in place
    serve.run(Configurable.options(user_config={"greeting": "hello again"}).bind(), name="cfg", route_prefix="/cfg")
    assert httpx.get(f"{serve_instance}/cfg", timeout=30).text == "hello again"
    serve.delete("cfg")
    assert "cfg" not in serve.status().applications
    assert httpx.get(f"{serve_instance}/cfg", timeout=30).status_code == 404


@serve.deployment
class Failing:
    async def __call__(self, request):
        raise ValueError("bad input 42")

    async def boom(self, x):
        raise KeyError(x)


def test_user_errors_surface(serve_instance):
    handle = serve.run(Failing.bind(), name="failing", route_prefix="/failing")
    r = httpx.get(f"{serve_instance}/failing", timeout=30)
    assert r.status_code == 500
    assert "bad input 42" in r.text
    with pytest.raises(KeyError):
        handle.boom.remote("k").result(timeout_s=30)
    with pytest.raises(AttributeError, match="no method 'missing'"):
        handle.missing.remote().result(timeout_s=30)
    routes = httpx.get(f"{serve_instance}/-/routes", timeout=30).json()
    assert routes["/failing"] == "failing"
    assert httpx.get(f"{serve_instance}/nowhere-at-all", timeout=30).status_code == 404


def test_bad_options_are_clear():
    with pytest.raises(TypeError, match="unknown option"):
        serve.deployment(num_replica=2)(Doubler.func_or_class)
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        Doubler.options(max_ongoing_requests=0)
    with pytest.raises(ValueError, match="not both"):
        Doubler.options(num_replicas=2, autoscaling_config={"min_replicas": 1, "max_replicas": 2})
    with pytest.raises(ValueError, match="min_replicas"):
        Doubler.options(autoscaling_config={"min_replicas": 3, "max_replicas": 2})
    with pytest.raises(TypeError, match="bind"):
        serve.run(Doubler)
    with pytest.raises(ValueError, match="route_prefix"):
        serve.run(Doubler.bind(), route_prefix="nope")
    assert Doubler.options(actor_options={"num_cpus": 0.5}).ray_actor_options == {"num_cpus": 0.5}
    assert Doubler.options(name="D2").name == "D2"


def test_replica_context_outside_a_replica():
    with pytest.raises(RayServeException, match="inside a deployment"):
        serve.get_replica_context()


def test_cluster_is_shared():
    assert distcore.is_initialized()
