"""Whole nodes dying: lineage reconstruction, task retries, actor restarts, placement groups.

Every test kills a worker node's process tree with SIGKILL
(``cluster.remove_node(node, allow_graceful=False)``), as a crash would, and
counts task executions through a file the tasks append to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import distcore
from distcore.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ObjectLostError,
    ObjectReconstructionFailedError,
)
from distcore.util import placement_group, placement_group_table, remove_placement_group
from distcore.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)
from distcore.util.state import get_actor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

N = 2_000_000  # int64s: 16 MB, so returns live in the object store, not inline


def _node_id() -> str:
    return distcore.get_runtime_context().get_node_id()


def _log(path, tag: str) -> None:
    with open(path, "a") as f:
        f.write(f"{tag} {_node_id()}\n")


def _runs(path, tag: str | None = None) -> list[str]:
    """Node ids of the recorded executions (of ``tag`` only, if given)."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [node for t, node in rows if tag is None or t == tag]


def _on(node, soft: bool = True) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node.node_id, soft=soft)


def two_workers(cluster):
    """A head that runs nothing, and two worker nodes that can run the same tasks."""
    cluster.add_node(num_cpus=0)
    b = cluster.add_node(num_cpus=1, resources={"w": 1})
    c = cluster.add_node(num_cpus=1, resources={"w": 1})
    cluster.connect()
    return b, c


def _wait_dead(node_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = next(n for n in distcore.nodes() if n["NodeID"] == node_id)
        if not row["Alive"]:
            return row
        time.sleep(0.05)
    raise AssertionError(f"node {node_id[:8]} was not marked dead within {timeout} s")


# ---------------------------------------------------------------- objects


def test_lost_return_is_reconstructed_on_another_node(cluster, tmp_path):
    b, c = two_workers(cluster)
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=1)
    def make():
        _log(log, "make")
        return np.full(N, 7, dtype=np.int64)

    ref = make.options(scheduling_strategy=_on(b)).remote()
    assert distcore.wait([ref], timeout=30)[0] == [ref]  # done, and never copied off node B
    assert _runs(log) == [b.node_id]

    cluster.remove_node(b, allow_graceful=False)
    value = distcore.get(ref, timeout=45)
    assert value.shape == (N,) and int(value.sum()) == 7 * N
    assert _runs(log) == [b.node_id, c.node_id]  # re-run once, on the surviving node


def test_lost_objects_are_recomputed_eagerly_once_the_node_is_dead(cluster, tmp_path):
    b, c = two_workers(cluster)
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=1)
    def make(i):
        _log(log, "make")
        return np.full(N, i, dtype=np.int64)

    refs = []
    for i in range(2):  # one after the other, so that both run on B (a soft affinity)
        refs.append(make.options(scheduling_strategy=_on(b)).remote(i))
        distcore.wait(refs[-1:], timeout=30)
    assert _runs(log) == [b.node_id] * 2
    cluster.remove_node(b, allow_graceful=False)
    _wait_dead(b.node_id, timeout=10)
    deadline = time.monotonic() + 20
    while len(_runs(log)) < 4:  # the owner re-runs both without being asked
        assert time.monotonic() < deadline, _runs(log)
        time.sleep(0.05)
    assert [int(v[0]) for v in distcore.get(refs, timeout=30)] == [0, 1]
    assert _runs(log) == [b.node_id] * 2 + [c.node_id] * 2


def test_lost_argument_of_a_task_is_reconstructed(cluster, tmp_path):
    b, c = two_workers(cluster)
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=1)
    def make():
        _log(log, "make")
        return np.full(N, 2, dtype=np.int64)

    @distcore.remote  # holds no "w": the re-run of make needs C's (a blocked task lends only its CPUs)
    def total(x) -> int:
        return int(x.sum())

    ref = make.options(scheduling_strategy=_on(b)).remote()
    distcore.wait([ref], timeout=30)
    cluster.remove_node(b, allow_graceful=False)
    # The worker on C finds no copy of its argument and has the owner recompute it.
    assert distcore.get(total.options(scheduling_strategy=_on(c, soft=False)).remote(ref), timeout=45) == 2 * N
    assert _runs(log) == [b.node_id, c.node_id]


