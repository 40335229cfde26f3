"""Issue 3's gaps: the runtime context of concurrent actor calls, actors owned
by a task, and refs captured in a remote function's closure."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time

import numpy as np
import psutil

import distcore
from distcore._private.testing import wait_for


def test_async_actor_calls_each_see_their_own_task_id(shared_cluster):
    @distcore.remote
    class Async:
        def __init__(self):
            self.arrived = 0

        async def whoami(self, n):
            before = distcore.get_runtime_context().get_task_id()
            self.arrived += 1
            while self.arrived < n:  # every call is inside the actor before any answers
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            return before, distcore.get_runtime_context().get_task_id()

    actor = Async.remote()
    refs = [actor.whoami.remote(4) for _ in range(4)]
    seen = distcore.get(refs, timeout=60)
    assert [after for _, after in seen] == [r.task_id() for r in refs]
    assert [before for before, _ in seen] == [r.task_id() for r in refs]


def test_threaded_actor_calls_each_see_their_own_task_id(shared_cluster):
    @distcore.remote(max_concurrency=4)
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(4, timeout=30)

        def whoami(self):
            self.barrier.wait()  # four calls running at once
            return distcore.get_runtime_context().get_task_id()

    actor = Threaded.remote()
    refs = [actor.whoami.remote() for _ in range(4)]
    assert distcore.get(refs, timeout=60) == [r.task_id() for r in refs]


def _pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@distcore.remote
class Inner:
    def pid(self):
        return os.getpid()


@distcore.remote
class Holder:
    def __init__(self, detached):
        options = {"lifetime": "detached", "name": f"inner-{os.getpid()}"} if detached else {}
        self.inner = Inner.options(**options).remote()

    def pids(self):
        return os.getpid(), distcore.get(self.inner.pid.remote(), timeout=30)


def test_actor_created_inside_an_actor_dies_with_its_owner(shared_cluster):
    holder = Holder.remote(False)
    holder_pid, inner_pid = distcore.get(holder.pids.remote(), timeout=60)
    os.kill(holder_pid, signal.SIGKILL)
    wait_for(lambda: _pid_gone(inner_pid), timeout=30, message="the owned actor outlived its owner")


def test_detached_actor_created_inside_an_actor_outlives_its_owner(shared_cluster):
    holder = Holder.remote(True)
    holder_pid, inner_pid = distcore.get(holder.pids.remote(), timeout=60)
    os.kill(holder_pid, signal.SIGKILL)
    time.sleep(4)  # four owner checks
    assert not _pid_gone(inner_pid)
    inner = distcore.get_actor(f"inner-{holder_pid}")
    assert distcore.get(inner.pid.remote(), timeout=30) == inner_pid
    distcore.kill(inner)


def test_ref_captured_in_a_closure_lives_while_its_task_is_queued(start_cluster):
    start_cluster(num_cpus=1)

    @distcore.remote
    def blocker():
        time.sleep(2)

    def submit():
        ref = distcore.put(np.arange(300_000))  # in the shared-memory store, not inline

        @distcore.remote
        def total():
            return int(distcore.get(ref, timeout=30).sum())

        return total.remote()

    first = blocker.remote()
    out = submit()  # the function and the driver's copy of the ref are gone now
    gc.collect()
    assert distcore.get(out, timeout=60) == int(np.arange(300_000).sum())
    distcore.get(first, timeout=30)
