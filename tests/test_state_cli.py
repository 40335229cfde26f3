"""The state CLI (`distcore list|get|summary|logs|timeline|memory`) run in
subprocesses against a two-node cluster, its JSON output parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

import distcore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DISTCORE = [sys.executable, "-m", "distcore.scripts.cli"]


@distcore.remote
def cli_ok(x: int) -> int:
    print(f"cli_ok says {x}", flush=True)
    return x


@distcore.remote(max_retries=0)
def cli_boom() -> None:
    raise RuntimeError("cli boom")


@distcore.remote
class CliActor:
    def say(self, text: str) -> int:
        print(text, flush=True)
        return os.getpid()


class Cli:
    """Runs the CLI against one cluster, with its address and token."""

    def __init__(self, cluster: Any) -> None:
        self.address = cluster.address
        self.env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token)

    def command(self, *args: str) -> list[str]:
        return DISTCORE + list(args) + ["--address", self.address]

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=60)
        if ok:
            assert out.returncode == 0, f"distcore {' '.join(args)} failed: {out.stderr}"
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--format", "json").stdout)

    def eventually(self, check: Any, *args: str, timeout: float = 20.0) -> Any:
        """Run a JSON command until ``check(output)`` holds; return the output."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.json(*args)
            if check(out):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"distcore {' '.join(args)} never satisfied the check; last output: {out}")
            time.sleep(0.3)


@pytest.fixture
def two_nodes(cluster):
    head = cluster.add_node(num_cpus=1)
    worker = cluster.add_node(num_cpus=1, resources={"gadget": 1})
    cluster.connect()
    return Cli(cluster), head, worker


def test_list_get_and_summary(two_nodes):
    cli, head, worker = two_nodes
    actor = CliActor.options(name="cli-actor", resources={"gadget": 1}).remote()
    actor_pid = distcore.get(actor.say.remote("hello"))
    refs = [cli_ok.remote(i) for i in range(3)]
    assert distcore.get(refs) == [0, 1, 2]
    with pytest.raises(RuntimeError):
        distcore.get(cli_boom.remote())
    held = distcore.put(np.zeros(1 << 20, dtype=np.uint8))
    pg = distcore.util.placement_group([{"CPU": 1}], name="cli-pg")
    assert pg.wait(30)

    nodes = cli.json("list", "nodes")
    assert {n["node_id"] for n in nodes} == {head.node_id, worker.node_id}
    assert all(n["state"] == "ALIVE" for n in nodes) and [n["is_head_node"] for n in nodes] == [True, False]
    assert cli.json("get", "node", worker.node_id)["resources_total"]["gadget"] == 1

    (row,) = cli.json("list", "actors", "--filter", "name=cli-actor")
    assert row["state"] == "ALIVE" and row["class_name"] == "CliActor" and row["node_id"] == worker.node_id
    detail = cli.eventually(lambda a: a["pid"] == actor_pid, "get", "actor", row["actor_id"][:10])
    assert detail["actor_id"] == actor._actor_id

    finished = cli.eventually(lambda rows: len(rows) == 3, "list", "tasks", "--filter", "name=cli_ok",
                              "--filter", "state=FINISHED")
    assert {t["task_id"] for t in finished} == {r.task_id() for r in refs}
    (failed,) = cli.eventually(lambda rows: len(rows) == 1, "list", "tasks", "--filter", "name=cli_boom",
                               "--filter", "state!=RUNNING")
    assert failed["state"] == "FAILED" and failed["error_type"] == "TASK_EXECUTION_EXCEPTION"
    task = cli.json("get", "task", refs[0].task_id())
    assert task["state"] == "FINISHED" and task["name"] == "cli_ok" and task["events"]
    assert len(cli.json("list", "tasks", "--limit", "2")) == 2

    summary = cli.json("summary", "tasks")["cluster"]["summary"]
    assert summary["cli_ok"]["state_counts"] == {"FINISHED": 3}
    assert summary["cli_boom"]["state_counts"] == {"FAILED": 1}
    assert cli.json("summary", "actors")["cluster"]["summary"]["CliActor"]["state_counts"] == {"ALIVE": 1}

    objects = cli.json("list", "objects", "--filter", f"object_id={held.hex()}")
    assert [(o["type"], o["pid"], o["reference_type"]) for o in objects] == [("DRIVER", os.getpid(), "LOCAL_REFERENCE")]
    assert objects[0]["object_size"] >= 1 << 20 and objects[0]["location"] == head.node_id
    assert cli.json("summary", "objects")["cluster"]["total_objects"] >= 1

    workers = cli.json("list", "workers")
    assert any(w["worker_type"] == "DRIVER" and w["pid"] == os.getpid() for w in workers)
    assert any(w["pid"] == actor_pid and w["actor_id"] == actor._actor_id for w in workers)
    jobs = cli.json("list", "jobs")
    assert [j["status"] for j in jobs] == ["RUNNING"] and jobs[0]["driver_info"]["pid"] == os.getpid()
    (group,) = cli.json("list", "placement-groups", "--filter", "name=cli-pg")
    assert group["state"] == "CREATED" and group["placement_group_id"] == pg.id
    assert cli.json("get", "placement-group", pg.id)["bundles"][0]["unit_resources"] == {"CPU": 1.0}

    # The table: one header, columns aligned under it.
    lines = cli.run("list", "nodes").stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE_ID", "NODE_IP", "IS_HEAD_NODE", "STATE"]
    column = lines[0].index("STATE")
    assert [line[column:].split()[0] for line in lines[1:]] == ["ALIVE", "ALIVE"]
    distcore.util.remove_placement_group(pg)


