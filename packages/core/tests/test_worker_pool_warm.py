"""The node keeps warm (prestarted, unbound) workers ready after actors claim them or workers die.

Before, the idle pool was topped up only when a job ended: after a few actors
took the prestarted workers, every new actor waited for a fresh process.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import distcore
from distcore._private.worker_state import core_worker

pytestmark = pytest.mark.timeout(120)


def _workers() -> list[dict]:
    core = core_worker()
    return core.run(core.node().call("NodeManager", "GetNodeStats", None, timeout=10)).workers


def _warm() -> list[dict]:
    """Idle workers bound to no job that registered (their process is up and serving)."""
    return [w for w in _workers() if w["idle"] and not w["job_id"] and w["address"]]


def _wait_warm(count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        warm = _warm()
        if len(warm) >= count or time.monotonic() > deadline:
            return warm
        time.sleep(0.1)


@distcore.remote(num_cpus=0)
class Holder:
    def pid(self) -> int:
        return os.getpid()


def test_a_new_actor_after_actor_deaths_gets_a_warm_worker(shared_cluster):
    assert _wait_warm(1), "the node has no warm worker to begin with"
    # Claim every idle worker (unbound and this job's) and one more.
    n = sum(1 for w in _workers() if w["idle"]) + 1
    actors = [Holder.remote() for _ in range(n)]
    pids = set(distcore.get([a.pid.remote() for a in actors], timeout=90))
    for a in actors:
        distcore.kill(a)
    warm = _wait_warm(1)
    assert warm, "no warm worker was started after the actors claimed the prestarted ones"
    assert not {w["pid"] for w in warm} & pids
    # The new actor may take a warm worker or an idle one of this job (a task's worker that went
    # back to the pool meanwhile): either way a process that was already up.
    ready_pids = {w["pid"] for w in _workers() if w["idle"] and w["address"]}

    start = time.monotonic()
    fresh = Holder.remote()
    pid = distcore.get(fresh.pid.remote(), timeout=60)
    took = time.monotonic() - start
    assert pid in ready_pids, "the new actor waited for a new process instead of taking a ready one"
    assert took < 5.0, f"the new actor's first call took {took:.2f} s"
    distcore.kill(fresh)


def test_a_warm_worker_that_dies_is_replaced(shared_cluster):
    warm = _wait_warm(1)
    assert warm
    victim = warm[0]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _warm()
        if now and victim["pid"] not in {w["pid"] for w in now} and len(now) >= len(warm):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the killed warm worker {victim['pid']} was not replaced: {_warm()}")
