"""Worker output: streamed to the driver with a ``(name pid=N)`` prefix,
switched off by ``log_to_driver=False``, and kept in per-worker log files."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import textwrap

import pytest

import distcore
from distcore._private.testing import wait_for

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent(
    """
    import os, sys, time
    import distcore

    ctx = distcore.init(num_cpus=1, log_to_driver={log_to_driver})

    @distcore.remote
    def chatty(word):
        print("task says", word)
        print("to stderr", word, file=sys.stderr)
        print("two\\nlines")
        assert sys.stdout.writable()
        sys.stdout.buffer.write("bytes ok \\u00e9\\n".encode())
        sys.stdout.flush()
        return os.getpid()

    @distcore.remote
    class Speaker:
        def speak(self):
            print("actor speaks")
            return os.getpid()

    @distcore.remote(max_retries=0)
    def dying():
        print("last words", flush=True)
        os._exit(1)

    pid = distcore.get(chatty.remote("hello"), timeout=60)
    try:
        distcore.get(dying.remote(), timeout=60)
    except distcore.exceptions.WorkerCrashedError:
        print("CRASHED", flush=True)
    actor = Speaker.remote()
    actor_pid = distcore.get(actor.speak.remote(), timeout=60)
    print("TASK_PID", pid, flush=True)
    print("ACTOR_PID", actor_pid, flush=True)
    print("SESSION_DIR", ctx["session_dir"], flush=True)
    time.sleep(2.0)  # output streams asynchronously, as in Ray
    distcore.shutdown()
    """
)


def _run_driver(tmp_path, log_to_driver: bool) -> tuple[str, int, int, str]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(log_to_driver=log_to_driver))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, encoding="utf-8", timeout=100,
        env={**os.environ, "DISTCORE_TMPDIR": str(tmp_path / "tmp"), "PYTHONIOENCODING": "utf-8"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    task_pid = int(re.search(r"^TASK_PID (\d+)$", out.stdout, re.M).group(1))
    actor_pid = int(re.search(r"^ACTOR_PID (\d+)$", out.stdout, re.M).group(1))
    session_dir = re.search(r"^SESSION_DIR (.+)$", out.stdout, re.M).group(1)
    return out.stdout, task_pid, actor_pid, session_dir


def _worker_logs(session_dir: str) -> dict[str, str]:
    logs = {}
    for path in glob.glob(os.path.join(session_dir, "logs", "worker-*.log")):
        with open(path, errors="replace") as f:
            logs[path] = f.read()
    return logs


def test_task_and_actor_output_reaches_the_driver_with_a_prefix(tmp_path):
    stdout, task_pid, actor_pid, session_dir = _run_driver(tmp_path, log_to_driver=True)
    lines = stdout.splitlines()
    assert f"(chatty pid={task_pid}) task says hello" in lines
    assert f"(chatty pid={task_pid}) to stderr hello" in lines
    # Every line of a multi-line print carries the prefix.
    assert f"(chatty pid={task_pid}) two" in lines
    assert f"(chatty pid={task_pid}) lines" in lines
    assert f"(chatty pid={task_pid}) bytes ok \u00e9" in lines  # sys.stdout.buffer works too
    assert f"(Speaker pid={actor_pid}) actor speaks" in lines
    # A worker that crashes still gets its last lines to the driver.
    assert "CRASHED" in lines
    assert re.search(r"^\(dying pid=\d+\) last words$", stdout, re.M)
    # Worker start-up noise is not streamed.
    assert not [line for line in lines if line.startswith("(worker pid=")]


def test_log_to_driver_false_keeps_output_in_the_log_files_only(tmp_path):
    stdout, task_pid, actor_pid, session_dir = _run_driver(tmp_path, log_to_driver=False)
    assert "task says hello" not in stdout
    assert "actor speaks" not in stdout
    logs = _worker_logs(session_dir)
    assert logs, f"no worker-*.log files in {session_dir}/logs"
    joined = "\n".join(logs.values())
    assert f"(chatty pid={task_pid}) task says hello" in joined
    assert f"(Speaker pid={actor_pid}) actor speaks" in joined


@distcore.remote
def note(marker):
    print(marker)
    return os.getpid()


def test_worker_log_files_in_the_session_dir(shared_cluster):
    marker = "log-file-marker-7f3a"
    pid = distcore.get(note.remote(marker), timeout=60)

    def found() -> bool:
        return any(f"(note pid={pid}) {marker}" in text for text in _worker_logs(shared_cluster["session_dir"]).values())

    wait_for(found, 10, message="the task's output is not in any worker log file")
    paths = glob.glob(os.path.join(shared_cluster["session_dir"], "logs", "worker-*.log"))
    assert len(paths) >= 1


def test_output_streams_to_this_driver(shared_cluster, capfd):
    marker = "streamed-marker-91c2"
    pid = distcore.get(note.remote(marker), timeout=60)
    seen: list[str] = []

    def streamed() -> bool:
        seen.append(capfd.readouterr().out)
        return f"(note pid={pid}) {marker}" in "".join(seen)

    wait_for(streamed, 10, message=f"the driver did not print the task's output: {''.join(seen)!r}")


def test_output_of_another_job_does_not_reach_this_driver(shared_cluster, capfd):
    with open(os.path.join(shared_cluster["session_dir"], "token")) as f:
        token = f.read().strip()
    script = textwrap.dedent(
        f"""
        import distcore
        distcore.init(address={shared_cluster['address']!r})

        @distcore.remote
        def other_job():
            print("other-job-marker-44d1")

        distcore.get([other_job.remote() for _ in range(4)], timeout=60)
        import time; time.sleep(1.5)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "DISTCORE_AUTH_TOKEN": token})
    assert out.returncode == 0, out.stderr
    assert "other-job-marker-44d1" in out.stdout  # its own driver sees it
    # Ours runs a task of its own afterwards, on the same node, and sees only that.
    pid = distcore.get(note.remote("own-job-marker"), timeout=60)
    seen: list[str] = []

    def streamed() -> bool:
        seen.append(capfd.readouterr().out)
        return f"(note pid={pid}) own-job-marker" in "".join(seen)

    wait_for(streamed, 10, message="this driver's own task output did not arrive")
    assert "other-job-marker-44d1" not in "".join(seen)