def test_chain_with_freed_intermediates_is_reconstructed_recursively(cluster, tmp_path):
    b, c = two_workers(cluster)
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=2)
    def first():
        _log(log, "first")
        return np.ones(N, dtype=np.int64)

    @distcore.remote(resources={"w": 1}, max_retries=2)
    def add_one(x):
        _log(log, "add_one")
        return x + 1

    a_ref = first.options(scheduling_strategy=_on(b)).remote()
    b_ref = add_one.options(scheduling_strategy=_on(b)).remote(a_ref)
    c_ref = add_one.options(scheduling_strategy=_on(b)).remote(b_ref)
    distcore.wait([c_ref], timeout=30)
    del a_ref, b_ref  # their values are freed; their lineage stays while c_ref lives
    assert _runs(log) == [b.node_id] * 3

    cluster.remove_node(b, allow_graceful=False)
    value = distcore.get(c_ref, timeout=45)
    assert int(value.sum()) == 3 * N
    assert _runs(log, "first") == [b.node_id, c.node_id]
    assert _runs(log, "add_one") == [b.node_id, b.node_id, c.node_id, c.node_id]


def test_chain_whose_intermediates_are_all_lost_is_reconstructed_from_its_start(cluster, tmp_path):
    b, c = two_workers(cluster)  # C has one "w": a re-run waiting for its lost argument must not hold it
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=2)
    def first():
        _log(log, "first")
        return np.ones(N, dtype=np.int64)

    @distcore.remote(resources={"w": 1}, max_retries=2)
    def add_one(x):
        _log(log, "add_one")
        return x + 1

    a_ref = first.options(scheduling_strategy=_on(b)).remote()
    b_ref = add_one.options(scheduling_strategy=_on(b)).remote(a_ref)
    c_ref = add_one.options(scheduling_strategy=_on(b)).remote(b_ref)
    distcore.wait([c_ref], timeout=30)
    cluster.remove_node(b, allow_graceful=False)
    assert int(distcore.get(c_ref, timeout=45).sum()) == 3 * N  # at once: before the head declares B dead
    assert [int(v.sum()) for v in distcore.get([a_ref, b_ref], timeout=30)] == [N, 2 * N]
    assert _runs(log, "first") == [b.node_id, c.node_id]
    assert _runs(log, "add_one") == [b.node_id, b.node_id, c.node_id, c.node_id]


def test_max_retries_zero_is_not_reconstructed(cluster, tmp_path):
    b, _ = two_workers(cluster)
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=0)
    def make():
        _log(log, "make")
        return np.zeros(N, dtype=np.int64)

    ref = make.options(scheduling_strategy=_on(b)).remote()
    distcore.wait([ref], timeout=30)
    cluster.remove_node(b, allow_graceful=False)
    with pytest.raises(ObjectReconstructionFailedError, match="max_retries=0") as info:
        distcore.get(ref, timeout=30)
    assert info.value.object_id == ref.hex()
    assert len(_runs(log)) == 1


def test_put_object_lost_with_its_node_names_the_owner(cluster):
    b, _ = two_workers(cluster)

    @distcore.remote(resources={"w": 1})
    def put_big():
        return [distcore.put(np.ones(N, dtype=np.int64))]  # owned by this worker, stored on its node

    [inner] = distcore.get(put_big.options(scheduling_strategy=_on(b, soft=False)).remote(), timeout=30)
    owner = inner.owner_address()
    assert owner.node_id == b.node_id
    cluster.remove_node(b, allow_graceful=False)
    with pytest.raises(ObjectLostError) as info:
        distcore.get(inner, timeout=30)
    assert owner.target in str(info.value)
    assert info.value.object_id == inner.hex()


def test_actor_task_return_is_not_reconstructed(cluster):
    b, _ = two_workers(cluster)

    @distcore.remote(resources={"w": 1})
    class Maker:
        def make(self):
            return np.ones(N, dtype=np.int64)

    actor = Maker.options(scheduling_strategy=_on(b, soft=False)).remote()
    ref = actor.make.remote()
    distcore.wait([ref], timeout=30)
    cluster.remove_node(b, allow_graceful=False)
    with pytest.raises(ObjectReconstructionFailedError, match="actor task"):
        distcore.get(ref, timeout=30)


# ---------------------------------------------------------------- tasks, actors, placement groups


