"""Actor start latency: ``.remote()`` on an actor class to the reply of its first call.

A one-node cluster of 2 CPUs; each round creates a 1-CPU actor, calls ``ping`` once, kills it,
then pauses (``--gap``, 0.6 s) so the worker pool is warm again, as it is for an experiment's
first trial or a replica scaled up. Each system runs in a fresh process of its own interpreter.

Usage::

    .venv/bin/python tools/bench/actor_start.py                  # distcore only
    .venv/bin/python tools/bench/actor_start.py --compare ray    # + Ray 2.60 from .venv-ray
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY_PYTHON = ROOT / ".venv-ray" / "bin" / "python"


class Pinger:
    def ping(self) -> int:
        return 1


def probe(system: str, rounds: int, gap: float) -> dict:
    if system == "ray":
        import ray as dc

        dc.init(num_cpus=2, include_dashboard=False)
    else:
        import distcore as dc

        dc.init(num_cpus=2)
    actor_cls = dc.remote(Pinger)
    warm = actor_cls.options(num_cpus=1).remote()  # first use of the class: exported here
    dc.get(warm.ping.remote(), timeout=60)
    dc.kill(warm)
    times = []
    for _ in range(rounds):
        time.sleep(gap)
        start = time.perf_counter()
        actor = actor_cls.options(num_cpus=1).remote()
        dc.get(actor.ping.remote(), timeout=60)
        times.append(time.perf_counter() - start)
        dc.kill(actor)
    dc.shutdown()
    ordered = sorted(times)
    return {"system": system, "rounds": rounds, "median_ms": statistics.median(times) * 1e3,
            "p90_ms": ordered[int(len(ordered) * 0.9) - 1] * 1e3, "min_ms": ordered[0] * 1e3}


def run(system: str, rounds: int, gap: float) -> dict:
    python = str(RAY_PYTHON) if system == "ray" else sys.executable
    out = subprocess.run([python, __file__, "--probe", system, "--rounds", str(rounds), "--gap", str(gap)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{system} probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["ray"], help="run the same rounds on Ray from .venv-ray")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--gap", type=float, default=0.6, help="seconds between rounds (the pool refills)")
    parser.add_argument("--probe", choices=["distcore", "ray"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.rounds, args.gap)))
        return
    rows = [run("distcore", args.rounds, args.gap)]
    if args.compare == "ray":
        if not RAY_PYTHON.exists():
            sys.exit(f"--compare ray needs {RAY_PYTHON} (pip install 'ray==2.60.0' in .venv-ray)")
        rows.append(run("ray", args.rounds, args.gap))
    print("| system | median ms | p90 ms | min ms |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['system']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['min_ms']:.1f} |")
    if len(rows) == 2:
        print(f"\nRay / distcore (median): {rows[1]['median_ms'] / rows[0]['median_ms']:.2f}x")


if __name__ == "__main__":
    main()
