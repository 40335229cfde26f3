"""A running pipeline adapts to a cluster that other work fills: it shrinks, finishes, and grows back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import distcore
import distcore.data as dd

pytestmark = pytest.mark.usefixtures("shared_cluster")


@distcore.remote(num_cpus=1)
class Hog:
    def ready(self) -> bool:
        return True


def _slow(batch):
    time.sleep(0.2)
    return batch


def _slow_mib(batch):  # about 1 MiB out per block of 10 rows
    time.sleep(0.2)
    return {"id": batch["id"], "pad": np.zeros((len(batch["id"]), 13_000))}


def test_pipeline_finishes_when_other_work_takes_every_cpu_mid_run() -> None:
    ctx = dd.DataContext.get_current()
    ctx.task_start_timeout_s = 1.0
    ctx.memory_budget = 4 * 1024 * 1024  # a few blocks: the pipeline pauses while the consumer does
    hogs: list = []
    hogs_ready: list[float] = []

    def grab() -> None:  # another workload asks for both CPUs while the dataset runs
        hogs.extend(Hog.remote() for _ in range(2))
        distcore.get([h.ready.remote() for h in hogs], timeout=100)
        hogs_ready.append(time.monotonic())

    ds = dd.range(120, override_num_blocks=12).map_batches(_slow_mib)
    grabber = threading.Thread(target=grab, daemon=True)
    ids: list[int] = []
    try:
        start = time.monotonic()
        for i, batch in enumerate(ds.iter_batches(batch_size=None)):
            ids.extend(batch["id"].tolist())
            if i == 1:  # pause while the other work starts (the paused pipeline frees its CPUs)
                grabber.start()
                deadline = time.monotonic() + 30
                while not hogs_ready and time.monotonic() < deadline:
                    time.sleep(0.05)
        finished = time.monotonic()
        grabber.join(100)
        assert sorted(ids) == list(range(120))
        assert finished - start < 60
        # the hogs took the CPUs before the dataset ended, and the dataset shrank instead of waiting for them
        assert hogs_ready and hogs_ready[0] < finished
        assert "Shrank" in ds.stats()
    finally:
        for h in hogs:
            distcore.kill(h)


@pytest.mark.slow
def test_shrunk_operator_grows_back_when_cpus_free() -> None:
    from distcore.data._internal.executor import StreamingExecutor

    hogs = [Hog.remote() for _ in range(2)]
    try:
        assert distcore.get([h.ready.remote() for h in hogs], timeout=60) == [True, True]
        from distcore._private.testing import wait_for

        wait_for(lambda: distcore.available_resources().get("CPU", 0.0) < 1.0, timeout=30,
                 message="the hogs' CPUs never showed as taken")
        ctx = dd.DataContext.get_current()
        ex = StreamingExecutor(dd.range(40, override_num_blocks=10).map_batches(_slow)._plan, ctx).run_in_thread()
        try:
            op = ex.ops[0]
            first = ex.next_bundle(timeout=60)
            assert first is not None and op.starved and op.request_cpus == 0.0
            assert max(op.stats.tasks_started - op.stats.tasks_done, 0) <= 1  # one at a time while shrunk
            for h in hogs:
                distcore.kill(h)
            hogs = []
            wait_for(lambda: not op.starved, timeout=30, message="the operator never grew back")
            assert op.request_cpus == 1.0
            rows = first.rows
            while (b := ex.next_bundle(timeout=60)) is not None:
                rows += b.rows
            assert rows == 40
        finally:
            ex.shutdown()
    finally:
        for h in hogs:
            distcore.kill(h)

