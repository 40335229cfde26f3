"""When a driver finishes, its workers and actors go; detached actors stay."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import distcore
from distcore._private.testing import wait_for
from distcore.util.state import list_workers

pytestmark = pytest.mark.integration

DRIVER = """
import distcore
distcore.init(address={address!r})

@distcore.remote
def f():
    return 1

@distcore.remote
class Service:
    def ping(self):
        return "pong"

assert distcore.get([f.remote() for _ in range(4)]) == [1, 1, 1, 1]
plain = Service.remote()
keep = Service.options(name="keeper", namespace="ops", lifetime="detached").remote()
assert distcore.get([plain.ping.remote(), keep.ping.remote()]) == ["pong", "pong"]
print("driver done", distcore.get_runtime_context().get_job_id())
"""


def test_finished_jobs_workers_are_ended_but_detached_actors_stay(cluster):
    cluster.add_node(num_cpus=2)
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token)
    out = subprocess.run([sys.executable, "-c", DRIVER.format(address=cluster.address)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert "driver done" in out.stdout, out.stderr
    job_id = out.stdout.split("driver done ")[1].strip()
    cluster.connect()

    def job_workers():
        return [w for w in list_workers() if w.job_id == job_id and w.worker_type == "WORKER"]

    # Only the detached actor's worker remains for the finished job.
    wait_for(lambda: len(job_workers()) == 1, timeout=20,
             message=f"workers of the finished job: {job_workers()}")
    assert distcore.get(distcore.get_actor("keeper", namespace="ops").ping.remote(), timeout=60) == "pong"
