"""Per-node Prometheus metrics, as a user scraping ``http://<node>/metrics`` sees them.

A two-node cluster (head with a small object store, one worker node with a
custom resource) serves metrics on both nodes; the tests run tasks, an actor,
puts that spill, and read the results back through the HTTP endpoint with
prometheus-client's own parser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import distcore
from distcore._private.metrics.stats import Histogram, LeaseStats
from distcore._private.testing import assert_no_leaks, wait_for
from distcore.cluster_utils import Cluster, NodeHandle
from distcore.exceptions import TaskCancelledError

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
HEAD_STORE = 64 * MB

Samples = list[tuple[str, dict[str, str], float]]


# --------------------------------------------------------------------------- helpers


def fetch(address: str, path: str = "/metrics", token: str | None = None, method: str = "GET") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{address}{path}", headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        exc.close()
        return exc.code, body


def scrape(cluster: Cluster, node: NodeHandle) -> Samples:
    assert node.metrics_address, f"{node} serves no metrics"
    status, text = fetch(node.metrics_address, token=cluster.auth_token)
    assert status == 200, text
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum of the samples called ``metric`` whose labels include ``labels``."""
    return sum(v for n, lab, v in samples if n == metric and all(lab.get(k) == x for k, x in labels.items()))


def scrape_all(cluster: Cluster) -> Samples:
    """Every node's samples together (each carries its ``node_id``)."""
    return [s for node in cluster.list_all_nodes() for s in scrape(cluster, node)]


def families(cluster: Cluster, node: NodeHandle) -> set[str]:
    """The metric families a scrape declares (with or without samples)."""
    status, text = fetch(node.metrics_address or "", token=cluster.auth_token)
    assert status == 200, text
    return {f.name for f in text_string_to_metric_families(text)}


def eventually(cluster: Cluster, node: NodeHandle, check, timeout: float = 20.0) -> Samples:
    """Scrape until ``check(samples)`` holds; return those samples."""
    seen: list[Samples] = []

    def ok() -> bool:
        seen.append(scrape(cluster, node))
        return bool(check(seen[-1]))

    wait_for(ok, timeout, interval=0.2, message=f"metrics of {node} never satisfied the check")
    return seen[-1]


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if distcore.is_initialized():  # a cluster of another test module
        distcore.shutdown()
    c = Cluster(node_dead_timeout_s=10.0)
    try:
        c.add_node(num_cpus=2, object_store_memory=HEAD_STORE, metrics_export_port=0)
        c.add_node(num_cpus=1, resources={"remote": 1}, metrics_export_port=0)
        c.connect()
        yield c
    finally:
        c.shutdown()
    assert_no_leaks({c._session_name})


@pytest.fixture
def head(cluster: Cluster) -> NodeHandle:
    assert cluster.head is not None
    return cluster.head


@pytest.fixture
def worker_node(cluster: Cluster) -> NodeHandle:
    return cluster.worker_nodes[0]


@distcore.remote
def square(x: int) -> int:
    return x * x


@distcore.remote
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


@distcore.remote
class Tally:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


# --------------------------------------------------------------------------- endpoint


def test_each_node_serves_its_own_metrics_and_lists_the_address(cluster, head, worker_node):
    assert head.metrics_address and worker_node.metrics_address
    assert head.metrics_address != worker_node.metrics_address
    assert head.metrics_address.startswith("127.0.0.1:")  # loopback by default
    for node, cpus in ((head, 2), (worker_node, 1)):
        samples = scrape(cluster, node)
        assert value(samples, "distcore_node_info", node_id=node.node_id) == 1
        assert value(samples, "distcore_node_resource_capacity", node_id=node.node_id, resource="CPU") == cpus
        assert value(samples, "distcore_object_store_capacity_bytes", node_id=node.node_id) > 0
        assert {n for n, _, _ in samples if n.startswith("distcore_")} and all(
            lab.get("node_id") == node.node_id for n, lab, _ in samples if not n.startswith("distcore_node_process")
        )
    # Cluster-wide tables (actors, placement groups) come from the head only.
    assert {"distcore_actors", "distcore_placement_groups"} <= families(cluster, head)
    assert "distcore_actors" not in families(cluster, worker_node)

    by_id = {n["NodeID"]: n for n in distcore.nodes()}
    for node in (head, worker_node):
        assert by_id[node.node_id]["MetricsExportPort"] == int(node.metrics_address.rsplit(":", 1)[1])
    from distcore.util.state import list_nodes

    listed = {n.node_id: n.metrics_address for n in list_nodes(address=cluster.address, detail=True)}
    assert listed[head.node_id] == head.metrics_address
    assert listed[worker_node.node_id] == worker_node.metrics_address


def test_distcore_status_prints_the_metrics_urls(cluster, head, worker_node, capsys):
    from distcore.scripts.cluster_commands import _status

    assert _status(argparse.Namespace(address=cluster.address)) == 0  # `distcore status --address ...`
    out = capsys.readouterr().out
    assert f"metrics http://{head.metrics_address}/metrics" in out
    assert f"metrics http://{worker_node.metrics_address}/metrics" in out


