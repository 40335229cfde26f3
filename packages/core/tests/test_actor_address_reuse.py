"""A call meant for a dead actor never runs on the process that took over its address.

The kernel hands a dead worker's port to new processes: a caller still holding the old address reaches
a different worker there. That worker refuses the call (``NotThisWorker``) instead of running it.
"""

from __future__ import annotations

import socket
import time

import pytest

import distcore
from distcore._private import worker_state
from distcore.exceptions import ActorDiedError


@distcore.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def count(self):
        return self.n


def test_a_call_for_a_dead_actor_that_reaches_another_actor_at_its_address_is_refused(shared_cluster):
    a, b = Counter.remote(), Counter.remote()
    assert distcore.get([a.incr.remote(), b.incr.remote()], timeout=60) == [1, 1]
    actors = worker_state.core_worker().actors.actors
    state_a, state_b = actors[a._actor_id], actors[b._actor_id]
    assert state_a.address.target != state_b.address.target
    distcore.kill(a)
    deadline = time.monotonic() + 30
    while _alive(state_a.address.target) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state_a.dead is None  # this caller has not heard of a's death: it still holds a's address
    # What the caller holds once b's worker has got a's port from the kernel.
    state_a.address = state_b.address

    with pytest.raises(ActorDiedError, match="dead"):
        distcore.get(a.incr.remote(), timeout=60)
    assert distcore.get(b.count.remote(), timeout=60) == 1  # b never ran a's call
    distcore.kill(b)


def _alive(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False
