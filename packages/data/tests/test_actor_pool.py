"""Actor-pool maps: callable classes, constructor args, autoscaling, the small-machine rule, fail-fast."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import distcore
import distcore.data as dd

pytestmark = pytest.mark.usefixtures("shared_cluster")


class AddOffset:
    def __init__(self, offset, scale=1):
        self.offset = offset
        self.scale = scale
        self.pid = os.getpid()
        self.created = time.time()

    def __call__(self, batch):
        return {"id": batch["id"] * self.scale + self.offset, "pid": np.full(len(batch["id"]), self.pid),
                "created": np.full(len(batch["id"]), self.created)}


def test_callable_class_with_constructor_args_matches_numpy() -> None:
    ds = dd.range(200, override_num_blocks=8).map_batches(
        AddOffset, fn_constructor_args=(5,), fn_constructor_kwargs={"scale": 2}, concurrency=2, batch_size=25)
    out = ds.to_pandas()
    assert sorted(out["id"].tolist()) == [i * 2 + 5 for i in range(200)]
    # each actor constructed its callable once: at most 2 distinct (pid, created) pairs
    assert len(set(zip(out["pid"], out["created"], strict=True))) <= 2
    assert "Actors: up to 2" in ds.stats()


class Slow:
    def __call__(self, batch):
        time.sleep(0.15)
        return {"pid": np.full(len(batch["id"]), os.getpid())}


@pytest.mark.slow  # waits for a pool to scale to 2 actors (a new worker process): ~7 s
def test_autoscaling_pool_grows_to_max_when_queue_is_long() -> None:
    # 2 CPUs, reads fused into the pool: the pool starts at 1 actor and grows to 2 under a long queue.
    ds = dd.range(40, override_num_blocks=20).map_batches(Slow, concurrency=(1, 2), batch_size=None)
    out = ds.to_pandas()
    assert len(out) == 40
    # the pool grew to its max (whether the new actor started before the work ran out depends on load)
    assert "Actors: up to 2" in ds.stats()
    assert 1 <= out["pid"].nunique() <= 2


def test_small_machine_read_then_pool_of_two_makes_progress() -> None:
    # On a 2-CPU cluster a pool of 2 one-CPU actors downstream of a read must not starve the read.
    ds = dd.range(100, override_num_blocks=10).map(lambda r: {"id": r["id"] + 1}).map_batches(
        AddOffset, fn_constructor_args=(0,), concurrency=2, num_cpus=1)
    assert sorted(r["id"] for r in ds.select_columns(["id"]).take_all()) == list(range(1, 101))


def test_pipeline_that_cannot_fit_fails_fast_naming_operator() -> None:
    ds = dd.range(10).map_batches(AddOffset, fn_constructor_args=(0,), concurrency=3, num_cpus=1)
    start = time.monotonic()
    with pytest.raises(dd.InsufficientResourcesError, match=r"MapBatches\(AddOffset\).*missing 1 CPU"):
        ds.take_all()
    with pytest.raises(dd.InsufficientResourcesError, match="GPU"):
        dd.range(10).map_batches(lambda b: b, num_gpus=1).take_all()
    assert time.monotonic() - start < 10


def test_task_map_after_a_pool_holding_every_cpu_fails_fast() -> None:
    ds = dd.range(10).map_batches(AddOffset, fn_constructor_args=(0,), concurrency=2).map(lambda r: r)
    with pytest.raises(dd.InsufficientResourcesError, match=r"Map\(<lambda>\)"):
        ds.take_all()


class Broken:
    def __init__(self, fail_in_init=False):
        if fail_in_init:
            raise RuntimeError("cannot load model")

    def __call__(self, batch):
        raise ValueError("bad batch in actor")


def test_udf_error_in_actor_names_operator() -> None:
    with pytest.raises(dd.UserCodeException, match=r"MapBatches\(Broken\).*bad batch in actor"):
        dd.range(10).map_batches(Broken, concurrency=1).take_all()


@pytest.mark.slow  # a dead actor's error takes a while to surface on a loaded machine
def test_constructor_error_names_operator() -> None:
    with pytest.raises(Exception, match=r"(?s)cannot load model.*MapBatches\(Broken\)"):
        dd.range(10).map_batches(Broken, fn_constructor_kwargs={"fail_in_init": True}, concurrency=1).take_all()


def test_callable_class_needs_actor_pool_and_valid_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        dd.range(3).map_batches(AddOffset, concurrency=0)
    with pytest.raises(ValueError, match="constructor"):
        dd.range(3).map_batches(lambda b: b, fn_constructor_args=(1,))
    with pytest.raises(ValueError, match="actor pool"):
        dd.range(3).map_batches(AddOffset, compute=dd.TaskPoolStrategy())


def test_task_concurrency_cap_and_map_with_class() -> None:
    ds = dd.range(30, override_num_blocks=6).map_batches(lambda b: b, concurrency=1)
    assert ds.count() == 30

    class Plus:
        def __init__(self, k):
            self.k = k

        def __call__(self, row):
            return {"id": row["id"] + self.k}

    assert [r["id"] for r in dd.range(5).map(Plus, fn_constructor_args=(10,), concurrency=1).take_all()] == \
        list(range(10, 15))


@distcore.remote(num_cpus=1)
class Hog:
    def ready(self):
        return True


def test_tasks_progress_when_other_actors_hold_every_cpu() -> None:
    # e.g. two train workers holding both CPUs while they iterate a dataset
    hogs = [Hog.remote() for _ in range(2)]
    try:
        assert distcore.get([h.ready.remote() for h in hogs], timeout=60) == [True, True]
        # The scenario needs the cluster's view to show both CPUs held before the dataset starts
        # (the executor decides once, at start; see the README's known gaps).
        from distcore._private.testing import wait_for

        wait_for(lambda: distcore.available_resources().get("CPU", 0.0) < 1.0, timeout=30,
                 message="the hogs' CPUs never showed as taken")
        ds = dd.range(100, override_num_blocks=4).map_batches(lambda b: {"id": b["id"] + 1})
        assert sorted(r["id"] for r in ds.take_all()) == list(range(1, 101))
    finally:
        for h in hogs:
            distcore.kill(h)


def test_pool_whose_actors_cannot_start_fails_naming_operator() -> None:
    hogs = [Hog.remote() for _ in range(2)]
    try:
        assert distcore.get([h.ready.remote() for h in hogs], timeout=60) == [True, True]
        dd.DataContext.get_current().wait_for_actors_timeout_s = 3
        with pytest.raises(dd.InsufficientResourcesError, match=r"MapBatches\(AddOffset\) could not start"):
            dd.range(10).map_batches(AddOffset, fn_constructor_args=(0,), concurrency=1).take_all()
    finally:
        for h in hogs:
            distcore.kill(h)


def test_pool_scales_down_to_min_after_idling() -> None:
    from distcore.data._internal.physical import ActorPoolMapOp

    op = ActorPoolMapOp("pool", [], [], cpus=1.0, gpus=0.0, remote_args={}, max_concurrency=None,
                        min_rows_per_bundle=None, min_bundle_bytes=0, max_block_bytes=1 << 30, min_size=1,
                        max_size=3, max_in_flight=2, scale_ratio=2.0)
    a, b = object(), object()
    op.actors, op.ready = {a: 0, b: 1}, {a, b}
    killed = []

    def kill(handle):
        killed.append(handle)
        op.actors.pop(handle)
        op.ready.discard(handle)

    op._kill = kill
    op._idle_since = time.monotonic() - 60
    op.poll(None)
    assert killed == []  # one actor is busy: not idle
    op.actors[b] = 0
    op.poll(None)  # becomes idle now
    assert killed == []
    op._idle_since = time.monotonic() - op.IDLE_S - 1
    op.poll(None)
    assert len(killed) == 1 and len(op.actors) == 1
    op._idle_since = time.monotonic() - 60
    op.poll(None)
    assert len(killed) == 1  # never below min_size
