"""Fault tolerance with real processes: the memory monitor, dead drivers, bad input.

Every failure is real (SIGKILLed workers and drivers, busy ports, modules
missing on workers); only the memory reading is faked, through
``DISTCORE_MEMORY_USAGE_FILE``, so no test has to exhaust the machine's RAM.
Each bad-input case ends with a task that succeeds: the cluster stays healthy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

import distcore
from distcore._private.testing import assert_no_leaks, wait_for
from distcore.exceptions import ActorDiedError, ObjectStoreFullError, OutOfMemoryError, TaskError
from distcore.util.state import list_actors, list_workers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DISTCORE = [sys.executable, "-m", "distcore.scripts.cli"]


@distcore.remote
def healthy(x=1):
    return x + 1


def assert_healthy():
    assert distcore.get(healthy.remote(41), timeout=30) == 42


# ---------------------------------------------------------------- memory monitor


@pytest.fixture
def low_memory_cluster(isolated_tmp, monkeypatch):
    """A one-node cluster whose memory monitor reads "used bytes" from a file (threshold 0.5)."""
    from distcore.cluster_utils import Cluster

    usage = isolated_tmp / "memory_used"
    usage.write_text("0\n")
    monkeypatch.setenv("DISTCORE_MEMORY_USAGE_FILE", str(usage))
    monkeypatch.setenv("DISTCORE_MEMORY_USAGE_THRESHOLD", "0.5")
    cluster = Cluster(node_dead_timeout_s=5.0)
    cluster.add_node(num_cpus=2)
    cluster.connect()
    yield cluster, usage
    cluster.shutdown()
    assert_no_leaks({cluster._session_name})


def _hog(usage_path: str, attempts_path: str, hog_attempts: int) -> int:
    """Count this attempt; the first ``hog_attempts`` attempts "use" 10x the node's memory until killed."""
    with open(attempts_path, "a") as f:
        f.write("attempt\n")
    with open(attempts_path) as f:
        attempt = len(f.read().splitlines())
    if attempt <= hog_attempts:
        with open(usage_path, "a") as f:  # counts while this process lives
            f.write(f"{os.getpid()} {10 * psutil.virtual_memory().total}\n")
        time.sleep(120)
    return attempt


hog = distcore.remote(_hog)


def test_memory_monitor_kills_the_task_until_its_retries_run_out(low_memory_cluster, tmp_path):
    _, usage = low_memory_cluster
    attempts = tmp_path / "attempts"
    start = time.monotonic()
    with pytest.raises(OutOfMemoryError) as info:
        distcore.get(hog.options(max_retries=2).remote(str(usage), str(attempts), 99), timeout=45)
    assert len(attempts.read_text().splitlines()) == 3  # the first run and max_retries=2 retries
    text = str(info.value)
    for part in ("Task _hog", "memory monitor", "node ", "memory usage", "threshold 50%", "max_retries=2",
                 "num_cpus", "--memory-usage-threshold"):
        assert part in text, (part, text)
    assert time.monotonic() - start < 40
    assert_healthy()  # the killed task's memory went with its worker


def test_memory_monitor_kill_is_retried_and_the_retry_succeeds(low_memory_cluster, tmp_path):
    _, usage = low_memory_cluster
    attempts = tmp_path / "attempts"
    ref = hog.options(max_retries=3).remote(str(usage), str(attempts), 2)
    assert distcore.get(ref, timeout=45) == 3  # killed twice, then ran with memory to spare
    assert_healthy()


def test_memory_monitor_kills_an_actor_and_says_so(low_memory_cluster, tmp_path):
    _, usage = low_memory_cluster

    @distcore.remote
    class Greedy:
        def grow(self, usage_path):
            _hog(usage_path, str(tmp_path / "actor-attempts"), 99)

    actor = Greedy.remote()
    with pytest.raises(ActorDiedError, match="memory monitor killed the worker"):
        distcore.get(actor.grow.remote(str(usage)), timeout=45)
    assert_healthy()


# ---------------------------------------------------------------- owner death

DRIVER = """
import time
import distcore

distcore.init(address={address!r})

@distcore.remote(num_cpus=1)
class Holder:
    def ping(self):
        return "pong"

@distcore.remote(num_cpus=1)
def busy():
    time.sleep(300)

held = Holder.remote()
keep = Holder.options(name="survivor", namespace="ft", lifetime="detached", num_cpus=0.5).remote()
assert distcore.get([held.ping.remote(), keep.ping.remote()], timeout=60) == ["pong", "pong"]
running = [busy.remote() for _ in range(5)]  # more than the free CPUs: some wait for a lease
blob = distcore.put(b"x" * (4 * 1024 * 1024))
time.sleep(2)
print("READY", distcore.get_runtime_context().get_job_id(), flush=True)
time.sleep(300)
"""