def test_bad_input_is_explained(two_nodes):
    cli, _, _ = two_nodes
    out = cli.run("get", "actor", "f" * 24, ok=False)
    assert out.returncode == 1 and "no actor has id" in out.stderr
    out = cli.run("list", "tasks", "--filter", "state", ok=False)
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr
    out = cli.run("list", "actors", "--filter", "colour=red", ok=False)
    assert out.returncode == 2 and "'colour' is not a filter key for actors; valid keys:" in out.stderr
    out = cli.run("logs", "--task-id", "0" * 24, ok=False)
    assert out.returncode == 1 and "no task has id" in out.stderr
    cli.env["DISTCORE_AUTH_TOKEN"] = "not-the-token"
    out = cli.run("list", "nodes", ok=False)
    assert out.returncode == 1 and "cluster token" in out.stderr


def test_logs_timeline_and_memory(two_nodes, tmp_path):
    cli, head, worker = two_nodes
    actor = CliActor.options(resources={"gadget": 1}).remote()
    distcore.get(actor.say.remote("first-marker-4321"))
    ref = cli_ok.remote(77)
    assert distcore.get(ref) == 77
    held = distcore.put(np.ones(1 << 20, dtype=np.uint8))

    out = cli.run("logs", "--actor-id", actor._actor_id)
    assert "first-marker-4321" in out.stdout and "(CliActor pid=" in out.stdout
    task_log = ""
    deadline = time.monotonic() + 20
    while "cli_ok says 77" not in task_log and time.monotonic() < deadline:
        task_log = cli.run("logs", "--task-id", ref.task_id(), ok=False).stdout
        time.sleep(0.3)
    assert "cli_ok says 77" in task_log
    job_logs = cli.run("logs", "--job-id", distcore.get_runtime_context().get_job_id()).stdout
    assert "first-marker-4321" in job_logs and "cli_ok says 77" in job_logs and "========" in job_logs

    listing = cli.run("logs").stdout
    assert f"node {head.node_id}" in listing and f"node {worker.node_id}" in listing
    assert f"head-{head.node_id[:12]}.log" in listing and f"node-{worker.node_id[:12]}.log" in listing
    worker_file = next(w["log_file"] for w in cli.json("list", "workers") if w["actor_id"] == actor._actor_id)
    assert "first-marker-4321" in cli.run("logs", "--node-id", worker.node_id, worker_file).stdout

    command = cli.command("logs", "--actor-id", actor._actor_id, "--follow", "--interval", "0.1")
    with subprocess.Popen(command, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as follow:
        try:
            assert "first-marker-4321" in follow.stdout.readline()
            distcore.get(actor.say.remote("followed-marker-8765"))
            assert "followed-marker-8765" in follow.stdout.readline()
        finally:
            follow.terminate()

    trace_path = tmp_path / "trace.json"
    out = cli.run("timeline", "-o", str(trace_path))
    assert "task executions" in out.stdout
    trace = json.loads(trace_path.read_text())
    assert all(e["ph"] == "X" for e in trace) and "cli_ok" in {e["name"] for e in trace}

    report = cli.json("memory", "--group-by", "owner")
    assert report["totals"]["objects"] >= 1 and report["totals"]["pinned_objects"] >= 1
    assert set(report["stores"]) == {head.node_id, worker.node_id}
    rows = [o for g in report["groups"].values() for o in g["objects"]]
    mine = next(o for o in rows if o["object_id"] == held.hex())
    assert mine["store"] == "pinned" and mine["reference_type"] == "LOCAL_REFERENCE" and mine["pid"] == os.getpid()
    text = cli.run("memory", "--units", "MB").stdout
    assert "Object store per node" in text and held.hex() in text and "1.00 MB" in text


def test_no_cluster_is_explained(isolated_tmp):
    out = subprocess.run(DISTCORE + ["list", "nodes"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no running distcore cluster" in out.stderr
