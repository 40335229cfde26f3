"""Ray-style walkthrough programs run unchanged after `import distcore as ray`.

Each test is a small program written the way Ray's core walkthrough teaches
(tasks, actors, objects, placement groups, generators, async actors); only
the import differs.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import distcore as ray
from distcore.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from distcore.util.scheduling_strategies import PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import os

    os.environ["DISTCORE_TMPDIR"] = str(tmp_path_factory.mktemp("walkthrough"))
    ray.init(num_cpus=4)
    yield
    ray.shutdown()
    os.environ.pop("DISTCORE_TMPDIR")


def test_tasks(cluster):
    @ray.remote
    def square(x):
        return x * x

    futures = [square.remote(i) for i in range(4)]
    assert ray.get(futures) == [0, 1, 4, 9]

    @ray.remote(num_returns=3)
    def three():
        return 1, 2, 3

    a, b, c = three.remote()
    assert ray.get([a, b, c]) == [1, 2, 3]

    @ray.remote
    def slow(i):
        time.sleep(i / 10)
        return i

    refs = [slow.remote(i) for i in range(4)]
    ready, not_ready = ray.wait(refs, num_returns=2, timeout=10)
    assert len(ready) == 2 and len(not_ready) == 2


def test_passing_objects(cluster):
    @ray.remote
    def echo(x):
        return x

    obj = ray.put(np.arange(1_000_000))
    assert int(ray.get(echo.remote(obj)).sum()) == int(np.arange(1_000_000).sum())
    nested = ray.get(echo.remote([obj]))
    assert isinstance(nested[0], ray.ObjectRef)
    assert ray.get(nested[0]).shape == (1_000_000,)


def test_actors(cluster):
    @ray.remote
    class Counter:
        def __init__(self):
            self.value = 0

        def increment(self):
            self.value += 1
            return self.value

        def get_counter(self):
            return self.value

    counters = [Counter.remote() for _ in range(3)]
    ray.get([c.increment.remote() for c in counters])
    assert ray.get([c.get_counter.remote() for c in counters]) == [1, 1, 1]

    @ray.remote
    def use(counter):
        return ray.get(counter.increment.remote())

    assert ray.get(use.remote(counters[0])) == 2


def test_async_actor(cluster):
    @ray.remote
    class AsyncActor:
        async def run(self):
            await asyncio.sleep(0.5)
            return 1

    actor = AsyncActor.remote()
    ray.get(actor.run.remote())  # warm up: the actor is created
    start = time.monotonic()
    assert sum(ray.get([actor.run.remote() for _ in range(10)])) == 10
    assert time.monotonic() - start < 3.0  # concurrent, not 10 x 0.5 s


def test_generators(cluster):
    @ray.remote(num_returns="streaming")
    def gen(n):
        yield from range(n)

    assert [ray.get(ref) for ref in gen.remote(5)] == [0, 1, 2, 3, 4]

    @ray.remote(num_returns="dynamic")
    def dyn(n):
        for i in range(n):
            yield i * 10

    refs = ray.get(dyn.remote(3))
    assert [ray.get(r) for r in refs] == [0, 10, 20]


def test_placement_groups(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    ray.get(pg.ready(), timeout=30)
    assert placement_group_table(pg)["state"] == "CREATED"

    @ray.remote(num_cpus=1)
    def in_bundle():
        return ray.get_runtime_context().get_assigned_resources()

    strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=1)
    assert ray.get(in_bundle.options(scheduling_strategy=strategy).remote())["CPU"] == 1
    remove_placement_group(pg)


def test_errors(cluster):
    @ray.remote
    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        ray.get(fail.remote())
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(fail.remote())
