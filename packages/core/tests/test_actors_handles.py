"""Behaviour tests for actor handles: passing them around, named actors,
namespaces, get_if_exists, and detached actors seen from other drivers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import distcore
from distcore._private.testing import wait_for


@distcore.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self):
        self.value += 1
        return self.value

    def get(self):
        return self.value


# ---------------------------------------------------------------- handles


def test_handle_passed_into_a_task_is_usable_there(shared_cluster):
    @distcore.remote
    def bump(counter, times):
        return distcore.get([counter.incr.remote() for _ in range(times)])[-1]

    c = Counter.remote()
    assert distcore.get(bump.remote(c, 5), timeout=30) == 5
    assert distcore.get(c.get.remote(), timeout=30) == 5


def test_handle_passed_into_another_actor_is_usable_there(shared_cluster):
    @distcore.remote
    class Forwarder:
        def __init__(self, target):
            self.target = target

        def forward(self, n):
            for _ in range(n):
                self.target.incr.remote()
            return distcore.get(self.target.get.remote())

    c = Counter.remote()
    f = Forwarder.remote(c)
    assert distcore.get(f.forward.remote(3), timeout=30) == 3
    # A handle nested in a container works too.
    assert distcore.get(Forwarder.remote(c).forward.remote(2), timeout=30) == 5


def test_handle_returned_from_a_task_works_in_the_driver(shared_cluster):
    @distcore.remote
    def make_counter():
        c = Counter.options(name="made_in_task", lifetime="detached").remote(41)
        return c

    c = distcore.get(make_counter.remote(), timeout=30)
    assert distcore.get(c.incr.remote(), timeout=30) == 42
    distcore.kill(c)


# ---------------------------------------------------------------- named actors


def test_named_actor_lookup_in_the_same_namespace(shared_cluster):
    c = Counter.options(name="named_counter").remote(1)
    found = distcore.get_actor("named_counter")
    assert distcore.get(found.incr.remote(), timeout=30) == 2
    assert distcore.get(c.get.remote(), timeout=30) == 2
    distcore.kill(c)


def test_named_actor_in_another_namespace_is_not_found(shared_cluster):
    c = Counter.options(name="ns_counter", namespace="elsewhere").remote()
    assert distcore.get(c.incr.remote(), timeout=30) == 1
    with pytest.raises(ValueError, match="ns_counter"):
        distcore.get_actor("ns_counter")
    found = distcore.get_actor("ns_counter", namespace="elsewhere")
    assert distcore.get(found.incr.remote(), timeout=30) == 2
    distcore.kill(c)


def test_missing_named_actor_is_a_clear_value_error(shared_cluster):
    with pytest.raises(ValueError, match="no_such_actor"):
        distcore.get_actor("no_such_actor")


def test_name_collision_and_get_if_exists(shared_cluster):
    first = Counter.options(name="unique_name").remote(5)
    assert distcore.get(first.incr.remote(), timeout=30) == 6
    with pytest.raises(ValueError, match="unique_name"):
        Counter.options(name="unique_name").remote()
    again = Counter.options(name="unique_name", get_if_exists=True).remote(100)
    assert again == first
    assert distcore.get(again.incr.remote(), timeout=30) == 7
    distcore.kill(first)
    # The name is free again once the actor is dead.
    fresh = Counter.options(name="unique_name", get_if_exists=True).remote(100)
    assert distcore.get(fresh.incr.remote(), timeout=30) == 101
    distcore.kill(fresh)


_SECOND_DRIVER = textwrap.dedent(
    """
    import sys
    import distcore

    distcore.init(address=sys.argv[1], namespace=sys.argv[2])
    counter = distcore.get_actor("survivor")
    print("VALUE", distcore.get(counter.incr.remote(), timeout=30))
    try:
        distcore.get_actor("survivor", namespace="not-" + sys.argv[2])
    except ValueError as exc:
        print("OTHER-NS", type(exc).__name__)
    distcore.shutdown()
    """
)


def _run_driver(script: str, ctx: dict, namespace: str) -> str:
    """Run ``script`` as a second driver of the cluster ``ctx`` (this session's token)."""
    with open(os.path.join(ctx["session_dir"], "token")) as f:
        token = f.read().strip()
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=token)
    env.pop("DISTCORE_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", script, ctx["address"], namespace], env=env, capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_detached_actor_outlives_its_driver(start_cluster):
    ctx = start_cluster(num_cpus=2)
    creator = textwrap.dedent(
        """
        import sys
        import distcore

        distcore.init(address=sys.argv[1], namespace=sys.argv[2])

        @distcore.remote
        class Counter:
            def __init__(self):
                self.n = 10
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.options(name="survivor", lifetime="detached").remote()
        print("VALUE", distcore.get(c.incr.remote(), timeout=30))
        distcore.shutdown()
        """
    )
    assert "VALUE 11" in _run_driver(creator, ctx, "shared-ns")
    out = _run_driver(_SECOND_DRIVER, ctx, "shared-ns")
    assert "VALUE 12" in out
    assert "OTHER-NS ValueError" in out
    # The test driver reaches it too, by namespace.
    survivor = distcore.get_actor("survivor", namespace="shared-ns")
    assert distcore.get(survivor.incr.remote(), timeout=30) == 13
    distcore.kill(survivor)


def test_non_detached_actor_dies_with_its_driver(start_cluster):
    ctx = start_cluster(num_cpus=2)
    creator = textwrap.dedent(
        """
        import sys
        import distcore

        distcore.init(address=sys.argv[1], namespace=sys.argv[2])

        @distcore.remote
        class Counter:
            def incr(self):
                return 1

        c = Counter.options(name="short_lived").remote()
        print("VALUE", distcore.get(c.incr.remote(), timeout=30))
        distcore.shutdown()
        """
    )
    assert "VALUE 1" in _run_driver(creator, ctx, "ns2")

    def gone():
        try:
            distcore.get_actor("short_lived", namespace="ns2")
        except ValueError:
            return True
        return False

    wait_for(gone, timeout=20, message="the named actor of a finished driver is still registered")


def test_get_actor_inside_a_task_uses_the_job_namespace(shared_cluster):
    c = Counter.options(name="seen_from_task").remote()

    @distcore.remote
    def lookup():
        return distcore.get(distcore.get_actor("seen_from_task").incr.remote())

    assert distcore.get(lookup.remote(), timeout=30) == 1
    distcore.kill(c)


def test_handle_inside_a_put_object(shared_cluster):
    c = Counter.remote()
    box = distcore.put({"counter": c})

    @distcore.remote
    def use(b):
        return distcore.get(b["counter"].incr.remote())

    assert distcore.get(use.remote(box), timeout=30) == 1
    assert distcore.get(distcore.get(box)["counter"].incr.remote(), timeout=30) == 2
