"""distcore across separate network hosts: two network namespaces and a veth pair.

The test makes two network namespaces joined by a veth pair with private
addresses (10.200.N.1 and 10.200.N.2, which exist only inside these two
namespaces), runs the head in one and a worker node in the other, each
listening on its veth address only, and drives the cluster from the head's
namespace: a task runs on the other host and 50 MB objects cross the link
both ways. Loopback inside a namespace is its own, so anything that wrongly
advertises 127.0.0.1 to the other host fails here.

Needs root and a working ``ip netns`` (iproute2); skipped with the reason
otherwise. Everything is torn down (processes killed, namespaces deleted,
which removes the veth pair) even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from distcore._private import node as node_mod
from distcore._private.ids import new_node_id
from distcore._private.testing import assert_no_leaks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

START_TIMEOUT_S = 30.0
DRIVER_TIMEOUT_S = 45.0
MB = 1024 * 1024

DRIVER = """
import json, sys, time
import numpy as np
import distcore

start = time.monotonic()
distcore.init(address=sys.argv[1])

@distcore.remote(resources={"hostb": 1})
def where():
    ctx = distcore.get_runtime_context()
    return ctx.get_node_id(), ctx.get_node_ip_address()

@distcore.remote(resources={"hostb": 1})
def make(n):
    return np.full(n, 7, dtype=np.uint8)

@distcore.remote(resources={"hostb": 1})
def checksum(arr):
    return int(arr.sum()), distcore.get_runtime_context().get_node_id()

node_b, ip_b = distcore.get(where.remote(), timeout=30)
pulled = distcore.get(make.remote(int(sys.argv[2])), timeout=30)  # host B -> host A
sent = distcore.put(np.full(int(sys.argv[2]), 3, dtype=np.uint8))  # host A -> host B
total, summed_on = distcore.get(checksum.remote(sent), timeout=30)
print(json.dumps({
    "node_b": node_b, "ip_b": ip_b, "pulled_size": int(pulled.nbytes), "pulled_sum": int(pulled.sum()),
    "sent_sum": total, "summed_on": summed_on, "driver_node": distcore.get_runtime_context().get_node_id(),
    "nodes": sorted(n["NodeManagerAddress"] for n in distcore.nodes() if n["Alive"]),
    "seconds": time.monotonic() - start,
}))
distcore.shutdown()
"""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=check)


def _why_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run the tests as root to include this one)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"dcprobe{os.getpid()}"
    result = _run("ip", "netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` does not work here: {result.stderr.strip() or result.returncode}"
    _run("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Hosts:
    ns_a: str
    ns_b: str
    ip_a: str
    ip_b: str
    procs: list[subprocess.Popen] = field(default_factory=list)


def _teardown(hosts: Hosts, veth: str) -> None:
    for proc in hosts.procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for proc in hosts.procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    for ns in (hosts.ns_a, hosts.ns_b):
        # Whatever still runs in our namespaces was started by this test (workers of the nodes).
        pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _run("ip", "netns", "del", ns, check=False)  # also removes its end of the veth pair
    _run("ip", "link", "del", veth, check=False)  # only if it never moved into a namespace


@pytest.fixture
def two_hosts(isolated_tmp):
    reason = _why_unavailable()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100_000
    subnet = f"10.200.{os.getpid() % 250 + 1}"
    hosts = Hosts(f"dcA{tag}", f"dcB{tag}", f"{subnet}.1", f"{subnet}.2")
    veth_a, veth_b = f"dcva{tag}", f"dcvb{tag}"
    try:
        _run("ip", "netns", "add", hosts.ns_a)
        _run("ip", "netns", "add", hosts.ns_b)
        _run("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _run("ip", "link", "set", veth_a, "netns", hosts.ns_a)
        _run("ip", "link", "set", veth_b, "netns", hosts.ns_b)
        for ns, dev, ip in ((hosts.ns_a, veth_a, hosts.ip_a), (hosts.ns_b, veth_b, hosts.ip_b)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield hosts
    finally:
        _teardown(hosts, veth_a)


def _start_node(hosts: Hosts, ns: str, ip: str, *, head: bool, gcs_address: str, token: str,
                resources: dict) -> tuple[str, dict]:
    """Start a node process inside ``ns`` listening on ``ip``; return its session name and ready info."""
    session_name, session_dir = node_mod.new_session()
    node_id = new_node_id()
    ready = os.path.join(session_dir, f"node-{node_id[:12]}.json")
    cmd = [
        "ip", "netns", "exec", ns, sys.executable, "-m", "distcore._private.node_main",
        "--node-id", node_id, "--node-ip", ip, "--resources", json.dumps(resources),
        "--object-store-memory", str(300 * MB), "--session-dir", session_dir, "--session-name", session_name,
        "--ready-file", ready, "--parent-pid", str(os.getpid()), "--dead-timeout-s", "5", "--prestart", "1",
    ]
    cmd += ["--head"] if head else ["--gcs-address", gcs_address]
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=token)
    log = open(os.path.join(session_dir, "logs", "node.log"), "ab")
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()
    hosts.procs.append(proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(session_dir, "logs", "node.log"), "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
            raise AssertionError(f"node in {ns} did not start (exit code {proc.poll()}): {tail}")
        time.sleep(0.05)
    with open(ready) as f:
        return session_name, json.load(f)


def test_task_and_objects_cross_between_network_hosts(two_hosts):
    hosts = two_hosts
    token = node_mod.new_token()
    session_a, head = _start_node(hosts, hosts.ns_a, hosts.ip_a, head=True, gcs_address="", token=token,
                                  resources={"CPU": 1})
    assert head["gcs_address"].startswith(f"{hosts.ip_a}:")
    session_b, node_b = _start_node(hosts, hosts.ns_b, hosts.ip_b, head=False, gcs_address=head["gcs_address"],
                                    token=token, resources={"CPU": 1, "hostb": 1})
    assert node_b["address"].startswith(f"{hosts.ip_b}:")
    # Host B's node cannot be reached on its loopback from host A: only over the link.
    size = 50 * MB
    driver = subprocess.run(
        ["ip", "netns", "exec", hosts.ns_a, sys.executable, "-c", DRIVER, head["gcs_address"], str(size)],
        env=dict(os.environ, DISTCORE_AUTH_TOKEN=token), capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S,
    )
    assert driver.returncode == 0, driver.stderr[-4000:]
    out = json.loads(driver.stdout.strip().splitlines()[-1])
    assert out["node_b"] == node_b["node_id"] and out["ip_b"] == hosts.ip_b
    assert out["driver_node"] == head["node_id"]
    assert out["pulled_size"] == size and out["pulled_sum"] == 7 * size
    assert out["sent_sum"] == 3 * size and out["summed_on"] == node_b["node_id"]
    assert out["nodes"] == sorted([hosts.ip_a, hosts.ip_b])
    for proc in hosts.procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    assert_no_leaks({session_a, session_b})
