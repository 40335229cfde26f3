"""Objects moving between nodes: node-to-node pulls, dedup, failures, locality."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import distcore
from distcore._private.node_manager.object_transfer import PullObject
from distcore._private.rpc import RpcClient
from distcore.exceptions import ObjectLostError

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@distcore.remote
def node_of_arg(arr: np.ndarray) -> tuple[str, int]:
    return distcore.get_runtime_context().get_node_id(), int(arr[-1])


def _call(cluster, address: str, method: str, request=None):
    async def go():
        client = RpcClient(address, cluster.auth_token)
        try:
            return await client.call("NodeManager", method, request, timeout=30)
        finally:
            await client.close()

    return asyncio.run(go())


def _stats(cluster, node) -> dict:
    return dict(_call(cluster, node.address, "GetNodeStats").object_store)


def _wait_for_free_cpu(cluster, node, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _call(cluster, node.address, "GetNodeStats").available.get("CPU", 0) < 1:
        assert time.monotonic() < deadline, f"node {node.node_id[:8]} kept its CPU busy"
        time.sleep(0.02)


def test_task_runs_on_the_node_holding_its_large_argument(cluster):
    head = cluster.add_node(num_cpus=1, object_store_memory=300 * MB)
    b = cluster.add_node(num_cpus=1, resources={"b": 1}, object_store_memory=300 * MB)
    cluster.connect()

    @distcore.remote(resources={"b": 1})
    def make() -> np.ndarray:
        return np.arange(100 * MB // 8, dtype=np.int64)  # 100 MB, sealed in node B's store

    arr = make.remote()
    distcore.wait([arr], timeout=60)
    # Free to run anywhere, and the driver's node (the head) has room: it runs on B once B has room.
    for _ in range(3):
        _wait_for_free_cpu(cluster, b)  # the previous task's lease is back
        where, last = distcore.get(node_of_arg.remote(arr), timeout=60)
        assert (where, last) == (b.node_id, 100 * MB // 8 - 1)
    assert _stats(cluster, head)["transfer_pulls"] == 0  # nothing moved
    # A small argument does not pull a task away from the driver's node.
    _wait_for_free_cpu(cluster, b)
    small = distcore.put(np.ones(1000, dtype=np.int64))
    where, _ = distcore.get(node_of_arg.remote(small), timeout=60)
    assert where == head.node_id


def test_concurrent_pulls_of_one_object_share_one_transfer(cluster):
    head = cluster.add_node(num_cpus=4, object_store_memory=600 * MB)
    b = cluster.add_node(num_cpus=1, resources={"b": 1}, object_store_memory=600 * MB)
    cluster.connect()

    @distcore.remote(resources={"b": 1})
    def make() -> np.ndarray:
        return np.full(200 * MB, 7, dtype=np.uint8)

    @distcore.remote(num_cpus=1)
    def read_at(start_at: float, boxed: list) -> int:
        import time

        time.sleep(max(0.0, start_at - time.time()))
        return int(distcore.get(boxed[0])[-1])  # nested ref: read here, not moved by locality

    ref = make.remote()
    distcore.wait([ref], timeout=60)
    on_head = distcore.util.scheduling_strategies.NodeAffinitySchedulingStrategy(head.node_id, soft=False)
    start_at = time.time() + 3.0
    readers = [read_at.options(scheduling_strategy=on_head).remote(start_at, [ref]) for _ in range(4)]
    assert distcore.get(readers, timeout=60) == [7] * 4
    stats = _stats(cluster, head)
    assert stats["transfer_pulls"] == 1, stats
    assert stats["transfer_pulls_joined"] >= 1, stats  # the others waited for that transfer
    assert stats["transfer_bytes_in"] >= 200 * MB
    assert stats["transfer_in_flight"] == 0
    assert _stats(cluster, b)["transfer_bytes_out"] == stats["transfer_bytes_in"]


def test_spilled_object_is_restored_and_sent(cluster):
    head = cluster.add_node(num_cpus=1, object_store_memory=300 * MB)
    cluster.add_node(num_cpus=1, resources={"b": 1}, object_store_memory=150 * MB)
    cluster.connect()

    @distcore.remote(resources={"b": 1})
    def make(value: int) -> np.ndarray:
        return np.full(100 * MB, value, dtype=np.uint8)

    first = make.remote(1)
    distcore.wait([first], timeout=60)
    second = make.remote(2)  # B's store holds one: the first is spilled to disk
    distcore.wait([second], timeout=60)
    assert int(distcore.get(first, timeout=60)[-1]) == 1
    assert int(distcore.get(second, timeout=60)[-1]) == 2
    assert _stats(cluster, head)["transfer_pulls"] == 2


def test_pull_from_a_dead_node_raises_object_lost_naming_both_nodes(cluster):
    head = cluster.add_node(num_cpus=1, object_store_memory=300 * MB)
    b = cluster.add_node(num_cpus=1, resources={"b": 1}, object_store_memory=300 * MB)
    cluster.connect()

    @distcore.remote(resources={"b": 1}, max_retries=0)  # not recomputed: the copy on B is the only one
    def make() -> np.ndarray:
        return np.ones(50 * MB, dtype=np.uint8)

    ref = make.remote()
    distcore.wait([ref], timeout=60)
    cluster.remove_node(b, allow_graceful=False)
    # The head's node manager, asked to pull it from the dead node, says which copy is gone and where to.
    with pytest.raises(ObjectLostError) as info:
        _call(cluster, head.address, "PullObject", PullObject(ref.hex(), b.node_id))
    text = str(info.value)
    assert ref.hex() in text and b.node_id[:8] in text and head.node_id[:8] in text, text
    with pytest.raises(ObjectLostError):  # and a get fails with it (or a subclass), never hangs
        distcore.get(ref, timeout=60)
    stats = _stats(cluster, head)
    assert stats["transfer_in_flight"] == 0
    assert stats["num_objects"] == 0, stats  # the aborted copy left nothing behind