def test_task_running_on_a_dead_node_is_retried_elsewhere(cluster, tmp_path):
    b, c = two_workers(cluster)
    nodes = {b.node_id: b, c.node_id: c}
    log = tmp_path / "runs"

    @distcore.remote(resources={"w": 1}, max_retries=2)
    def slow():
        _log(log, "slow")
        time.sleep(3)
        return _node_id()

    ref = slow.remote()
    deadline = time.monotonic() + 20
    while not _runs(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    [victim] = _runs(log)
    cluster.remove_node(nodes[victim], allow_graceful=False)
    [survivor] = set(nodes) - {victim}
    assert distcore.get(ref, timeout=45) == survivor
    assert _runs(log) == [victim, survivor]


def test_actor_on_a_dead_node_restarts_on_another(cluster):
    b, c = two_workers(cluster)

    @distcore.remote(resources={"w": 1}, max_restarts=1, max_task_retries=1)
    class Where:
        def node(self) -> str:
            return _node_id()

    actor = Where.options(scheduling_strategy=_on(b)).remote()
    assert distcore.get(actor.node.remote(), timeout=30) == b.node_id
    cluster.remove_node(b, allow_graceful=False)
    # The call reaches the dead incarnation or waits for the next: either way it runs on C.
    assert distcore.get(actor.node.remote(), timeout=30) == c.node_id
    state = get_actor(actor._actor_id)
    assert state is not None and state.num_restarts == 1 and state.node_id == c.node_id
    # Its one restart is spent: losing the second node ends it.
    cluster.remove_node(c, allow_graceful=False)
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(actor.node.remote(), timeout=30)


def test_placement_group_bundle_on_a_dead_node_is_rescheduled(cluster):
    head = cluster.add_node(num_cpus=1)
    b = cluster.add_node(num_cpus=1)
    cluster.connect()
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert pg.wait(30)
    placed = placement_group_table(pg)["bundles_to_node_id"]
    assert set(placed.values()) == {head.node_id, b.node_id}
    kept = next(i for i, n in placed.items() if n == head.node_id)

    @distcore.remote(num_cpus=1)
    class Resident:
        def pid(self) -> int:
            return os.getpid()

    resident = Resident.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, kept)).remote()
    pid = distcore.get(resident.pid.remote(), timeout=30)

    cluster.remove_node(b, allow_graceful=False)
    deadline = time.monotonic() + 20
    while placement_group_table(pg)["state"] != "PENDING":
        assert time.monotonic() < deadline, placement_group_table(pg)
        time.sleep(0.05)
    d = cluster.add_node(num_cpus=1)
    assert pg.wait(30)
    row = placement_group_table(pg)
    assert row["state"] == "CREATED"
    assert row["bundles_to_node_id"] == {kept: head.node_id, 1 - kept: d.node_id}
    # Only the dead node's bundle moved: what runs in the others was left alone.
    assert distcore.get(resident.pid.remote(), timeout=30) == pid
    remove_placement_group(pg)


# ---------------------------------------------------------------- detecting node death


def test_killed_node_is_dead_before_the_timeout_with_a_reason(cluster):
    cluster.add_node(num_cpus=1)
    b = cluster.add_node(num_cpus=1)
    cluster.connect()
    start = time.monotonic()
    cluster.remove_node(b, allow_graceful=False)
    row = _wait_dead(b.node_id, timeout=4.0)  # the fixture's dead_timeout_s is 5 s
    assert time.monotonic() - start < 4.0
    assert "connection refused" in row["DeathReason"]
    assert distcore.cluster_resources()["CPU"] == 1

    env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token or "")
    out = subprocess.run([sys.executable, "-m", "distcore.scripts.cli", "status", "--address", cluster.address],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    dead_line = next(line for line in out.stdout.splitlines() if b.node_id[:12] in line)
    assert dead_line.split()[0] == "DEAD"
    assert "died: " in out.stdout and "connection refused" in out.stdout


@pytest.fixture
def cluster_3s(isolated_tmp):
    """A cluster whose head declares a silent node dead after 3 s."""
    from distcore._private.testing import assert_no_leaks
    from distcore.cluster_utils import Cluster

    c = Cluster(node_dead_timeout_s=3.0)
    yield c
    c.shutdown()
    assert_no_leaks({c._session_name})


def test_hung_node_is_dead_after_the_configured_timeout(cluster_3s):
    cluster = cluster_3s
    cluster.add_node(num_cpus=1)
    b = cluster.add_node(num_cpus=1)
    cluster.connect()
    os.killpg(b.pid, signal.SIGSTOP)  # it hangs: its port still accepts connections, nothing answers
    try:
        start = time.monotonic()
        row = _wait_dead(b.node_id, timeout=6.0)
        elapsed = time.monotonic() - start
    finally:
        cluster.remove_node(b, allow_graceful=False)
    assert 1.0 < elapsed < 4.5, elapsed  # ~3 s after its last heartbeat, not at once (no refusal)
    assert "no heartbeat for 3 s" in row["DeathReason"]
