"""The `distcore` console script: start, status, a driver with address="auto", stop."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from distcore._private.testing import child_processes

pytestmark = pytest.mark.integration

DISTCORE = [sys.executable, "-m", "distcore.scripts.cli"]


def run(args, env, timeout=60):
    return subprocess.run(DISTCORE + args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def env(isolated_tmp):
    e = dict(os.environ)
    yield e
    run(["stop", "--force"], e)


def test_start_status_connect_stop(env):
    out = run(["start", "--head", "--port", "0", "--num-cpus", "1"], env)
    assert out.returncode == 0, out.stderr
    assert "distcore head node started at 127.0.0.1:" in out.stdout
    address = out.stdout.split("started at ")[1].split()[0]
    out = run(["start", "--address", address, "--num-cpus", "2", "--resources", '{"gadget": 1}'], env)
    assert out.returncode == 0, out.stderr

    status = run(["status"], env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("ALIVE") == 2
    assert "0/3 CPU" in status.stdout and "0/1 gadget" in status.stdout

    driver = subprocess.run(
        [sys.executable, "-c",
         "import distcore; distcore.init(address='auto');"
         "f = distcore.remote(resources={'gadget': 1})(lambda: 41 + 1);"
         "print('answer', distcore.get(f.remote(), timeout=60))"],
        env=env, capture_output=True, text=True, timeout=90,
    )
    assert "answer 42" in driver.stdout, driver.stderr

    stop = run(["stop"], env)
    assert stop.returncode == 0 and "stopped 2 node(s)" in stop.stdout
    assert run(["status"], env).returncode != 0


def test_bad_arguments_are_explained(env):
    out = run(["start"], env)
    assert out.returncode == 2 and "exactly one of --head or --address" in out.stderr
    out = run(["start", "--head", "--port", "0", "--resources", "{oops"], env)
    assert out.returncode != 0 and "--resources is not valid JSON" in out.stderr
    out = run(["status"], env)
    assert out.returncode == 1 and "no running distcore cluster" in out.stderr
    assert not child_processes()
