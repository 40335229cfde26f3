"""Several nodes as separate process trees on one machine."""

from __future__ import annotations

import time

import numpy as np
import pytest

import distcore
from distcore.util import placement_group, remove_placement_group
from distcore.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

pytestmark = pytest.mark.integration


@distcore.remote
def node_of(delay: float = 0.0) -> str:
    time.sleep(delay)
    return distcore.get_runtime_context().get_node_id()


@distcore.remote
def meet_then_report(barrier: str, parties: int) -> str:
    """Wait until ``parties`` tasks have arrived, then say where this one ran."""
    import os
    import uuid

    os.makedirs(barrier, exist_ok=True)
    open(os.path.join(barrier, uuid.uuid4().hex), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(barrier)) < parties and time.monotonic() < deadline:
        time.sleep(0.02)
    return distcore.get_runtime_context().get_node_id()


@distcore.remote
class Where:
    def node(self) -> str:
        return distcore.get_runtime_context().get_node_id()


def three_nodes(cluster):
    head = cluster.add_node(num_cpus=1)
    a = cluster.add_node(num_cpus=1, resources={"a": 1})
    b = cluster.add_node(num_cpus=1, resources={"b": 1})
    cluster.connect()
    return head, a, b


def test_tasks_and_actors_spread_over_three_nodes(cluster, tmp_path):
    head, a, b = three_nodes(cluster)
    assert distcore.cluster_resources()["CPU"] == 3
    # Three small tasks that all run at once (they meet at a barrier): packed
    # by default, but SPREAD must give each its own node.
    barrier = str(tmp_path / "barrier")
    spread = meet_then_report.options(scheduling_strategy="SPREAD", num_cpus=0.25)
    seen = distcore.get([spread.remote(barrier, 3) for _ in range(3)], timeout=120)
    assert set(seen) == {head.node_id, a.node_id, b.node_id}
    assert distcore.get(node_of.options(resources={"b": 1}).remote()) == b.node_id
    actor = Where.options(resources={"a": 1}).remote()
    assert distcore.get(actor.node.remote()) == a.node_id
    pinned = node_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(b.node_id, soft=False))
    assert distcore.get(pinned.remote()) == b.node_id


def test_placement_group_strict_spread_across_nodes(cluster):
    three_nodes(cluster)
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert distcore.get(pg.ready(), timeout=30)
    nodes = {
        distcore.get(node_of.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote())
        for i in range(3)
    }
    assert len(nodes) == 3
    remove_placement_group(pg)


def test_large_object_moves_between_nodes(cluster):
    cluster.add_node(num_cpus=1, object_store_memory=400 * 1024 * 1024)
    cluster.add_node(num_cpus=1, resources={"far": 1}, object_store_memory=400 * 1024 * 1024)
    cluster.connect()

    @distcore.remote(resources={"far": 1})
    def make() -> np.ndarray:
        return np.arange(25_000_000, dtype=np.int64)  # 200 MB on the far node

    value = distcore.get(make.remote(), timeout=120)
    assert value.shape == (25_000_000,)
    assert int(value[-1]) == 24_999_999

    @distcore.remote(resources={"far": 1})
    def total(arr: np.ndarray) -> int:
        return int(arr.sum())

    local = distcore.put(np.ones(10_000_000, dtype=np.uint8))  # driver's node to the far node
    assert distcore.get(total.remote(local), timeout=120) == 10_000_000


def test_removed_node_leaves_the_cluster(cluster):
    cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=2)
    cluster.connect()
    assert distcore.cluster_resources()["CPU"] == 3
    cluster.remove_node(worker)
    deadline = time.monotonic() + 15
    while distcore.cluster_resources().get("CPU") != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert distcore.cluster_resources()["CPU"] == 1
    dead = [n for n in distcore.nodes() if not n["Alive"]]
    assert [n["NodeID"] for n in dead] == [worker.node_id]


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident memory) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "VmHWM")}


def _reset_peak(pid: int) -> None:
    try:  # Linux >= 4.0: "5" resets VmHWM to the current RSS
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak since the start is compared, which only makes the check stricter


def test_500mb_object_streams_between_nodes_in_bounded_memory(cluster):
    size = 500 * 1024 * 1024
    head = cluster.add_node(num_cpus=1, object_store_memory=1200 * 1024 * 1024)
    far = cluster.add_node(num_cpus=1, resources={"far": 1}, object_store_memory=1200 * 1024 * 1024)
    cluster.connect()

    @distcore.remote(resources={"far": 1})
    def make() -> np.ndarray:
        arr = np.full(size, 3, dtype=np.uint8)
        arr[::4096] = 5  # one marked byte per page
        return arr

    ref = make.remote()
    distcore.wait([ref], timeout=120)
    managers = {"head": head.pid, "far": far.pid}
    base = {}
    for name, pid in managers.items():
        _reset_peak(pid)
        base[name] = _memory_kib(pid)["VmRSS"]
    start = time.monotonic()
    value = distcore.get(ref, timeout=120)  # the head's node manager pulls it from the far node's
    elapsed = time.monotonic() - start
    assert value.nbytes == size
    assert int(value[::4096].sum()) == 5 * (size // 4096)
    assert int(value[1::4096].sum()) == 3 * (size // 4096)
    for name, pid in managers.items():
        grown_mib = (_memory_kib(pid)["VmHWM"] - base[name]) / 1024
        assert grown_mib < 200, f"{name} node manager's peak RSS grew {grown_mib:.0f} MiB moving 500 MB"
    assert elapsed < 60, f"moving 500 MB took {elapsed:.1f} s"
