"""Replicas over time: rolling upgrades and crashes under load, health checks, placement errors, controller restarts."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

import distcore
from distcore import serve
from distcore._private.testing import wait_for
from distcore.serve.exceptions import RayServeException


@serve.deployment(num_replicas=2, version="v1", graceful_shutdown_timeout_s=5)
class Versioned:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def __call__(self, request):
        await asyncio.sleep(0.01)
        return self.tag


def _replicas(app: str, dep: str) -> dict[str, int]:
    return serve.status().applications[app].deployments[dep].replica_states


def test_rolling_upgrade_under_load_has_no_failures(serve_instance, load_generator):
    serve.run(Versioned.bind("v1"), name="roll", route_prefix="/roll")
    load = load_generator(f"{serve_instance}/roll", concurrency=4)
    time.sleep(1.0)
    serve.run(Versioned.options(version="v2").bind("v2"), name="roll", route_prefix="/roll")
    wait_for(lambda: load.bodies["v2"] > 20, 30, message="no v2 answers after the upgrade")
    time.sleep(0.5)
    codes = load.stop()
    assert codes[200] > 50, codes
    assert set(codes) == {200}, (codes, load.errors[:5])
    assert _replicas("roll", "Versioned") == {"RUNNING": 2}
    assert httpx.get(f"{serve_instance}/roll", timeout=30).text == "v2"


def test_redeploying_the_same_app_changes_nothing(serve_instance):
    before = serve.status().applications["roll"].deployments["Versioned"]
    serve.run(Versioned.options(version="v2").bind("v2"), name="roll", route_prefix="/roll")
    after = serve.status().applications["roll"].deployments["Versioned"]
    assert after.replica_states == before.replica_states == {"RUNNING": 2}
    assert after.status == "HEALTHY"


@pytest.mark.slow
def test_replica_crash_mid_load_is_replaced(serve_instance, load_generator):
    serve.run(Versioned.options(health_check_period_s=0.5).bind("c"), name="crash", route_prefix="/crash")
    load = load_generator(f"{serve_instance}/crash", concurrency=4)
    time.sleep(1.0)
    from distcore.util.state import list_actors

    victims = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
               if (a.name or "").startswith("SERVE_REPLICA::crash#")]
    assert len(victims) == 2
    distcore.kill(distcore.get_actor(victims[0].name, namespace="serve"))
    time.sleep(0.5)
    wait_for(lambda: _replicas("crash", "Versioned") == {"RUNNING": 2}, 30, message="no replacement replica")
    time.sleep(1.0)
    codes = load.stop()
    assert codes[200] > 50, codes
    # a request in flight on the killed replica is retried once on the other one
    assert set(codes) == {200}, (codes, load.errors[:5])


@serve.deployment(health_check_period_s=0.3, health_check_timeout_s=2)
class Flaky:
    def __init__(self, path: str) -> None:
        self.path = path

    def check_health(self) -> None:
        if os.path.exists(self.path):
            raise RuntimeError("marked unhealthy")

    async def __call__(self, request):
        return serve.get_replica_context().replica_tag


def test_unhealthy_replica_is_restarted(serve_instance, tmp_path):
    flag = str(tmp_path / "unhealthy")
    serve.run(Flaky.bind(flag), name="flaky", route_prefix="/flaky")
    tag = httpx.get(f"{serve_instance}/flaky", timeout=30).text
    open(flag, "w").close()
    wait_for(lambda: "unhealthy" in serve.status().applications["flaky"].deployments["Flaky"].message, 15)
    os.remove(flag)
    wait_for(lambda: _replicas("flaky", "Flaky") == {"RUNNING": 1}
               and httpx.get(f"{serve_instance}/flaky", timeout=30).text != tag, 30)
    serve.delete("flaky")


@serve.deployment(ray_actor_options={"num_cpus": 64})
class Huge:
    async def __call__(self, request):
        return "never"


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0, "resources": {"serve_test": 1}})
class Scarce:
    async def __call__(self, request):
        return "one fits"


def test_unplaceable_apps_fail_fast_naming_resources(serve_instance):
    t0 = time.monotonic()
    with pytest.raises(RayServeException, match=r"Huge.*CPU.*64"):
        serve.run(Huge.bind(), name="huge", route_prefix="/huge")
    assert time.monotonic() - t0 < 15
    assert "CPU" in serve.status().applications["huge"].message
    serve.delete("huge")
    t0 = time.monotonic()
    with pytest.raises(RayServeException, match=r"Scarce.*serve_test"):
        serve.run(Scarce.bind(), name="scarce", route_prefix="/scarce")
    assert time.monotonic() - t0 < 20
    serve.delete("scarce")


@serve.deployment
class Counter:
    def __init__(self) -> None:
        self.n = 0

    async def __call__(self, request):
        self.n += 1
        return serve.get_replica_context().replica_tag


@pytest.mark.slow
def test_controller_restart_loses_nothing(serve_instance):
    serve.run(Counter.bind(), name="survivor", route_prefix="/survivor")
    pid = httpx.get(f"{serve_instance}/survivor", timeout=30).text
    before = {name: app.deployments.keys() for name, app in serve.status().applications.items()}
    controller = distcore.get_actor("SERVE_CONTROLLER", namespace="serve")
    distcore.kill(controller, no_restart=False)
    # the proxy keeps routing while the controller is away
    assert httpx.get(f"{serve_instance}/survivor", timeout=30).text == pid
    wait_for(lambda: _safe_status("survivor") == "RUNNING", 30)
    after = {name: app.deployments.keys() for name, app in serve.status().applications.items()}
    assert after == before
    # the same replica (re-adopted, not restarted) still answers
    assert httpx.get(f"{serve_instance}/survivor", timeout=30).text == pid
    serve.run(Counter.options(num_replicas=2).bind(), name="survivor", route_prefix="/survivor")
    assert _replicas("survivor", "Counter") == {"RUNNING": 2}
    serve.delete("survivor")


def _safe_status(app: str) -> str | None:
    try:
        return serve.status().applications[app].status
    except Exception:
        return None
