"""``distcore microbenchmark``: Ray's core microbenchmark workloads on distcore.

As ``ray microbenchmark``: starts a one-node cluster in this process, times
each workload (ops/s, mean ± std over timed rounds after a warm-up) and prints
one line per metric. The workloads live in
:mod:`distcore._private.microbenchmark`; ``tools/bench/core_micro.py`` runs
the same definitions on distcore and Ray side by side.

Examples::

    distcore microbenchmark
    distcore microbenchmark --only "tasks sync" --only "actor calls" --rounds 6
    distcore microbenchmark --json results.json
"""

from __future__ import annotations

import argparse
import json
import sys

from distcore.scripts.cli import DISTCORE


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", metavar="NAME-SUBSTRING",
                   help="run the metrics whose name contains this (repeatable; default: all)")
    p.add_argument("--rounds", type=int, default=4, help="timed rounds per metric (default 4)")
    p.add_argument("--round-s", type=float, default=2.0, help="seconds per timed round (default 2)")
    p.add_argument("--warmup-s", type=float, default=1.0, help="warm-up seconds per metric (default 1)")
    p.add_argument("--sizes", choices=("small", "ray"), default="small",
                   help="per-call batch sizes: small (default, for small machines) or ray_perf.py's")
    p.add_argument("--json", metavar="OUT.json", help="also write the rates of every round here")


def _run(args: argparse.Namespace) -> int:
    import distcore
    from distcore._private import microbenchmark as mb

    if args.rounds < 1 or args.round_s <= 0 or args.warmup_s < 0:
        print(f"distcore microbenchmark: --rounds must be >= 1 and --round-s > 0 (got {args.rounds}, "
              f"{args.round_s})", file=sys.stderr)
        return 2
    selected = mb.select(mb.workloads(distcore, sizes=args.sizes), args.only)
    if not selected:
        print(f"distcore microbenchmark: no metric name contains any of {args.only}", file=sys.stderr)
        return 2
    width = max(len(w.name) for w in selected)

    def show(r: mb.Result) -> None:
        text = f"error: {r.error}" if r.error else f"{mb.format_rate(r.mean, r.std)} {r.unit}"
        print(f"{r.name:<{width}}  {text}", flush=True)

    distcore.init(resources={"custom": 100})
    try:
        results = mb.run_suite(distcore, selected, rounds=args.rounds, round_s=args.round_s,
                               warmup_s=args.warmup_s, on_result=show)
    except KeyboardInterrupt:
        return 130
    finally:
        distcore.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_json() for r in results], f, indent=1)
    return 1 if any(r.error for r in results) else 0


DISTCORE.add("microbenchmark", "run Ray's core microbenchmark workloads on a local cluster", _run, _configure)