def test_scrapes_need_the_cluster_token(cluster, head):
    status, body = fetch(head.metrics_address)
    assert status == 401 and "cluster token" in body and "distcore_" not in body
    status, body = fetch(head.metrics_address, token="not-the-token")
    assert status == 401 and "distcore_" not in body
    assert fetch(head.metrics_address, "/-/healthz") == (200, "success\n")
    assert fetch(head.metrics_address, "/nowhere", token=cluster.auth_token)[0] == 404
    assert fetch(head.metrics_address, token=cluster.auth_token, method="POST")[0] == 405
    status, body = fetch(head.metrics_address, "/", token=cluster.auth_token)
    assert status == 200 and "distcore_workers" in body


# --------------------------------------------------------------------------- tasks and scheduling


def test_tasks_move_the_lease_counters_and_the_latency_histogram(cluster, head, worker_node):
    job_id = distcore.get_runtime_context().get_job_id()
    granted, count = "distcore_leases_granted_total", "distcore_scheduling_latency_seconds_count"
    before = scrape_all(cluster)
    assert distcore.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    after = scrape_all(cluster)  # the tasks ran on either node
    assert value(after, granted, job_id=job_id) > value(before, granted, job_id=job_id)
    assert value(after, count) > value(before, count)
    assert value(after, "distcore_scheduling_latency_seconds_sum") > 0
    assert value(after, "distcore_scheduling_latency_seconds_bucket", le="+Inf") == value(after, count)
    assert value(after, "distcore_scheduling_latency_seconds_bucket", le="60.0") == value(after, count)

    # A task needing the worker node's resource is sent on by the head and granted there.
    spilled = "distcore_leases_spilled_back_total"
    head_before, worker_before = scrape(cluster, head), scrape(cluster, worker_node)
    assert distcore.get(square.options(resources={"remote": 1}).remote(7)) == 49
    assert value(scrape(cluster, head), spilled, job_id=job_id) > value(head_before, spilled, job_id=job_id)
    assert value(scrape(cluster, worker_node), granted, job_id=job_id) > value(worker_before, granted, job_id=job_id)


def test_running_tasks_and_leased_workers_show_while_tasks_run(cluster):
    refs = [nap.remote(4.0) for _ in range(2)]
    job_id = distcore.get_runtime_context().get_job_id()
    seen: Samples = []

    def running() -> bool:  # wherever the scheduler put them
        seen[:] = scrape_all(cluster)
        return value(seen, "distcore_tasks", state="RUNNING", job_id=job_id) >= 1

    # A lease runs one task at a time; the owner may run both on one lease, one after the other.
    wait_for(running, 20, interval=0.2, message="no running nap task showed up in the metrics")
    assert value(seen, "distcore_workers", state="leased") >= 1
    assert distcore.get(refs) == ["rested", "rested"]
    # With its queue empty the owner returns the leases.
    wait_for(lambda: value(scrape_all(cluster), "distcore_tasks", state="RUNNING", job_id=job_id) == 0, 20,
             interval=0.2, message="leases stayed RUNNING after the tasks finished")


def test_infeasible_requests_are_counted(cluster, head, capfd):
    ref = square.options(resources={"nowhere": 1}).remote(1)
    try:
        eventually(cluster, head, lambda s: value(s, "distcore_leases_infeasible_total") >= 1)
    finally:
        distcore.cancel(ref)
        with pytest.raises(TaskCancelledError):
            distcore.get(ref, timeout=30)
    capfd.readouterr()  # the driver's "cannot be scheduled" warning


def test_workers_gauge_counts_the_node_workers(cluster, head, worker_node):
    for node in (head, worker_node):
        samples = scrape(cluster, node)
        assert value(samples, "distcore_workers") > 0
        assert {lab["state"] for n, lab, _ in samples if n == "distcore_workers"} == {
            "starting", "idle", "leased", "actor"}


# --------------------------------------------------------------------------- actors and placement groups


def test_actor_states_on_the_head(cluster, head):
    tally = Tally.remote()
    assert distcore.get(tally.add.remote(2)) == 2
    samples = scrape(cluster, head)
    assert value(samples, "distcore_actors", state="ALIVE", name="Tally") == 1
    assert value(samples, "distcore_actors", state="ALIVE") == 1
    assert value(scrape_all(cluster), "distcore_workers", state="actor") >= 1
    distcore.kill(tally)
    eventually(cluster, head, lambda s: value(s, "distcore_actors", state="DEAD", name="Tally") == 1
               and value(s, "distcore_actors", state="ALIVE", name="Tally") == 0)


def test_placement_groups_by_state(cluster, head):
    from distcore.util.placement_group import placement_group, remove_placement_group

    before = scrape(cluster, head)
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(30)
    created = scrape(cluster, head)
    assert value(created, "distcore_placement_groups", state="CREATED") == value(
        before, "distcore_placement_groups", state="CREATED") + 1
    remove_placement_group(pg)
    eventually(cluster, head, lambda s: value(s, "distcore_placement_groups", state="REMOVED")
               == value(before, "distcore_placement_groups", state="REMOVED") + 1)
    assert value(scrape(cluster, head), "distcore_cluster_nodes", state="ALIVE") == 2


