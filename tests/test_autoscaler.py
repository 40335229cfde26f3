"""The autoscaler on a real local cluster: grow from 0 to 2 worker nodes under demand, shrink back when
idle, ``request_resources``, ``distcore status``, and ``distcore up`` / ``down`` with the local provider."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from distcore._private.testing import assert_no_leaks, session_segments, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DISTCORE = [sys.executable, "-m", "distcore.scripts.cli"]

CONFIG = {
    "idle_timeout_s": 3,
    "max_workers": 2,
    "update_interval_s": 0.5,
    "available_node_types": {"cpu_worker": {"resources": {"CPU": 1}, "min_workers": 0, "max_workers": 2}},
}


def gcs_call(cluster, method: str):
    from distcore._private.rpc import RpcClient

    async def call():
        client = RpcClient(cluster.address, cluster.auth_token)
        try:
            return await client.call("Gcs", method, None, timeout=10)
        finally:
            await client.close()

    return asyncio.run(call())


def worker_nodes(cluster) -> list[str]:
    return [n.node_id for n in gcs_call(cluster, "ListNodes") if n.state == "ALIVE" and not n.is_head]


def status_cli(address: str, token: str) -> str:
    env = {**os.environ, "DISTCORE_AUTH_TOKEN": token}
    out = subprocess.run(DISTCORE + ["status", "--address", address], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_grows_from_zero_to_two_nodes_under_demand_and_shrinks_when_idle(isolated_tmp):
    import distcore
    from distcore.cluster_utils import Cluster

    cluster = Cluster(autoscaling_config=CONFIG, node_dead_timeout_s=5.0)
    try:
        head = cluster.add_node(num_cpus=0)  # runs no tasks: every task needs a worker node
        cluster.connect()
        assert worker_nodes(cluster) == []

        @distcore.remote(num_cpus=1)
        def busy(seconds: float) -> tuple[str, float, float]:
            start = time.time()
            time.sleep(seconds)
            return distcore.get_runtime_context().get_node_id(), start, time.time()

        refs = [busy.remote(4.0) for _ in range(2)]
        wait_for(lambda: len(worker_nodes(cluster)) == 2, timeout=30, interval=0.2,
                 message="the autoscaler did not grow the cluster to 2 worker nodes")
        text = status_cli(cluster.address, cluster.auth_token)
        assert "Autoscaler (max_workers 2, idle_timeout_s 3)" in text
        assert "launch 2 x cpu_worker" in text
        results = distcore.get(refs, timeout=40)
        ran_on = {node for node, _, _ in results}
        assert len(ran_on) == 2 and head.node_id not in ran_on  # one task per new node
        assert ran_on <= set(worker_nodes(cluster))
        (_, start_a, end_a), (_, start_b, end_b) = results
        assert max(start_a, start_b) < min(end_a, end_b), f"the two tasks did not run side by side: {results}"
        assert len(worker_nodes(cluster)) == 2  # max_workers holds

        def scaled_down() -> bool:
            counts = gcs_call(cluster, "GetAutoscalerStatus")["node_types"]["cpu_worker"]
            return worker_nodes(cluster) == [] and counts["launching"] + counts["active"] + counts["idle"] == 0

        wait_for(scaled_down, timeout=25, interval=0.2,
                 message="idle worker nodes were not removed after the idle timeout")
        status = gcs_call(cluster, "GetAutoscalerStatus")
        messages = [d["message"] for d in status["last_decisions"]]
        assert sum("terminate local-cpu_worker" in m and "idle for" in m for m in messages) == 2
        text = status_cli(cluster.address, cluster.auth_token)
        assert "cpu_worker  launching 0  active 0  idle 0" in text
        assert text.count("ALIVE") == 1 and text.count("DEAD") == 2
    finally:
        cluster.shutdown()
    assert_no_leaks({cluster._session_name})


def test_request_resources_scales_up_and_infeasible_shapes_are_reported(isolated_tmp):
    import distcore
    from distcore.autoscaler.sdk import request_resources
    from distcore.cluster_utils import Cluster

    cluster = Cluster(autoscaling_config={**CONFIG, "idle_timeout_s": 1}, node_dead_timeout_s=5.0)
    try:
        cluster.add_node(num_cpus=0)
        cluster.connect()
        with pytest.raises(ValueError, match=r"bundles\[0\] must map resource names to numbers >= 0"):
            request_resources(bundles=[{"CPU": -1}])
        request_resources(num_cpus=1)
        wait_for(lambda: len(worker_nodes(cluster)) == 1, timeout=30, interval=0.2,
                 message="request_resources(num_cpus=1) did not add a node")
        time.sleep(2.5)  # idle past the timeout, but the request holds it
        assert len(worker_nodes(cluster)) == 1

        @distcore.remote(num_cpus=0, resources={"TPU": 1})
        def never() -> None:
            return None

        ref = never.remote()
        wait_for(lambda: {"TPU": 1.0} in (gcs_call(cluster, "GetAutoscalerStatus")["infeasible"]), timeout=15,
                 message="the infeasible TPU task was not reported")
        assert "infeasible (no node type fits): {TPU: 1}" in status_cli(cluster.address, cluster.auth_token)
        assert len(worker_nodes(cluster)) == 1  # nothing launched for it
        del ref
        request_resources()  # cleared: the node may go
        wait_for(lambda: worker_nodes(cluster) == [], timeout=25, interval=0.2,
                 message="clearing the request did not let the idle node go")
    finally:
        cluster.shutdown()
    assert_no_leaks({cluster._session_name})


def test_actors_and_placement_groups_are_demand_too(isolated_tmp):
    import distcore
    from distcore.cluster_utils import Cluster
    from distcore.util import placement_group, remove_placement_group

    config = {**CONFIG, "max_workers": 3, "idle_timeout_s": 1,
              "available_node_types": {"cpu_worker": {"resources": {"CPU": 1}, "max_workers": 3}}}
    cluster = Cluster(autoscaling_config=config, node_dead_timeout_s=5.0)
    try:
        cluster.add_node(num_cpus=0)
        cluster.connect()

        @distcore.remote(num_cpus=1)
        class Where:
            def node(self) -> str:
                return distcore.get_runtime_context().get_node_id()

        actor = Where.remote()
        actor_node = distcore.get(actor.node.remote(), timeout=30)
        assert actor_node in worker_nodes(cluster)
        pg = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")
        assert distcore.get(pg.ready(), timeout=30)
        assert len(worker_nodes(cluster)) == 3
        messages = [d["message"] for d in gcs_call(cluster, "GetAutoscalerStatus")["last_decisions"]]
        assert any("for actor demand" in m for m in messages)
        assert any("for placement_group demand" in m for m in messages)
        distcore.kill(actor)
        remove_placement_group(pg)
        wait_for(lambda: worker_nodes(cluster) == [], timeout=25, interval=0.2,
                 message="nodes of a killed actor and a removed placement group were not removed")
    finally:
        cluster.shutdown()
    assert_no_leaks({cluster._session_name})


CLUSTER_YAML = """\
cluster_name: up-down-test
max_workers: 1
idle_timeout_s: 60
update_interval_s: 0.5
provider:
  type: local
