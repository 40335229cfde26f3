"""CPU per placement group, by process: the head (control store), the driver, the rest.

Runs the loop of ``core_micro.py``'s "placement group create/removal" (create 30
groups of one ``{"custom": 0.001}`` bundle, ``wait()`` on each, remove each) on a
fresh one-node cluster and prints, per round, groups per second and the CPU
microseconds per group (user + system, from ``psutil``) of the driver, the head
process and every other process of the cluster. CPU per group moves far less
with the machine's load than the wall-clock rate does.

    .venv/bin/python tools/bench/pg_cpu.py                       # 3 rounds of 1,500 groups
    DISTCORE_GCS_FRAMED=0 .venv/bin/python tools/bench/pg_cpu.py # control-store calls over gRPC
    PYTHONPATH=/tmp/base/packages/core/src .venv/bin/python tools/bench/pg_cpu.py  # another tree

(For another tree: ``git archive <commit> packages/core/src | tar -x -C /tmp/base``.)
"""

from __future__ import annotations

import argparse
import time

import psutil


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--groups", type=int, default=1500, help="groups per round (a multiple of 30)")
    args = ap.parse_args()

    import distcore
    from distcore.util import placement_group, remove_placement_group

    distcore.init(num_cpus=2, resources={"custom": 1})
    try:
        me = psutil.Process()
        kids = me.children(recursive=True)
        head = [c for c in kids if "node_main" in " ".join(c.cmdline())]
        print(f"# distcore from {distcore.__file__}; head pid {[h.pid for h in head]}")

        def loop(n: int) -> None:
            for _ in range(max(1, n // 30)):
                pgs = [placement_group([{"custom": 0.001}]) for _ in range(30)]
                for pg in pgs:
                    pg.wait(timeout_seconds=30)
                for pg in pgs:
                    remove_placement_group(pg)

        def cpu() -> dict[int, float]:
            out = {}
            for proc in [me, *kids]:
                try:
                    t = proc.cpu_times()
                    out[proc.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    out[proc.pid] = 0.0
            return out

        loop(300)  # warm-up
        print(f"{'groups/s':>9} | CPU us/group: {'driver':>7} {'head':>7} {'others':>7}")
        for _ in range(args.rounds):
            before = cpu()
            start = time.perf_counter()
            loop(args.groups)
            elapsed = time.perf_counter() - start
            after = cpu()
            n = max(1, args.groups // 30) * 30
            head_pids = [h.pid for h in head]
            groups = {"driver": [me.pid], "head": head_pids,
                      "others": [k.pid for k in kids if k.pid not in head_pids]}
            us = {name: sum(after[p] - before[p] for p in pids) / n * 1e6 for name, pids in groups.items()}
            print(f"{n / elapsed:9.0f} | {'':14}{us['driver']:7.0f} {us['head']:7.0f} {us['others']:7.0f}", flush=True)
    finally:
        distcore.shutdown()


if __name__ == "__main__":
    main()
