"""Resource accounting on a real cluster: totals, what is available while tasks
run, fractional CPUs, custom resources, fake GPUs and infeasible demands."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import distcore
from distcore._private.testing import available as _available
from distcore._private.testing import wait_available as _wait_available
from distcore._private.testing import wait_for
from distcore.exceptions import TaskCancelledError

pytestmark = pytest.mark.integration

BASELINE = {"CPU": 4.0, "GPU": 2.0, "custom": 4.0}


@pytest.fixture
def cluster(shared_cluster):
    _wait_available(BASELINE)
    yield shared_cluster
    _wait_available(BASELINE)


def _rendezvous(directory: str, name: str, parties: int, timeout: float = 30.0) -> bool:
    """Announce ``name`` in ``directory``; True once ``parties`` tasks are there at once."""
    open(os.path.join(directory, name), "w").close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(os.listdir(directory)) >= parties:
            return True
        time.sleep(0.02)
    return False


@distcore.remote
def meet(directory: str, name: str, parties: int) -> dict:
    together = _rendezvous(directory, name, parties)
    time.sleep(0.2)  # let the others see everyone before anyone leaves
    return {
        "together": together,
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_ids": distcore.get_gpu_ids(),
        "assigned": distcore.get_runtime_context().get_assigned_resources(),
        "accelerators": distcore.get_runtime_context().get_accelerator_ids(),
    }


@distcore.remote
def interval(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------- totals and availability


def test_cluster_resources_reports_the_node(cluster):
    total = distcore.cluster_resources()
    assert total["CPU"] == 4.0
    assert total["GPU"] == 2.0
    assert total["custom"] == 4.0
    assert total.get("memory", 0) > 0
    assert _available("CPU", "GPU", "custom") == BASELINE


def test_available_cpu_drops_while_a_task_runs_and_recovers(cluster):
    ref = interval.options(num_cpus=2).remote(4.0)
    _wait_available({"CPU": 2.0}, timeout=10)
    assert distcore.cluster_resources()["CPU"] == 4.0  # totals do not move
    distcore.get(ref, timeout=30)
    _wait_available({"CPU": 4.0}, timeout=10)


def test_available_resources_count_gpus_and_custom_in_use(cluster):
    ref = interval.options(num_cpus=0, num_gpus=1, resources={"custom": 3}).remote(4.0)
    _wait_available({"CPU": 4.0, "GPU": 1.0, "custom": 1.0}, timeout=10)
    distcore.get(ref, timeout=30)
    _wait_available(BASELINE)


def test_memory_requests_are_accounted(cluster):
    total = distcore.cluster_resources()["memory"]
    ref = interval.options(num_cpus=0, memory=2**30).remote(4.0)
    wait_for(lambda: distcore.available_resources().get("memory") == total - 2**30, 10,
             message="available memory did not drop by the task's request")
    distcore.get(ref, timeout=30)
    wait_for(lambda: distcore.available_resources().get("memory") == total, 10)


def test_actor_holds_its_resources_for_its_lifetime(cluster):
    @distcore.remote(num_cpus=1, resources={"custom": 1})
    class Holder:
        def ping(self):
            return "pong"

    actor = Holder.remote()
    assert distcore.get(actor.ping.remote(), timeout=30) == "pong"
    _wait_available({"CPU": 3.0, "custom": 3.0}, timeout=10)
    distcore.kill(actor)
    _wait_available(BASELINE)


def test_default_actor_holds_no_cpu_while_it_lives(cluster):
    @distcore.remote
    class Idle:
        def ping(self):
            return "pong"

    actor = Idle.remote()
    assert distcore.get(actor.ping.remote(), timeout=30) == "pong"
    time.sleep(1.0)  # a heartbeat
    assert _available("CPU") == {"CPU": 4.0}
    distcore.kill(actor)


def test_assigned_resources_inside_a_task(cluster, tmp_path):
    info = distcore.get(meet.options(num_cpus=0.5, resources={"custom": 2}).remote(str(tmp_path), "a", 1), timeout=30)
    assert info["assigned"] == {"CPU": 0.5, "custom": 2.0}


def test_tasks_beyond_the_cpus_queue(cluster):
    refs = [interval.options(num_cpus=2).remote(0.5) for _ in range(4)]
    assert _max_overlap(distcore.get(refs, timeout=60)) <= 2


# --------------------------------------------------------------------------- custom and fractional


def test_custom_resources_gate_concurrency(cluster):
    refs = [interval.options(num_cpus=0, resources={"custom": 2}).remote(0.5) for _ in range(4)]
    assert _max_overlap(distcore.get(refs, timeout=60)) <= 2


def test_fractional_cpus_share_one_cpu(start_cluster, tmp_path):
    start_cluster(num_cpus=1)
    refs = [meet.options(num_cpus=0.25).remote(str(tmp_path), f"t{i}", 4) for i in range(4)]
    results = distcore.get(refs, timeout=90)
    assert all(r["together"] for r in results), "the four 0.25-CPU tasks did not run at the same time"
    assert all(r["assigned"] == {"CPU": 0.25} for r in results)


def test_fractional_cpus_do_not_overcommit(start_cluster):
    start_cluster(num_cpus=1)
    refs = [interval.options(num_cpus=0.5).remote(0.5) for _ in range(4)]
    assert _max_overlap(distcore.get(refs, timeout=90)) <= 2


# --------------------------------------------------------------------------- fake GPUs


def test_whole_gpu_tasks_get_distinct_devices(cluster, tmp_path):
    refs = [meet.options(num_cpus=0, num_gpus=1).remote(str(tmp_path), f"g{i}", 2) for i in range(2)]
    results = distcore.get(refs, timeout=60)
    assert all(r["together"] for r in results)
    assert sorted(r["cuda"] for r in results) == ["0", "1"]
    assert sorted(tuple(r["gpu_ids"]) for r in results) == [(0,), (1,)]
    for r in results:
        assert r["accelerators"] == {"GPU": [r["cuda"]]}
        assert r["assigned"]["GPU"] == 1.0


def test_two_gpu_task_sees_both_devices(cluster, tmp_path):
    info = distcore.get(meet.options(num_cpus=0, num_gpus=2).remote(str(tmp_path), "a", 1), timeout=30)
    assert info["cuda"] == "0,1"
    assert info["gpu_ids"] == [0, 1]


def test_half_gpu_tasks_share_one_device(cluster, tmp_path):
    refs = [meet.options(num_cpus=0, num_gpus=0.5).remote(str(tmp_path), f"h{i}", 2) for i in range(2)]
    results = distcore.get(refs, timeout=60)
    assert all(r["together"] for r in results)
    assert results[0]["cuda"] == results[1]["cuda"]
    assert results[0]["gpu_ids"] == results[1]["gpu_ids"] and len(results[0]["gpu_ids"]) == 1
    # The other device stays whole and free.
    _wait_available({"GPU": 2.0})


def test_gpu_tasks_queue_when_devices_are_taken(cluster):
    refs = [interval.options(num_cpus=0, num_gpus=1).remote(0.5) for _ in range(4)]
    assert _max_overlap(distcore.get(refs, timeout=60)) <= 2


def test_task_without_gpus_sees_no_devices(cluster, tmp_path):
    # Run GPU tasks first so that reused workers would leak their devices.
    distcore.get([meet.options(num_cpus=0, num_gpus=1).remote(str(tmp_path), f"g{i}", 1) for i in range(2)], timeout=60)
    results = distcore.get([meet.options(num_cpus=1).remote(str(tmp_path), f"c{i}", 1) for i in range(4)], timeout=60)
    for r in results:
        assert r["cuda"] == ""
        assert r["gpu_ids"] == []


def test_gpu_actor_keeps_its_device_across_calls(cluster):
    @distcore.remote(num_cpus=0, num_gpus=1)
    class GpuActor:
        def devices(self):
            return os.environ.get("CUDA_VISIBLE_DEVICES"), distcore.get_gpu_ids()

    actor = GpuActor.remote()
    first = distcore.get(actor.devices.remote(), timeout=30)
    assert first[0] in ("0", "1") and first[1] == [int(first[0])]
    assert distcore.get(actor.devices.remote(), timeout=30) == first
    _wait_available({"GPU": 1.0})
    distcore.kill(actor)


# --------------------------------------------------------------------------- infeasible


def test_infeasible_task_is_reported_not_run(cluster, capfd):
    ref = interval.options(num_cpus=64).remote(0)
    ready, _ = distcore.wait([ref], timeout=3)
    assert ready == []
    err: list[str] = []

    def warned() -> bool:
        err.append(capfd.readouterr().err)
        return "cannot be scheduled" in "".join(err)

    wait_for(warned, 10, message="no infeasible-task warning was printed")
    assert "CPU" in "".join(err) and "64" in "".join(err)
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=30)


def test_infeasible_custom_resource_is_reported(tmp_path):
    """A driver whose task needs a resource no node has prints the demand and why."""
    script = textwrap.dedent(
        """
        import distcore
        distcore.init(num_cpus=1)

        @distcore.remote(resources={"tpu": 1})
        def f():
            return 1

        ready, _ = distcore.wait([f.remote()], timeout=3)
        print("READY", len(ready), flush=True)
        distcore.shutdown()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
        env={**os.environ, "DISTCORE_TMPDIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert "READY 0" in out.stdout
    assert "tpu" in out.stderr
    assert "cannot be scheduled" in out.stderr


@distcore.remote(num_cpus=1, resources={"custom": 4})
def holds_all_custom_and_waits() -> tuple[float, float]:
    start = time.time()
    distcore.get(interval.options(num_cpus=1).remote(2.0))
    return start, time.time()


def test_task_blocked_in_get_lends_only_its_cpus(cluster):
    outer = holds_all_custom_and_waits.remote()
    time.sleep(0.5)
    other = interval.options(num_cpus=0, resources={"custom": 1}).remote(0)
    (outer_start, outer_end), (other_start, other_end) = distcore.get([outer, other], timeout=60)
    # While the outer task waits for its child it gives back its CPU, not its custom resource.
    assert _max_overlap([(outer_start, outer_end), (other_start, other_end)]) == 1


def test_blocked_tasks_let_their_children_run(start_cluster):
    start_cluster(num_cpus=1)

    @distcore.remote(num_cpus=1)
    def parent(depth):
        return 1 if depth == 0 else 1 + distcore.get(parent.remote(depth - 1))

    # One CPU and a chain of three nested tasks: each parent lends its CPU to its child.
    assert distcore.get(parent.remote(3), timeout=60) == 4