def test_a_sigkilled_driver_leaves_nothing_behind_but_its_detached_actor(cluster):
    cluster.add_node(num_cpus=2)
    cluster.add_node(num_cpus=2)
    cluster.connect()
    wait_for(lambda: distcore.available_resources().get("CPU") == 4.0, timeout=10)
    baseline = distcore.available_resources()
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(address=cluster.address)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = driver.stdout.readline()
        assert line.startswith("READY"), line + driver.stderr.read()
        job_id = line.split()[1]
        wait_for(lambda: distcore.available_resources().get("CPU", 0) <= 0.5, timeout=10,
                 message="the driver's actors and tasks should hold every CPU")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.stdout.close()
        driver.stderr.close()

    # Only the detached actor's half CPU stays taken; the queued tasks never start.
    expected = dict(baseline, CPU=baseline["CPU"] - 0.5)
    wait_for(lambda: distcore.available_resources() == expected, timeout=20,
             message=f"resources after the driver died: {distcore.available_resources()}, expected {expected}")
    time.sleep(1.5)  # no queued lease of the dead driver is granted later
    assert distcore.available_resources() == expected

    actors = {a.name or "held": a for a in list_actors() if a.job_id == job_id}
    assert actors["held"].state == "DEAD" and actors["survivor"].state == "ALIVE"
    job_workers = [w for w in list_workers() if w.job_id == job_id and w.worker_type == "WORKER"]
    assert len(job_workers) == 1, job_workers  # the detached actor's
    survivor = distcore.get_actor("survivor", namespace="ft")
    assert distcore.get(survivor.ping.remote(), timeout=30) == "pong"
    assert_healthy()


# ---------------------------------------------------------------- bad input


def test_bad_values_get_typed_errors_and_the_cluster_stays_healthy(isolated_tmp):
    distcore.init(num_cpus=2, object_store_memory=64 * 1024 * 1024)
    try:
        too_big = b"x" * (80 * 1024 * 1024)
        with pytest.raises(ObjectStoreFullError, match="larger than the object store's capacity"):
            distcore.put(too_big)
        assert_healthy()

        @distcore.remote
        def make_big():
            return b"x" * (80 * 1024 * 1024)

        with pytest.raises(ObjectStoreFullError):
            distcore.get(make_big.remote(), timeout=30)
        assert_healthy()

        with pytest.raises(TypeError, match=r"argument 0 of healthy \(lock\).*cannot pickle"):
            healthy.remote(threading.Lock())
        with pytest.raises(TypeError, match=r"value passed to put \(lock\)"):
            distcore.put(threading.Lock())
        assert_healthy()

        @distcore.remote
        def returns_lock():
            return threading.Lock()

        with pytest.raises(TaskError) as info:
            distcore.get(returns_lock.remote(), timeout=30)
        assert isinstance(info.value, TypeError)
        assert "Could not serialize the return value of" in str(info.value)
        assert "returns_lock (lock)" in str(info.value)
        assert_healthy()
    finally:
        distcore.shutdown()


def test_a_module_only_the_driver_has_is_explained(cluster, tmp_path, monkeypatch):
    cluster.add_node(num_cpus=1)
    cluster.connect()
    package = tmp_path / "driver_only"
    package.mkdir()
    (package / "only_here_mod.py").write_text("def answer():\n    return 42\n")
    monkeypatch.syspath_prepend(str(package))

    @distcore.remote
    def uses_it():
        import only_here_mod

        return only_here_mod.answer()

    with pytest.raises(TaskError) as info:
        distcore.get(uses_it.remote(), timeout=30)
    assert isinstance(info.value, ModuleNotFoundError)
    text = str(info.value)
    assert "'only_here_mod' is missing on the worker" in text and "py_modules" in text and "working_dir" in text
    # The advice works.
    shipped = uses_it.options(runtime_env={"py_modules": [str(package / "only_here_mod.py")]})
    assert distcore.get(shipped.remote(), timeout=60) == 42
    assert_healthy()


INTERACTIVE = """
import distcore
distcore.init(address={address!r})

def helper(x):
    return x * 2

@distcore.remote
def double_plus_one(x):
    return helper(x) + 1

@distcore.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += helper(k)
        return self.n

counter = Counter.remote()
print("RESULT", distcore.get(double_plus_one.remote(3), timeout=60), distcore.get(counter.add.remote(5), timeout=60))
"""


def test_functions_defined_in_main_of_an_interactive_session_run(cluster):
    cluster.add_node(num_cpus=1)
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=cluster.auth_token)
    out = subprocess.run([sys.executable, "-"], input=INTERACTIVE.format(address=cluster.address), env=env,
                         capture_output=True, text=True, timeout=50)
    assert "RESULT 7 10" in out.stdout, out.stderr[-3000:]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_wrong_cluster_address_fails_fast_naming_it(cluster):
    cluster.add_node(num_cpus=1)
    address = f"127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        distcore.init(address=address)
    assert time.monotonic() - start < 5
    assert not distcore.is_initialized()
    cluster.connect()
    assert_healthy()


def test_a_head_on_a_busy_port_names_the_port(cluster):
    cluster.add_node(num_cpus=1)
    busy = int(cluster.address.rsplit(":", 1)[1])  # the running head's own port
    env = dict(os.environ)
    start = time.monotonic()
    out = subprocess.run(DISTCORE + ["start", "--head", "--port", str(busy), "--include-dashboard", "false",
                                     "--metrics-export-port", "-1"],
                         env=env, capture_output=True, text=True, timeout=40)
    assert out.returncode != 0
    assert f"port {busy} is already in use" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert time.monotonic() - start < 30
    cluster.connect()
    assert_healthy()
