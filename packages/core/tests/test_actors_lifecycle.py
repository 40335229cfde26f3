"""Behaviour tests for actor deaths: kill, restarts, task retries,
constructor errors, exit_actor and __ray_terminate__. Ending by scope lives
in test_actors_scope.py."""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest

import distcore
from distcore._private.testing import wait_for
from distcore.exceptions import ActorDiedError, ActorUnavailableError


@distcore.remote
class Counter:
    def __init__(self):
        self.value = 0

    def incr(self):
        self.value += 1
        return self.value

    def pid(self):
        return os.getpid()

    def crash(self):
        os._exit(1)


def _pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------- kill


def test_kill_makes_later_calls_raise_actor_died(shared_cluster):
    c = Counter.remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    distcore.kill(c)
    with pytest.raises(ActorDiedError):
        distcore.get(c.incr.remote(), timeout=30)
    wait_for(lambda: _pid_gone(pid), timeout=10, message="the killed actor's process is still running")


def test_kill_fails_pending_calls(shared_cluster):
    @distcore.remote
    class Slow:
        def nap(self):
            import time

            time.sleep(30)

    s = Slow.remote()
    pending = s.nap.remote()
    distcore.wait([pending], timeout=1.0)
    distcore.kill(s)
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(pending, timeout=30)


def test_kill_rejects_non_handles(shared_cluster):
    with pytest.raises(TypeError, match="actor handle"):
        distcore.kill("not an actor")


# ---------------------------------------------------------------- restarts


