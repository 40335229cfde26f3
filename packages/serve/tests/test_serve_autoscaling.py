"""Autoscaling on ongoing requests: up under load, down when idle, and from zero and back."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from distcore import serve
from distcore._private.testing import wait_for


def _running(app: str, dep: str) -> int:
    return serve.status().applications[app].deployments[dep].replica_states.get("RUNNING", 0)


@serve.deployment(
    max_ongoing_requests=4,
    autoscaling_config={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                        "upscale_delay_s": 0.5, "downscale_delay_s": 1.0},
)
class Busy:
    async def __call__(self, request):
        await asyncio.sleep(0.2)
        return "ok"


@pytest.mark.slow
def test_autoscaling_up_under_load_and_down_when_idle(serve_instance, load_generator):
    serve.run(Busy.bind(), name="auto", route_prefix="/auto")
    assert _running("auto", "Busy") == 1
    load = load_generator(f"{serve_instance}/auto", concurrency=8)
    wait_for(lambda: _running("auto", "Busy") == 3, 30, message="did not scale up to 3 replicas")
    codes = load.stop()
    assert set(codes) == {200}, (codes, load.errors[:3])
    wait_for(lambda: _running("auto", "Busy") == 1 and
             serve.status().applications["auto"].deployments["Busy"].replica_states == {"RUNNING": 1},
             30, message="did not scale back down to 1 replica")
    serve.delete("auto")


@serve.deployment(
    autoscaling_config={"min_replicas": 0, "max_replicas": 2, "initial_replicas": 0, "target_ongoing_requests": 1,
                        "upscale_delay_s": 0.0, "downscale_delay_s": 1.0},
)
class Lazy:
    async def __call__(self, request):
        return "woke up"


def test_scale_to_zero_and_back(serve_instance):
    serve.run(Lazy.bind(), name="zero", route_prefix="/zero")
    dep = serve.status().applications["zero"].deployments["Lazy"]
    assert dep.replica_states == {} and dep.target_replicas == 0
    seen: list[str] = []

    def watch():
        # the status says why the request waits
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not seen:
            msg = serve.status().applications["zero"].deployments["Lazy"].message
            if "from zero" in msg:
                seen.append(msg)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    r = httpx.get(f"{serve_instance}/zero", timeout=60)
    assert r.status_code == 200 and r.text == "woke up"
    assert time.monotonic() - t0 < 30
    watcher.join()
    assert seen, "the status never said the deployment was scaling from zero"
    assert _running("zero", "Lazy") == 1
    wait_for(lambda: serve.status().applications["zero"].deployments["Lazy"].replica_states == {}, 30,
             message="did not scale back to zero")
    assert httpx.get(f"{serve_instance}/zero", timeout=60).text == "woke up"
    serve.delete("zero")


@serve.deployment(
    max_ongoing_requests=1,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                        "upscale_delay_s": 0.2, "downscale_delay_s": 1.0},
)
class OneAtATime:
    async def __call__(self, request):
        await asyncio.sleep(0.3)
        return "ok"


def test_requests_queued_in_routers_trigger_scale_up(serve_instance, load_generator):
    # each replica takes one request at a time, so its own ongoing count never exceeds the target (1):
    # only the requests queued in the proxy's router can tell the controller that more replicas are needed
    serve.run(OneAtATime.bind(), name="queued", route_prefix="/queued")
    assert _running("queued", "OneAtATime") == 1
    load = load_generator(f"{serve_instance}/queued", concurrency=4)
    wait_for(lambda: _running("queued", "OneAtATime") == 2, 20,
             message="requests queued in the router did not scale the deployment up")
    codes = load.stop()
    assert set(codes) == {200}, (codes, load.errors[:3])
    serve.delete("queued")  # scaling back down is test_autoscaling_up_under_load_and_down_when_idle's job