head_node:
  resources: {CPU: 0}
available_node_types:
  cpu_worker:
    resources: {CPU: 1}
    min_workers: 1
    max_workers: 1
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_up_and_down_with_the_local_provider(isolated_tmp):
    from distcore._private.autoscaler.local_provider import recorded_nodes

    env = dict(os.environ)
    path = isolated_tmp / "cluster.yaml"
    path.write_text(CLUSTER_YAML)
    out = subprocess.run(DISTCORE + ["up", str(path)], env=env, capture_output=True, text=True, timeout=60)
    head_pid, session_dir, workers = None, None, {}
    try:
        assert out.returncode == 0, out.stderr
        assert "distcore cluster 'up-down-test' is up: head at 127.0.0.1:" in out.stdout
        assert "distcore.init(address='auto')" in out.stdout and f"distcore down {path}" in out.stdout
        with open(isolated_tmp / "distcore" / "clusters" / "up-down-test.json") as f:
            record = json.load(f)
        head_pid, session_dir = record["pid"], record["session_dir"]
        again = subprocess.run(DISTCORE + ["up", str(path)], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "is already up" in again.stdout

        # min_workers: 1 launches a worker node at once; a driver runs a task on it.
        def status() -> str:
            return subprocess.run(DISTCORE + ["status"], env=env, capture_output=True, text=True, timeout=30).stdout

        wait_for(lambda: "cpu_worker  launching 0  active 0  idle 1" in status(), timeout=30, interval=0.3,
                 message="min_workers did not bring up a worker node")
        workers = recorded_nodes(session_dir)
        assert len(workers) == 1
        driver = subprocess.run(
            [sys.executable, "-c",
             "import distcore; distcore.init(address='auto');"
             "f = distcore.remote(num_cpus=1)(lambda: 40 + 2);"
             "print('answer', distcore.get(f.remote(), timeout=60))"],
            env=env, capture_output=True, text=True, timeout=90,
        )
        assert "answer 42" in driver.stdout, driver.stderr
        assert "min_workers is 1" in status()
    finally:
        down = subprocess.run(DISTCORE + ["down", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert "distcore cluster 'up-down-test' is down: stopped the head and 1 worker node(s)" in down.stdout
    pids = [head_pid, *(w["pid"] for w in workers.values())]
    wait_for(lambda: not any(_alive(pid) for pid in pids if pid), timeout=10,
             message=f"processes left after distcore down: {[pid for pid in pids if pid and _alive(pid)]}")
    session = os.path.basename(session_dir or "").removeprefix("session_")
    assert not session_segments({session})
    again = subprocess.run(DISTCORE + ["down", str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "no cluster named 'up-down-test' is up" in again.stdout
