"""``distcore-train run``: an unmodified torchrun-style script as a gang on the cluster.

The gang is placed like a trainer's (placement group, one worker actor per
rank); each worker starts ``python script.py args`` as a child process with
RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and
MASTER_PORT set, and the driver streams every rank's output prefixed with its
rank. The first rank to fail ends the others; the exit code is that rank's.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from typing import Any

import distcore
from distcore.train._internal.config import ScalingConfig
from distcore.train._internal.worker_group import WorkerGroup
from distcore.train.backend import find_free_port

# State of the script a worker process runs (one per worker actor process).
_PROC: dict[str, Any] = {}


# The script is started through this prelude: it asks the kernel to kill it when its worker goes
# (PR_SET_PDEATHSIG), then execs the script in the same process. Doing that in a ``preexec_fn``
# instead would make subprocess fork() the worker, a process with live gRPC threads: gRPC's fork
# handlers then restart its pollers in the child, which could abort (SIGABRT, "epoll_wait error: Bad
# file descriptor") before the exec; a third of 200 starts did under load. Without a preexec_fn,
# subprocess uses vfork, which runs no fork handlers.
_EXEC_PRELUDE = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL)\n"
    "except OSError:\n"
    "    pass\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


def start_script(cmd: list[str], env: dict[str, str], cwd: str | None) -> int:
    """Start the script in this worker; returns its pid.

    ``cmd`` is ``[python, script, *args]``; on Linux the script dies with this worker process.
    """
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    if sys.platform == "linux":
        cmd = [cmd[0], "-c", _EXEC_PRELUDE, *cmd[1:]]
    proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
    lines: collections.deque[str] = collections.deque()
    cond = threading.Condition()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with cond:
                lines.append(line.rstrip("\n"))
                cond.notify_all()
        proc.wait()
        with cond:
            cond.notify_all()

    thread = threading.Thread(target=pump, name="script-output", daemon=True)
    thread.start()
    _PROC.update(proc=proc, lines=lines, cond=cond, thread=thread)
    return proc.pid


def poll_script(timeout: float) -> tuple[list[str], int | None]:
    """New output lines, and the exit code once the script ended and its output is drained."""
    lines: collections.deque[str] = _PROC["lines"]
    cond: threading.Condition = _PROC["cond"]
    proc: subprocess.Popen[str] = _PROC["proc"]
    thread: threading.Thread = _PROC["thread"]
    with cond:
        cond.wait_for(lambda: lines or not thread.is_alive(), timeout=timeout)
        out = list(lines)
        lines.clear()
    code = proc.returncode if not thread.is_alive() else None
    return out, code


def stop_script(grace_s: float = 3.0) -> None:
    proc: subprocess.Popen[str] | None = _PROC.get("proc")
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)


_NOT_FORWARDED = ("CUDA_VISIBLE_DEVICES", "PWD", "OLDPWD", "SHLVL", "_", "HOSTNAME", "RANK", "WORLD_SIZE",
                  "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def forwarded_env(environ: dict[str, str]) -> dict[str, str]:
    """The launcher's environment the ranks inherit (as with torchrun), minus per-rank and distcore variables."""
    return {k: v for k, v in environ.items() if k not in _NOT_FORWARDED and not k.startswith("DISTCORE_")}


def launch(script: str, script_args: list[str], *, num_workers: int, use_gpu: bool = False,
           cpus_per_worker: float = 1.0, master_port: int | None = None, out: Any = None,
           env: dict[str, str] | None = None) -> int:
    """Run ``script`` on ``num_workers`` ranks; stream output; return the exit code (0 when every rank succeeded).

    The ranks inherit ``env`` (default: this process's environment, see :func:`forwarded_env`).
    """
    out = out or sys.stdout
    base_env = forwarded_env(dict(os.environ) if env is None else env)
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"distcore-train run: script {script!r} does not exist")
    scaling = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={
        "CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})})
    group = WorkerGroup(scaling)
    try:
        port = master_port or group.execute_single(0, find_free_port)
        master = group.workers[0].node_ip
        per_rank = []
        for w in group.workers:
            rank_env = {**base_env, "RANK": str(w.world_rank), "WORLD_SIZE": str(num_workers), "LOCAL_RANK": str(w.local_rank),
                   "LOCAL_WORLD_SIZE": str(w.local_world_size), "NODE_RANK": str(w.node_rank),
                   "GROUP_RANK": str(w.node_rank), "MASTER_ADDR": master, "MASTER_PORT": str(port),
                   "TORCHELASTIC_RUN_ID": "distcore"}
            per_rank.append(([sys.executable, path, *script_args], rank_env, os.getcwd()))
        group.execute_each(start_script, per_rank)
        width = len(str(num_workers - 1))
        pending = {w.actor.execute.remote(poll_script, 0.5): w.world_rank for w in group.workers}
        codes: dict[int, int] = {}
        while pending:
            ready, _ = distcore.wait(list(pending), num_returns=1, timeout=30)
            for ref in ready:
                rank = pending.pop(ref)
                try:
                    lines, code = distcore.get(ref, timeout=30)
                except distcore.exceptions.DistcoreError as exc:
                    print(f"distcore-train: rank {rank}'s worker died: {exc}", file=sys.stderr, flush=True)
                    return 1
                for line in lines:
                    print(f"[rank {rank:>{width}}] {line}", file=out, flush=True)
                if code is None:
                    pending[group.workers[rank].actor.execute.remote(poll_script, 0.5)] = rank
                    continue
                codes[rank] = code
                if code != 0:
                    print(f"distcore-train: rank {rank} exited with code {code}; stopping the other ranks",
                          file=sys.stderr, flush=True)
                    try:
                        group.execute(stop_script, timeout=15)
                    except Exception:  # noqa: BLE001
                        pass
                    time.sleep(0.1)
                    return code
        return 0
    finally:
        try:
            group.execute(stop_script, timeout=15)
        except Exception:  # noqa: BLE001
            pass
        group.shutdown()