def test_crashed_actor_restarts_with_fresh_state(shared_cluster):
    c = Counter.options(max_restarts=1).remote()
    assert distcore.get([c.incr.remote(), c.incr.remote()], timeout=30) == [1, 2]
    first_pid = distcore.get(c.pid.remote(), timeout=30)
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(c.crash.remote(), timeout=30)
    # The constructor ran again in a new process: the count starts over.
    assert distcore.get(c.incr.remote(), timeout=30) == 1
    assert distcore.get(c.pid.remote(), timeout=30) != first_pid
    # The one restart is used up: the next crash is final.
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(c.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        distcore.get(c.incr.remote(), timeout=30)


def test_actor_without_restarts_stays_dead_after_a_crash(shared_cluster):
    c = Counter.remote()
    assert distcore.get(c.incr.remote(), timeout=30) == 1
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(c.crash.remote(), timeout=30)
    with pytest.raises(ActorDiedError, match="exited"):
        distcore.get(c.incr.remote(), timeout=30)


def test_max_task_retries_resubmits_calls_after_a_restart(shared_cluster, tmp_path):
    marker = tmp_path / "crashed_once"

    @distcore.remote(max_restarts=1, max_task_retries=1)
    class Flaky:
        def __init__(self):
            self.pid = os.getpid()

        def work(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return self.pid

    f = Flaky.remote()
    pid = distcore.get(f.work.remote(str(marker)), timeout=60)
    assert marker.exists()
    assert pid != os.getpid()
    assert distcore.get(f.work.remote(str(marker)), timeout=30) == pid


def test_kill_with_restart_allowed_restarts_the_actor(shared_cluster):
    c = Counter.options(max_restarts=1).remote()
    assert distcore.get(c.incr.remote(), timeout=30) == 1
    old_pid = distcore.get(c.pid.remote(), timeout=30)
    distcore.kill(c, no_restart=False)
    wait_for(lambda: _pid_gone(old_pid), timeout=10)

    def restarted():
        try:
            return distcore.get(c.pid.remote(), timeout=30) != old_pid
        except (ActorDiedError, ActorUnavailableError):
            return False

    wait_for(restarted, timeout=30, message="the actor did not restart after kill(no_restart=False)")
    assert distcore.get(c.incr.remote(), timeout=30) == 1


# ---------------------------------------------------------------- constructor errors


def test_constructor_error_kills_the_actor_with_its_traceback(shared_cluster):
    @distcore.remote
    class Broken:
        def __init__(self, x):
            raise ZeroDivisionError(f"cannot build with {x}")

        def ping(self):
            return "pong"

    b = Broken.remote(3)
    with pytest.raises(ActorDiedError) as info:
        distcore.get(b.ping.remote(), timeout=30)
    text = str(info.value)
    assert "ZeroDivisionError" in text and "cannot build with 3" in text
    assert "Traceback" in text
    # Later calls fail the same way, quickly.
    with pytest.raises(ActorDiedError, match="cannot build with 3"):
        distcore.get(b.ping.remote(), timeout=30)


def test_constructor_error_does_not_restart(shared_cluster, tmp_path):
    counter_file = tmp_path / "constructions"

    @distcore.remote(max_restarts=3)
    class Broken:
        def __init__(self, path):
            with open(path, "a") as f:
                f.write("x")
            raise RuntimeError("nope")

        def ping(self):
            return "pong"

    b = Broken.remote(str(counter_file))
    with pytest.raises(ActorDiedError, match="nope"):
        distcore.get(b.ping.remote(), timeout=30)
    assert counter_file.read_text() == "x"


# ---------------------------------------------------------------- graceful exit


@distcore.remote
class Quitter:
    def __init__(self):
        self.count = 0

    def pid(self):
        return os.getpid()

    def quit(self):
        distcore.actor.exit_actor()

    def incr(self):
        self.count += 1
        return self.count


@distcore.remote
class AsyncQuitter:
    async def pid(self):
        return os.getpid()

    async def quit(self):
        await asyncio.sleep(0)
        distcore.actor.exit_actor()


@pytest.mark.parametrize("cls", [Quitter, AsyncQuitter], ids=["sync", "async"])
def test_exit_actor_ends_the_actor_without_restart(shared_cluster, cls):
    a = cls.options(max_restarts=2).remote()
    pid = distcore.get(a.pid.remote(), timeout=30)
    with pytest.raises(ActorDiedError):
        distcore.get(a.quit.remote(), timeout=30)
    wait_for(lambda: _pid_gone(pid), timeout=10, message="the actor's process did not exit")
    with pytest.raises(ActorDiedError, match="exit"):
        distcore.get(a.pid.remote(), timeout=30)


def test_exit_actor_outside_an_actor_is_an_error(shared_cluster):
    with pytest.raises(TypeError, match="actor"):
        distcore.actor.exit_actor()


def test_ray_terminate_runs_queued_calls_first(shared_cluster):
    q = Quitter.remote()
    pid = distcore.get(q.pid.remote(), timeout=30)
    calls = [q.incr.remote() for _ in range(5)]
    q.__ray_terminate__.remote()
    assert distcore.get(calls, timeout=30) == [1, 2, 3, 4, 5]
    wait_for(lambda: _pid_gone(pid), timeout=10, message="__ray_terminate__ did not end the actor's process")
    with pytest.raises(ActorDiedError):
        distcore.get(q.incr.remote(), timeout=30)


def test_killing_an_actor_that_waits_for_resources(shared_cluster):
    @distcore.remote(num_cpus=4)
    class Hog:
        def ping(self):
            return "hog"

    @distcore.remote(num_cpus=1)
    class Waiter:
        def ping(self):
            return "waiter"

    hog = Hog.remote()
    assert distcore.get(hog.ping.remote(), timeout=30) == "hog"
    waiter = Waiter.remote()
    pending = waiter.ping.remote()
    ready, _ = distcore.wait([pending], timeout=1.0)
    assert ready == []  # no CPU left for it
    distcore.kill(waiter)
    with pytest.raises(ActorDiedError):
        distcore.get(pending, timeout=30)
    distcore.kill(hog)
    # Every CPU comes back: nothing is held for the actor that never started.
    wait_for(lambda: distcore.available_resources().get("CPU", 0) == 4, timeout=15,
             message=f"CPUs not returned: {distcore.available_resources()}")


def test_restarted_actor_holds_its_resources_again(start_cluster):
    start_cluster(num_cpus=2)

    @distcore.remote(num_cpus=2, max_restarts=1)
    class Whole:
        def pid(self):
            return os.getpid()

        def crash(self):
            os._exit(1)

    w = Whole.remote()
    first = distcore.get(w.pid.remote(), timeout=30)
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(w.crash.remote(), timeout=30)
    assert distcore.get(w.pid.remote(), timeout=30) != first
    wait_for(lambda: distcore.available_resources().get("CPU", 0) == 0, timeout=10,
             message=f"the restarted actor does not hold its CPUs: {distcore.available_resources()}")
    distcore.kill(w)
    wait_for(lambda: distcore.available_resources().get("CPU", 0) == 2, timeout=10)


def test_retried_calls_keep_their_order_on_the_restarted_actor(shared_cluster, tmp_path):
    marker = tmp_path / "crashed"

    @distcore.remote(max_restarts=1, max_task_retries=-1)
    class Journal:
        def __init__(self):
            self.items = []

        def crash_once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)

        def append(self, item):
            self.items.append(item)

        def items_(self):
            return list(self.items)

    j = Journal.remote()
    distcore.get(j.items_.remote(), timeout=30)
    j.crash_once.remote(str(marker))
    for i in range(10):
        j.append.remote(i)
    assert distcore.get(j.items_.remote(), timeout=60) == list(range(10))
