"""A head that restarts: the control store recovers its tables, the cluster keeps its state.

Every test restarts the head process of a real multi-process cluster
(``Cluster.restart_head``) on the same address and session directory: the
new head reloads ``gcs.sqlite``; worker nodes, their workers and actors keep
running; the driver connected before keeps working.
"""

from __future__ import annotations

import threading
import time

import pytest

import distcore
from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.core_worker import gcs_client
from distcore._private.head_restart import kill_tree
from distcore.util import placement_group, placement_group_table
from distcore.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from distcore.util.state import list_jobs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@distcore.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def node(self) -> str:
        return distcore.get_runtime_context().get_node_id()


@distcore.remote
def where() -> str:
    return distcore.get_runtime_context().get_node_id()


def _kv(method: str, req):
    core = worker_state.core_worker()
    return core.gcs_call(method, req)


def test_head_sigkill_restart_keeps_cluster_state(cluster):
    cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=2, resources={"wn": 2})
    cluster.connect(namespace="hr")
    on_worker = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)

    counter = Counter.options(name="counter", lifetime="detached", scheduling_strategy=on_worker).remote()
    assert distcore.get([counter.inc.remote() for _ in range(2)], timeout=30) == [1, 2]
    assert distcore.get(counter.node.remote(), timeout=10) == worker.node_id
    assert _kv("KvPut", p.KvPut("app", "k", b"v", overwrite=True))
    pg = placement_group([{"wn": 1}], strategy="PACK")
    assert pg.wait(20)
    job_id = distcore.get_runtime_context().get_job_id()
    old_head = cluster.head.node_id
    address = cluster.address

    head = cluster.restart_head(allow_graceful=False)
    assert cluster.address == address and head.node_id != old_head

    # The detached actor on the worker node kept its process and state: the counter continues.
    assert distcore.get(counter.inc.remote(), timeout=30) == 3
    again = distcore.get_actor("counter", namespace="hr")
    assert distcore.get(again.inc.remote(), timeout=30) == 4
    # KV, jobs and placement groups survived.
    assert _kv("KvGet", p.KvKey("app", "k")) == b"v"
    assert job_id in {j.job_id for j in list_jobs()}
    assert placement_group_table(pg)["state"] == "CREATED"
    # New work runs, and the worker node is alive (the old head's record is dead, the new one alive).
    assert distcore.get(where.remote(), timeout=30) in {worker.node_id, head.node_id}
    assert distcore.get(where.options(scheduling_strategy=on_worker).remote(), timeout=30) == worker.node_id
    nodes = {n["NodeID"]: n for n in distcore.nodes()}
    assert nodes[worker.node_id]["Alive"]
    assert nodes[head.node_id]["Alive"]
    assert not nodes[old_head]["Alive"]
    distcore.kill(counter)


def test_graceful_restart_driver_calls_wait_and_head_actor_restarts(cluster):
    cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=1, resources={"wn": 1})
    cluster.connect(namespace="hr2")
    on_head = NodeAffinitySchedulingStrategy(cluster.head.node_id, soft=True)
    head_actor = Counter.options(max_restarts=1, max_task_retries=1, scheduling_strategy=on_head).remote()
    assert distcore.get(head_actor.inc.remote(), timeout=30) == 1
    assert distcore.get(head_actor.node.remote(), timeout=10) == cluster.head.node_id

    # A control-store call made while the head is down waits for it, then answers.
    result: dict = {}
    restarted = threading.Event()

    def call_during_restart() -> None:
        restarted.wait(20)
        result["nodes"] = distcore.nodes()

    caller = threading.Thread(target=call_during_restart)
    caller.start()
    old = cluster.head._process
    old.stop()  # graceful stop, then the head stays down a moment while the driver calls it
    restarted.set()
    time.sleep(1.0)
    from distcore._private.head_restart import restart_head_process

    process = restart_head_process(old, allow_graceful=True, dead_timeout_s=5.0, **cluster._head_start)
    from distcore.cluster_utils import NodeHandle

    cluster.head = NodeHandle(process)
    cluster.wait_for_nodes()
    caller.join(30)
    assert any(n["NodeID"] == worker.node_id and n["Alive"] for n in result["nodes"])

    # The actor on the old head node died with it and restarted (max_restarts=1): state is fresh.
    deadline = time.monotonic() + 30
    while True:
        try:
            value = distcore.get(head_actor.inc.remote(), timeout=10)
            break
        except distcore.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert value == 1


def test_driver_fails_clearly_when_head_stays_down(cluster, monkeypatch):
    cluster.add_node(num_cpus=1)
    cluster.connect()
    assert distcore.nodes()
    monkeypatch.setattr(gcs_client, "HEAD_RECONNECT_TIMEOUT_S", 1.5)
    kill_tree(cluster.head._process)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="head .* is unreachable"):
        distcore.nodes()
    assert time.monotonic() - start < 10


@distcore.remote
def length(data: bytes) -> int:
    return len(data)


def test_driver_on_the_head_follows_the_restarted_heads_new_node_id(cluster):
    cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=1, resources={"wn": 1})
    cluster.connect(namespace="hr3")
    ctx = distcore.get_runtime_context()
    assert ctx.get_node_id() == cluster.head.node_id
    old_head = cluster.head.node_id

    head = cluster.restart_head(allow_graceful=False)
    deadline = time.monotonic() + 15
    while ctx.get_node_id() != head.node_id:
        assert ctx.get_node_id() == old_head, "the driver's node id became neither the old nor the new head's"
        assert time.monotonic() < deadline, "the driver kept the dead head's node id"
        time.sleep(0.1)

    # Its new puts live on the new head's node: a task on the worker node fetches one from there.
    ref = distcore.put(b"x" * 200_000)
    on_worker = NodeAffinitySchedulingStrategy(worker.node_id, soft=False)
    assert distcore.get(length.options(scheduling_strategy=on_worker).remote(ref), timeout=30) == 200_000
    # Scheduling on "this node" names a live node.
    here = NodeAffinitySchedulingStrategy(ctx.get_node_id(), soft=False)
    assert distcore.get(where.options(scheduling_strategy=here).remote(), timeout=30) == head.node_id


def test_finished_tasks_are_still_listed_after_a_head_restart(cluster):
    from distcore.util.state import list_tasks

    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.connect(namespace="hr4")
    job_id = distcore.get_runtime_context().get_job_id()
    assert distcore.get([length.remote(b"ab") for _ in range(5)], timeout=30) == [2] * 5

    def finished() -> set[str]:
        rows = list_tasks(filters=[("job_id", "=", job_id), ("name", "=", "length")], limit=100,
                          raise_on_missing_output=False)
        return {r.task_id for r in rows if r.state == "FINISHED"}

    deadline = time.monotonic() + 15
    while len(before := finished()) < 5:
        assert time.monotonic() < deadline, before
        time.sleep(0.2)
    cluster.restart_head(allow_graceful=False)
    assert finished() == before  # the new head reloaded the ended rows from gcs.sqlite
