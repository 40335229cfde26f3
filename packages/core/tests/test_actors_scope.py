"""Behaviour tests for actor lifetime by scope: an actor ends when no handle
refers to it any more (its creator's, or copies borrowed by tasks and
actors); detached actors and handles from get_actor do not count."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import distcore
from distcore._private.testing import wait_for
from distcore.exceptions import ActorDiedError


@distcore.remote
class Counter:
    def __init__(self):
        self.value = 0

    def incr(self):
        self.value += 1
        return self.value

    def pid(self):
        return os.getpid()


def _pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_actor_is_terminated_when_its_handle_goes_out_of_scope(shared_cluster):
    c = Counter.remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    del c
    wait_for(lambda: _pid_gone(pid), timeout=15, message="the out-of-scope actor's process is still running")


def test_actor_stays_alive_while_a_task_holds_its_handle(shared_cluster):
    @distcore.remote
    def use_later(handles):
        import time

        time.sleep(1.0)
        return distcore.get(handles[0].incr.remote())

    c = Counter.remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    ref = use_later.remote([c])
    del c
    assert distcore.get(ref, timeout=30) == 1
    assert not _pid_gone(pid)


def test_named_actor_ends_with_its_creator_handle_as_in_ray(shared_cluster):
    c = Counter.options(name="ends_with_handle").remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    by_name = distcore.get_actor("ends_with_handle")
    del c
    # A handle from get_actor does not keep a non-detached actor alive.
    wait_for(lambda: _pid_gone(pid), timeout=15, message="the named actor outlived its creator's handle")
    with pytest.raises(ActorDiedError):
        distcore.get(by_name.pid.remote(), timeout=30)

    def name_free():
        try:
            distcore.get_actor("ends_with_handle")
        except ValueError:
            return True
        return False

    wait_for(name_free, timeout=10, message="the dead actor's name is still registered")


def test_detached_actor_survives_its_handle_going_out_of_scope(shared_cluster):
    c = Counter.options(name="kept_by_name", lifetime="detached").remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    del c
    again = distcore.get_actor("kept_by_name")
    assert distcore.get(again.pid.remote(), timeout=30) == pid
    distcore.kill(again)


def test_handle_dropped_while_the_constructor_runs(shared_cluster, tmp_path):
    marker = tmp_path / "constructed"

    @distcore.remote
    class SlowStart:
        def __init__(self, path):
            import time

            time.sleep(1.0)
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)  # the test polls for the file: it appears complete

    SlowStart.remote(str(marker))
    wait_for(marker.exists, timeout=30, message="the constructor never ran")
    pid = int(marker.read_text())
    wait_for(lambda: _pid_gone(pid), timeout=15, message="the actor outlived its only handle")


def test_actor_ends_once_a_task_that_borrowed_its_handle_is_done(shared_cluster):
    @distcore.remote
    def use(handles):
        return distcore.get(handles[0].incr.remote())

    c = Counter.remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    assert distcore.get(use.remote([c]), timeout=30) == 1
    del c
    wait_for(lambda: _pid_gone(pid), timeout=20, message="the actor outlived every handle to it")


def test_actor_lives_while_another_actor_keeps_its_handle(shared_cluster):
    @distcore.remote
    class Keeper:
        def __init__(self):
            self.kept = None

        def keep(self, handles):
            self.kept = handles[0]

        def drop(self):
            self.kept = None

        def use(self):
            return distcore.get(self.kept.incr.remote())

    c = Counter.remote()
    pid = distcore.get(c.pid.remote(), timeout=30)
    keeper = Keeper.remote()
    distcore.get(keeper.keep.remote([c]), timeout=30)
    del c
    time.sleep(1.0)
    assert distcore.get(keeper.use.remote(), timeout=30) == 1
    assert not _pid_gone(pid)
    distcore.get(keeper.drop.remote(), timeout=30)
    wait_for(lambda: _pid_gone(pid), timeout=20, message="the actor outlived the last borrowed handle")
