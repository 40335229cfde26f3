"""Train benchmark: the same DDP job run by torchrun, by distcore's TorchTrainer and by Ray Train.

The job (identical everywhere): an MLP (256 -> 1024 -> 1024 -> 10) under
DistributedDataParallel with gloo on CPU, ``--workers`` ranks, one thread
each, a fixed synthetic batch of 64 rows per rank, ``--steps`` SGD steps.
The trainers' training functions also ``report`` every 50 steps (what a real
loop does); torchrun has nothing to report to.

Measured per run:
  * time to first step: from the launch call (``torchrun`` spawn, ``fit()``) to
    the end of rank 0's first optimizer step (clusters are started beforehand);
  * steady-state steps/s: rank 0's steps after ``--warmup`` divided by their time.

Each launcher runs in its own subprocess ``--repeats`` times; the table shows
the median. ``--compare ray`` adds Ray Train 2.60 from ``.venv-ray``.

Usage::

    .venv/bin/python tools/bench/train_bench.py                     # torchrun vs distcore
    .venv/bin/python tools/bench/train_bench.py --compare ray       # + Ray Train
    .venv/bin/python tools/bench/train_bench.py --quick             # smoke sizes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
TORCHRUN = ROOT / ".venv" / "bin" / "torchrun"
RAY_PYTHON = ROOT / ".venv-ray" / "bin" / "python"

JOB = textwrap.dedent('''
    import json, os, time
    import torch
    import torch.distributed as dist

    def run_job(steps, warmup, out_path, report=None):
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                    torch.nn.ReLU(), torch.nn.Linear(1024, 10))
        model = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(dist.get_rank())
        x = torch.randn(64, 256, generator=g)
        y = torch.randint(0, 10, (64,), generator=g)
        t_first = t_warm = None
        for step in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step == 0:
                t_first = time.time()
            if step == warmup:
                t_warm = time.perf_counter()
            if report is not None and (step + 1) % 50 == 0:
                report({"step": step + 1, "loss": loss.item()})
        t_end = time.perf_counter()
        if dist.get_rank() == 0:
            with open(out_path, "w") as f:
                json.dump({"t_first": t_first, "steady_steps_s": (steps - 1 - warmup) / (t_end - t_warm)}, f)
''')

TORCHRUN_MAIN = JOB + textwrap.dedent('''
    import sys
    dist.init_process_group("gloo")
    run_job(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    dist.destroy_process_group()
''')

TRAINER_MAIN = JOB + textwrap.dedent('''
    import sys, tempfile
    backend, workers, steps, warmup, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    if backend == "ray":
        import ray
        from ray import train
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        for attempt in range(3):  # a loaded machine can miss Ray's fixed 30 s node start-up wait
            try:
                ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
    else:
        import distcore as ray
        from distcore import train
        from distcore.train import RunConfig, ScalingConfig
        from distcore.train.torch import TorchTrainer
        ray.init(num_cpus=workers)

    def loop(config):
        run_job(config["steps"], config["warmup"], config["out"], report=train.report)

    time.sleep(2)  # let the cluster settle (prestarted workers) before timing
    t0 = time.time()
    # distcore's verbose=2 prints where its start-up time went (parsed by the bench)
    extra = {} if backend == "ray" else {"verbose": 2}
    TorchTrainer(loop, train_loop_config={"steps": steps, "warmup": warmup, "out": out_path},
                 scaling_config=ScalingConfig(num_workers=workers),
                 run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="train_bench_"), name="bench",
                                      **extra)).fit()
    with open(out_path) as f:
        res = json.load(f)
    res["t0"] = t0
    with open(out_path, "w") as f:
        json.dump(res, f)
    ray.shutdown()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_torchrun(workdir: str, workers: int, steps: int, warmup: int) -> dict:
    script = os.path.join(workdir, "torchrun_job.py")
    Path(script).write_text(TORCHRUN_MAIN)
    out = os.path.join(workdir, "torchrun.json")
    cmd = [str(TORCHRUN), "--standalone", f"--nproc-per-node={workers}", script, str(steps), str(warmup), out]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=900)
    res = json.loads(Path(out).read_text())
    res["t0"] = t0
    return res


def run_trainer(workdir: str, backend: str, workers: int, steps: int, warmup: int) -> dict:
    script = os.path.join(workdir, f"{backend}_job.py")
    Path(script).write_text(TRAINER_MAIN)
    out = os.path.join(workdir, f"{backend}.json")
    python = RAY_PYTHON if backend == "ray" else PYTHON
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_raylet_start_wait_time_s="120")
    proc = subprocess.run([str(python), script, backend, str(workers), str(steps), str(warmup), out],
                          env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    res = json.loads(Path(out).read_text())
    phases = STARTUP_LINE.search(proc.stdout)
    if phases:
        res["phases"] = {"placed": float(phases[1]), "backend": float(phases[2]), "started": float(phases[3])}
    return res


# distcore's start-up line (RunConfig(verbose=2)): gang placed and workers up, torch.distributed set
# up (waits for the workers' torch import, begun when they start), training function running.
STARTUP_LINE = re.compile(r"workers placed and up ([\d.]+) s, \w+ set up ([\d.]+) s, "
                          r"training function running ([\d.]+) s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", choices=["ray"], default=None)
    parser.add_argument("--quick", action="store_true", help="100 steps, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.repeats = 100, 20, 1
    launchers = ["torchrun", "distcore"]
    if args.compare == "ray":
        if not RAY_PYTHON.exists():
            print(f"--compare ray: {RAY_PYTHON} is missing; skipping Ray", file=sys.stderr)
        else:
            launchers.append("ray")
    results: dict[str, list[dict]] = {name: [] for name in launchers}
    load_before = os.getloadavg()[0]
    for rep in range(args.repeats):
        for name in launchers:  # interleaved, so drifting machine load hits every launcher alike
            with tempfile.TemporaryDirectory(prefix="train_bench_") as workdir:
                try:
                    res = (run_torchrun(workdir, args.workers, args.steps, args.warmup) if name == "torchrun"
                           else run_trainer(workdir, name, args.workers, args.steps, args.warmup))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    if name != "ray":
                        raise
                    print(f"  repeat {rep + 1}: Ray run failed, left out: {str(exc).strip().splitlines()[-1]}",
                          file=sys.stderr, flush=True)
                    continue
            res["ttfs"] = res["t_first"] - res["t0"]
            results[name].append(res)
            print(f"  repeat {rep + 1}/{args.repeats} {name:9s} first step {res['ttfs']:6.2f} s, "
                  f"steady {res['steady_steps_s']:7.1f} steps/s", file=sys.stderr, flush=True)
    results = {n: rs for n, rs in results.items() if rs}
    med = {n: {"ttfs": statistics.median(r["ttfs"] for r in rs),
               "sps": statistics.median(r["steady_steps_s"] for r in rs),
               "ttfs_range": (min(r["ttfs"] for r in rs), max(r["ttfs"] for r in rs)),
               "sps_range": (min(r["steady_steps_s"] for r in rs), max(r["steady_steps_s"] for r in rs))}
           for n, rs in results.items()}
    base = med["torchrun"]
    print(f"\ntrain_bench: DDP MLP, gloo/CPU, {args.workers} workers, {args.steps} steps "
          f"(warmup {args.warmup}), median of {args.repeats} [min-max]; load avg {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| launcher | time to first step (s) | steady steps/s | steps/s vs torchrun | first step vs torchrun |")
    print("|---|---:|---:|---:|---:|")
    for name, m in med.items():
        (t_lo, t_hi), (s_lo, s_hi) = m["ttfs_range"], m["sps_range"]
        print(f"| {name} | {m['ttfs']:.2f} [{t_lo:.2f}-{t_hi:.2f}] | {m['sps']:.1f} [{s_lo:.1f}-{s_hi:.1f}] | "
              f"{m['sps'] / base['sps']:.3f} | {m['ttfs'] - base['ttfs']:+.2f} s |")
    phased = [r for r in results.get("distcore", []) if "phases" in r]
    if phased:
        parts = {k: statistics.median(r["phases"][k] for r in phased) for k in ("placed", "backend", "started")}
        rest = med["distcore"]["ttfs"] - sum(parts.values())
        print(f"\ndistcore first step, where it went (median): workers placed and up {parts['placed']:.2f} s, "
              f"torch.distributed set up (incl. waiting for torch's import) {parts['backend']:.2f} s, "
              f"training function started {parts['started']:.2f} s, then to the end of the first step "
              f"(fit() set-up, DDP wrap, step) {rest:.2f} s")
    d = med["distcore"]
    print(f"\ntarget steps/s within 3% of torchrun: {'PASS' if d['sps'] >= 0.97 * base['sps'] else 'FAIL'} "
          f"({d['sps'] / base['sps']:.3f})")
    print(f"target first step <= torchrun + 3 s: {'PASS' if d['ttfs'] <= base['ttfs'] + 3 else 'FAIL'} "
          f"({d['ttfs'] - base['ttfs']:+.2f} s)")
    if "ray" in med:
        r = med["ray"]
        print(f"target first step <= Ray Train's: {'PASS' if d['ttfs'] <= r['ttfs'] else 'FAIL'} "
              f"(distcore {d['ttfs']:.2f} s, Ray {r['ttfs']:.2f} s; Ray steps/s ratio {r['sps'] / base['sps']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