# --------------------------------------------------------------------------- objects


def _array(i: int, size: int = 16 * MB) -> np.ndarray:
    arr = np.full(size // 8, i, dtype=np.int64)
    arr[::4096] = i + 1
    return arr


def test_object_store_usage_spilling_and_restoring(cluster, head):
    node = head.node_id
    big = distcore.put(_array(0))
    samples = scrape(cluster, head)
    assert value(samples, "distcore_object_store_used_bytes", node_id=node) >= 16 * MB
    assert value(samples, "distcore_object_store_objects", location="memory") >= 1
    assert value(samples, "distcore_object_store_capacity_bytes") == HEAD_STORE

    refs = [big] + [distcore.put(_array(i)) for i in range(1, 8)]  # 128 MB into a 64 MB store
    spilled = scrape(cluster, head)
    assert value(spilled, "distcore_object_store_spilled_bytes") > 0
    assert value(spilled, "distcore_object_store_spilled_objects_total") >= 4
    assert value(spilled, "distcore_object_store_objects", location="spilled") >= 4
    assert value(spilled, "distcore_object_store_used_bytes") <= HEAD_STORE

    assert int(distcore.get(refs[0])[4096]) == 1  # the oldest was spilled: reading restores it
    restored = scrape(cluster, head)
    assert value(restored, "distcore_object_store_restored_objects_total") > value(
        spilled, "distcore_object_store_restored_objects_total")
    del big, refs
    eventually(cluster, head, lambda s: value(s, "distcore_object_store_spilled_bytes") == 0)


# --------------------------------------------------------------------------- embedded clusters and the CLI


def test_init_serves_metrics_only_when_asked(tmp_path):
    script = textwrap.dedent(
        """
        import os, urllib.request
        import distcore

        ctx = distcore.init(num_cpus=1, _metrics_export_port=0)
        port = distcore.nodes()[0]["MetricsExportPort"]
        token = open(os.path.join(ctx["session_dir"], "token")).read().strip()
        distcore.get(distcore.remote(lambda: 1).remote())
        req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
        text = urllib.request.urlopen(req, timeout=10).read().decode()
        print("GRANTED", "distcore_leases_granted_total{" in text)
        distcore.shutdown()
        distcore.init(num_cpus=1)
        print("DEFAULT", distcore.nodes()[0]["MetricsExportPort"])
        distcore.shutdown()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "DISTCORE_TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "GRANTED True" in out.stdout and "DEFAULT None" in out.stdout


def test_distcore_start_says_once_that_metrics_are_off_without_prometheus_client(tmp_path):
    hidden = tmp_path / "hide"
    (hidden / "prometheus_client").mkdir(parents=True)
    (hidden / "prometheus_client" / "__init__.py").write_text("raise ImportError('hidden for a test')\n")
    env = {**os.environ, "DISTCORE_TMPDIR": str(tmp_path / "distcore"),
           "PYTHONPATH": os.pathsep.join([str(hidden), os.environ.get("PYTHONPATH", "")])}
    env.pop("DISTCORE_AUTH_TOKEN", None)
    cli = [sys.executable, "-m", "distcore.scripts.cli"]
    try:
        out = subprocess.run(cli + ["start", "--head", "--port", "0", "--num-cpus", "1", "--include-dashboard",
                                    "false"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stderr.count("metrics are off") == 1, out.stderr
        assert 'pip install "distcore[default]"' in out.stderr
        assert "metrics:" not in out.stdout
    finally:
        subprocess.run(cli + ["stop", "--force"], env=env, capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------- pure parts


def test_histogram_buckets_are_cumulative():
    hist = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        hist.observe(v)
    assert hist.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert hist.count == 4 and hist.sum == pytest.approx(3.65)
    with pytest.raises(ValueError, match="strictly increasing"):
        Histogram((1.0, 0.5))


def test_lease_stats_count_outcomes_per_job():
    stats = LeaseStats()
    stats.on_granted("01", 0.002)
    stats.count("spilled_back", "01")
    stats.count("spilled_back", "02")
    assert stats.counters == {("granted", "01"): 1, ("spilled_back", "01"): 1, ("spilled_back", "02"): 1}
    assert stats.latency.count == 1
    with pytest.raises(ValueError, match="unknown lease outcome 'lost'"):
        stats.count("lost", "01")


def test_start_if_available_reports_a_missing_prometheus_client(monkeypatch):
    from distcore._private.metrics import start_if_available

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "distcore._private.metrics.server", raising=False)
    monkeypatch.delitem(sys.modules, "distcore._private.metrics.collectors", raising=False)
    server, error = asyncio.run(start_if_available(object(), None, host="127.0.0.1", port=0, token=None))
    assert server is None and error is not None and "distcore[default]" in error
