"""What an idle one-node cluster costs: CPU and wake-ups per second of each distcore process.

Starts ``distcore.init(num_cpus=2)``, lets it settle, then samples every distcore process (head,
workers, this driver) over ``--seconds``: CPU time from /proc and voluntary context switches summed
over each process's threads (a thread that sleeps and wakes counts one per wake-up).

    .venv/bin/python tools/bench/idle_cost.py --seconds 20
"""

from __future__ import annotations

import argparse
import os
import time

import psutil

import distcore


def _wakeups(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def _sample(procs: dict[int, tuple[str, psutil.Process]]) -> dict[int, tuple[float, int]]:
    out = {}
    for pid, (_, proc) in procs.items():
        try:
            times = proc.cpu_times()
            out[pid] = (times.user + times.system, _wakeups(pid))
        except (psutil.Error, OSError):
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after init")
    args = parser.parse_args()
    distcore.init(num_cpus=2)
    try:
        time.sleep(args.settle)
        procs: dict[int, tuple[str, psutil.Process]] = {os.getpid(): ("driver", psutil.Process())}
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "distcore._private.node_main" in cmd:
                procs[proc.pid] = ("head" if "--head" in cmd else "node", proc)
            elif "distcore._private.worker_main" in cmd:
                procs[proc.pid] = ("idle worker", proc)
        before = _sample(procs)
        time.sleep(args.seconds)
        after = _sample(procs)
        print(f"| process | pid | CPU % | wake-ups/s |  (idle cluster, {args.seconds:g} s)")
        print("|---|---:|---:|---:|")
        for pid, (name, _) in sorted(procs.items(), key=lambda item: item[1][0]):
            if pid in before and pid in after:
                cpu = (after[pid][0] - before[pid][0]) / args.seconds * 100
                wakes = (after[pid][1] - before[pid][1]) / args.seconds
                print(f"| {name} | {pid} | {cpu:.2f} | {wakes:.0f} |")
    finally:
        distcore.shutdown()


if __name__ == "__main__":
    main()
