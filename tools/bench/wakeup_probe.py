"""Round trips between two processes when the caller works between calls (tune's case).

A sequential search spends ~1.5 ms in the searcher between two trials; by then the trial
actor's process has gone idle, and waking it is part of every trial's round trip. This
probe separates the machine's share from distcore's:

1. two plain Python processes over a Unix socket pair (no distcore): round trip back to
   back, and with a busy pause of ``--gap-ms`` in the caller before each call;
2. a distcore actor call shaped like a tune trial (a dict spec in, a results dict out), the
   same two ways, and with the caller and the actor pinned to different CPUs (an
   experiment: distcore pins nothing).

Usage::

    .venv/bin/python tools/bench/wakeup_probe.py [--gap-ms 1.5] [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from collections.abc import Callable


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _median_us(call: Callable[[], object], gap_s: float, n: int) -> float:
    times = []
    for _ in range(n):
        _spin(gap_s)
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def raw_pair(gap_s: float, n: int) -> tuple[float, float]:
    """Median round trip (us) of two plain processes: back to back, and after a busy pause."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()  # before any thread exists in this process
    if pid == 0:
        a.close()
        while b.recv(4096):
            b.sendall(b"r" * 300)
        os._exit(0)
    b.close()

    def call() -> None:
        a.sendall(b"q" * 200)
        a.recv(4096)

    try:
        return _median_us(call, 0.0, n), _median_us(call, gap_s, n)
    finally:
        a.close()
        os.waitpid(pid, 0)


def _pin(pid: int, cpus: set[int]) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def distcore_actor(gap_s: float, n: int) -> dict[str, float]:
    import distcore

    @distcore.remote(num_cpus=1, max_concurrency=4)
    class Trial:
        def pid(self) -> int:
            return os.getpid()

        def start(self, spec: dict) -> dict:
            config = spec["config"]
            return {"results": [({"loss": (config["x"] - 3) ** 2, "training_iteration": 1}, None)],
                    "status": "done", "seq": 1}

    distcore.init(num_cpus=2)
    try:
        actor = Trial.remote()
        worker = distcore.get(actor.pid.remote(), timeout=60)
        spec = {"trial_id": "t_00001", "trial_dir": "/tmp/experiment/t_00001", "config": {"x": 1.0, "y": 2.0},
                "checkpoint_path": None, "start_iteration": 0, "window": 256}

        def call() -> None:
            distcore.get(actor.start.remote(spec), timeout=30)

        out = {"back to back": _median_us(call, 0.0, n), f"after {gap_s * 1e3:g} ms busy": _median_us(call, gap_s, n)}
        everything = os.sched_getaffinity(0)
        if len(everything) >= 2:
            first, second = sorted(everything)[:2]
            _pin(os.getpid(), {first})
            _pin(worker, {second})
            out[f"after {gap_s * 1e3:g} ms busy, pinned apart"] = _median_us(call, gap_s, n)
            _pin(os.getpid(), everything)
            _pin(worker, everything)
        return out
    finally:
        distcore.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gap-ms", type=float, default=1.5, help="busy pause in the caller before each call")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    gap = args.gap_ms / 1e3
    tight, paused = raw_pair(gap, args.calls)
    print("| round trip (median) | us |")
    print("|---|---:|")
    print(f"| two plain processes, back to back | {tight:.0f} |")
    print(f"| two plain processes, after {args.gap_ms:g} ms busy | {paused:.0f} |")
    for label, value in distcore_actor(gap, args.calls).items():
        print(f"| distcore actor call, {label} | {value:.0f} |")
    print(f"\ncommand: .venv/bin/python tools/bench/wakeup_probe.py --gap-ms {args.gap_ms:g} --calls {args.calls}")


if __name__ == "__main__":
    main()
