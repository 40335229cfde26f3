"""A test cluster's nodes end with the process that started them, even one that dies without shutdown()."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import psutil

from distcore._private.testing import session_segments

_SCRIPT = textwrap.dedent("""
    import json, os, numpy as np, distcore
    from distcore.cluster_utils import Cluster
    cluster = Cluster()
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    cluster.connect()
    ref = distcore.put(np.ones(1 << 20))  # a segment in the store
    pids = [cluster.head.pid] + [n.pid for n in cluster.worker_nodes]
    print(json.dumps({"pids": pids, "session": cluster._session_name}), flush=True)
    os._exit(1)  # no shutdown(), no atexit: as if the test process were killed
""")


def test_nodes_exit_when_the_process_that_started_them_dies():
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=90)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    nodes = [psutil.Process(pid) for pid in info["pids"] if psutil.pid_exists(pid)]
    trees = nodes + [c for n in nodes for c in n.children(recursive=True)]
    _, alive = psutil.wait_procs(trees, timeout=30)
    for proc in alive:  # do not leak them into the rest of the run, then fail
        proc.kill()
    assert not alive, f"still running after their starter died: {[p.pid for p in alive]}"
    deadline = time.monotonic() + 10
    while session_segments({info["session"]}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_segments({info["session"]})
