"""distcore-train run: unmodified torchrun-style scripts as a gang, output streamed with rank prefixes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")   # env:// from RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(f"rank={os.environ['RANK']} local={os.environ['LOCAL_RANK']} world={os.environ['WORLD_SIZE']} "
          f"sum={t.item():g} args={sys.argv[1:]}")
    dist.destroy_process_group()
    if os.environ.get("FAIL_RANK") == os.environ["RANK"]:
        print("failing on purpose", file=sys.stderr)
        sys.exit(3)
""")


def _run(cluster, tmp_path, *args, env_extra=None):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    with open(os.path.join(cluster["session_dir"], "token")) as f:
        env = dict(os.environ, DISTCORE_AUTH_TOKEN=f.read().strip(), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "distcore.train.scripts", "run", "--address", cluster["address"], *args,
         str(script), "--lr", "0.1"],
        env=env, capture_output=True, text=True, timeout=110)


def test_run_streams_each_rank_with_its_prefix(cluster, tmp_path) -> None:
    proc = _run(cluster, tmp_path, "--num-workers", "2")
    assert proc.returncode == 0, proc.stderr
    for rank in (0, 1):
        assert f"[rank {rank}] rank={rank} local={rank} world=2 sum=3 args=['--lr', '0.1']" in proc.stdout


@pytest.mark.slow
def test_a_failing_rank_sets_the_exit_code_and_is_named(cluster, tmp_path) -> None:
    proc = _run(cluster, tmp_path, "--num-workers", "2", env_extra={"FAIL_RANK": "1"})
    assert proc.returncode == 3
    assert "[rank 1] failing on purpose" in proc.stdout
    assert "rank 1 exited with code 3" in proc.stderr


def test_missing_script_and_oversized_gang_are_clear_errors(cluster, tmp_path) -> None:
    with open(os.path.join(cluster["session_dir"], "token")) as f:
        env = dict(os.environ, DISTCORE_AUTH_TOKEN=f.read().strip())
    proc = subprocess.run([sys.executable, "-m", "distcore.train.scripts", "run", "--address", cluster["address"],
                           "--num-workers", "2", str(tmp_path / "nope.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = _run(cluster, tmp_path, "--num-workers", "9")
    assert proc.returncode == 2 and "short by" in proc.stderr


def test_a_rank_script_dies_with_the_worker_that_started_it(tmp_path) -> None:
    """The worker process starts the script (without forking a process that has gRPC threads);
    when that worker is killed, the kernel ends the script too."""
    script = tmp_path / "sleeper.py"
    script.write_text("import os, sys, time\nprint(os.getpid(), sys.argv[1:], flush=True)\ntime.sleep(60)\n")
    starter = textwrap.dedent(f"""
        import time
        from distcore.train._internal import launcher
        launcher.start_script([{sys.executable!r}, {str(script)!r}, "--x", "1"], {{}}, None)
        while True:
            lines, code = launcher.poll_script(1.0)
            if lines:
                print(lines[0], flush=True)
            time.sleep(0.05)
    """)
    worker = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        pid_text, args = worker.stdout.readline().split(" ", 1)
        assert args.strip() == "['--x', '1']"
        script_pid = int(pid_text)
        os.kill(script_pid, 0)   # running
    finally:
        worker.kill()
        worker.wait(timeout=10)
        worker.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(script_pid):
        time.sleep(0.05)
    assert not _alive(script_pid), "the rank's script outlived its worker"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
