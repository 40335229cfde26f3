"""PPO on CartPole-v1: distcore-rllib vs RLlib (Ray) vs Stable-Baselines3.

For 0, 1 and 2 env runners it measures
  * sampling throughput: env steps/s of synchronous sampling rounds (1024 steps per round,
    8 envs per runner, fixed weights) through each library's own runner group;
  * learning: wall time and env steps until ``episode_return_mean`` (mean of the last 100
    episodes in all three libraries) reaches 475, with the same PPO hyperparameters, for each
    seed of ``--seeds`` (distcore) / ``--other-seeds`` (RLlib, SB3); the table shows the median
    over the seeds that reached 475 and how many did.
SB3 (single process, 8 envs in a DummyVecEnv) runs the learning measurement only.

Every measurement runs in its own subprocess (one cluster at a time) under a timeout; a
whole-run ``--budget`` (seconds) caps each learning run so the table is out in time (runs
that would start past it are reported as skipped). Usage::

    .venv/bin/python tools/bench/rllib_bench.py                        # distcore only
    .venv/bin/python tools/bench/rllib_bench.py --compare ray --compare sb3   # the full table, < 10 min
    .venv/bin/python tools/bench/rllib_bench.py --runners 0 --sample-seconds 5 --max-time 120
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = {"distcore": os.path.join(ROOT, ".venv", "bin", "python"),
          "ray": os.path.join(ROOT, ".venv-ray", "bin", "python"),
          "sb3": os.path.join(ROOT, ".venv-ray", "bin", "python")}

# One set of PPO hyperparameters for all three libraries.
HP = {"lr": 1e-3, "batch": 1024, "minibatch": 256, "epochs": 10, "lambda": 0.95, "gamma": 0.99,
      "clip": 0.2, "vf_coeff": 0.5, "entropy": 0.0, "hidden": [64, 64], "envs_per_runner": 8}
TARGET = 475.0
SAMPLE_ROUND = 1024


# ---------------------------------------------------------------------------------------- workers
def _distcore(mode: str, runners: int, args: argparse.Namespace) -> dict:
    import distcore
    from distcore.rllib.algorithms.ppo import PPOConfig

    if runners:
        distcore.init(num_cpus=runners + 1)
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=runners, num_envs_per_env_runner=HP["envs_per_runner"])
              .training(lr=HP["lr"], train_batch_size=HP["batch"], minibatch_size=HP["minibatch"],
                        num_epochs=HP["epochs"], lambda_=HP["lambda"], gamma=HP["gamma"], clip_param=HP["clip"],
                        vf_loss_coeff=HP["vf_coeff"], entropy_coeff=HP["entropy"], use_kl_loss=False)
              .rl_module(model_config={"fcnet_hiddens": HP["hidden"], "fcnet_activation": "tanh"})
              .debugging(seed=args.seed))
    algo = config.build()
    try:
        if mode == "sample":
            group = algo.env_runner_group
            group.sample(SAMPLE_ROUND)  # warm-up
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.sample_seconds:
                steps += sum(r["env_steps"] for r in group.sample(SAMPLE_ROUND))
            return {"steps_per_s": steps / (time.perf_counter() - started)}
        return _learn_loop(algo.train, args.max_time)
    finally:
        algo.stop()
        if runners:
            distcore.shutdown()


def _learn_loop(train, max_time: float) -> dict:
    started = time.perf_counter()
    ret, steps = float("nan"), 0
    while time.perf_counter() - started < max_time:
        result = train()
        ret = result["env_runners"]["episode_return_mean"]
        steps = result["num_env_steps_sampled_lifetime"]
        if ret == ret and ret >= TARGET:
            return {"reached": True, "wall_s": time.perf_counter() - started, "env_steps": steps, "return": ret}
    return {"reached": False, "wall_s": time.perf_counter() - started, "env_steps": steps, "return": ret}


def _ray(mode: str, runners: int, args: argparse.Namespace) -> dict:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    ray.init(num_cpus=runners + 1, include_dashboard=False, log_to_driver=False)
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=runners, num_envs_per_env_runner=HP["envs_per_runner"])
              .training(lr=HP["lr"], train_batch_size_per_learner=HP["batch"], minibatch_size=HP["minibatch"],
                        num_epochs=HP["epochs"], lambda_=HP["lambda"], gamma=HP["gamma"], clip_param=HP["clip"],
                        vf_loss_coeff=HP["vf_coeff"], entropy_coeff=HP["entropy"], use_kl_loss=False)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=HP["hidden"], fcnet_activation="tanh"))
              .debugging(seed=args.seed))
    algo = config.build_algo()
    try:
        if mode == "sample":
            def one_round() -> int:
                episodes = synchronous_parallel_sample(worker_set=algo.env_runner_group, max_env_steps=SAMPLE_ROUND,
                                                       concat=False, _uses_new_env_runners=True)
                flat = [e for item in episodes for e in (item if isinstance(item, list) else [item])]
                return sum(len(e) for e in flat)

            one_round()
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.sample_seconds:
                steps += one_round()
            return {"steps_per_s": steps / (time.perf_counter() - started)}
        return _learn_loop(algo.train, args.max_time)
    finally:
        algo.stop()
        ray.shutdown()


def _sb3(mode: str, runners: int, args: argparse.Namespace) -> dict:
    import numpy as np
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=HP["envs_per_runner"], seed=args.seed)
    model = PPO("MlpPolicy", env, n_steps=HP["batch"] // HP["envs_per_runner"], batch_size=HP["minibatch"],
                n_epochs=HP["epochs"], learning_rate=HP["lr"], gae_lambda=HP["lambda"], gamma=HP["gamma"],
                clip_range=HP["clip"], ent_coef=HP["entropy"], vf_coef=HP["vf_coeff"], seed=args.seed,
                policy_kwargs={"net_arch": HP["hidden"]}, device="cpu", verbose=0)
    started = time.perf_counter()
    state = {"reached": False, "return": float("nan")}

    class StopAtTarget(BaseCallback):
        def _on_rollout_end(self) -> None:
            infos = [e["r"] for e in self.model.ep_info_buffer]
            if infos:
                state["return"] = float(np.mean(infos))
                state["reached"] = state["return"] >= TARGET

        def _on_step(self) -> bool:
            return not state["reached"] and time.perf_counter() - started < args.max_time

    model.learn(total_timesteps=10_000_000, callback=StopAtTarget())
    return {"reached": state["reached"], "wall_s": time.perf_counter() - started,
            "env_steps": int(model.num_timesteps), "return": state["return"]}


WORKERS = {"distcore": _distcore, "ray": _ray, "sb3": _sb3}


# ---------------------------------------------------------------------------------------- driver
def _run(engine: str, mode: str, runners: int, args: argparse.Namespace, seed: int, max_time: float) -> dict:
    result = _run_once(engine, mode, runners, args, seed, max_time)
    if "error" in result and result["error"] != "timeout":  # one retry: a cluster start can fail on a loaded box
        result = _run_once(engine, mode, runners, args, seed, max_time)
    return result


def _run_once(engine: str, mode: str, runners: int, args: argparse.Namespace, seed: int, max_time: float) -> dict:
    cmd = [PYTHON[engine], os.path.abspath(__file__), "--worker", engine, "--mode", mode, "--runners", str(runners),
           "--sample-seconds", str(args.sample_seconds), "--max-time", str(max_time), "--seed", str(seed)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", RAY_USAGE_STATS_ENABLED="0")
    if not os.path.exists(PYTHON[engine]):
        return {"error": f"no {PYTHON[engine]}"}
    try:
        limit = args.sample_seconds + args.start_timeout if mode == "sample" else max_time + args.start_timeout
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1][:120]}


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _learn_cell(runs: list[dict]) -> tuple[str, str, float | None]:
    """(wall cell, steps cell, median wall) over the seeds' learning runs."""
    if not runs:
        return "—", "—", None
    runs = [r for r in runs if not r.get("skipped")] or runs[:1]  # seeds the budget skipped do not count
    reached = [r for r in runs if r.get("reached")]
    if not reached:
        first = runs[0]
        why = "skipped (budget)" if first.get("skipped") else first.get("error", f"not reached ({first.get('return', 0):.0f})")
        return str(why), "—", None
    walls = [r["wall_s"] for r in reached]
    med = _median(walls)
    tag = f" ({len(reached)}/{len(runs)} seeds)" if len(runs) > 1 else ""
    spread = f" [{min(walls):.1f}-{max(walls):.1f}]" if len(reached) > 1 else ""
    return f"{med:.1f}{spread}{tag}", _fmt(int(_median([r["env_steps"] for r in reached])), ","), med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="append", default=[], choices=["ray", "sb3"])
    parser.add_argument("--runners", default="0,1,2", help="comma-separated env runner counts")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--max-time", type=float, default=150.0, help="give up one learning run after this many s")
    parser.add_argument("--seeds", default="0,1,2", help="distcore learning seeds (median reported)")
    parser.add_argument("--other-seeds", default="0", help="RLlib and SB3 learning seeds (each run takes minutes)")
    parser.add_argument("--budget", type=float, default=570.0, help="whole-run wall budget in seconds")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="seconds allowed, on top of the measured work, for a run's imports and cluster start")
    parser.add_argument("--skip-learn", action="store_true")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["sample", "learn"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](args.mode, int(args.runners), args)), flush=True)
        return 0
    started = time.perf_counter()
    runners = [int(r) for r in args.runners.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    other_seeds = [int(s) for s in args.other_seeds.split(",")]
    engines = ["distcore"] + [e for e in ("ray",) if e in args.compare]
    load_before = os.getloadavg()[0]
    results: dict = {}

    def log(key: tuple, value: dict) -> None:
        print(f"  [{time.perf_counter() - started:5.0f}s] {key}: {value}", file=sys.stderr, flush=True)

    # 1. Sampling throughput, both libraries back to back per runner count (same-load ratios).
    for n in runners:
        for engine in engines:
            results[(engine, "sample", n)] = _run(engine, "sample", n, args, 0, args.max_time)
            log((engine, "sample", n), results[(engine, "sample", n)])
    # 2. Learning, each run capped by the budget left: distcore's first seed, SB3 and RLlib first (the
    #    comparisons), then distcore's further seeds (the medians), so a tight budget drops only those.
    plan = [("distcore", n, seeds[0]) for n in runners]
    if "sb3" in args.compare:
        plan += [("sb3", 0, seed) for seed in other_seeds]
    if "ray" in args.compare:
        plan += [("ray", n, seed) for n in runners for seed in other_seeds]
    plan += [("distcore", n, seed) for seed in seeds[1:] for n in runners]
    for engine, n, seed in ([] if args.skip_learn else plan):
        left = args.budget - (time.perf_counter() - started)
        if left < 30:
            out = {"skipped": True, "error": "skipped (budget)"}
        else:
            out = _run(engine, "learn", n, args, seed, min(args.max_time, left - 20))
        results.setdefault((engine, "learn", n), []).append({**out, "seed": seed})
        log((engine, "learn", n, seed), out)

    name = {"distcore": "distcore-rllib", "ray": "RLlib 2.60", "sb3": "Stable-Baselines3"}
    print(f"\nPPO CartPole-v1, {HP['envs_per_runner']} envs per runner, batch {HP['batch']}, minibatch "
          f"{HP['minibatch']} x {HP['epochs']} epochs, lr {HP['lr']}, [64, 64] tanh; seeds {args.seeds} "
          f"(distcore), {args.other_seeds} (RLlib, SB3); load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}; "
          f"bench wall {time.perf_counter() - started:.0f} s\n")
    print("| runners | library | env steps/s sampled | vs RLlib | wall to 475 (s), median [range] | env steps to 475 |")
    print("|--------:|---------|--------------------:|---------:|----------------:|-----------------:|")
    walls: dict = {}
    for n in runners:
        ray_rate = results.get(("ray", "sample", n), {}).get("steps_per_s")
        for engine in engines:
            s = results[(engine, "sample", n)]
            rate = s.get("steps_per_s")
            ratio = f"{rate / ray_rate:.2f}x" if rate and ray_rate and engine != "ray" else "—"
            wall, steps, walls[(engine, n)] = _learn_cell(results.get((engine, "learn", n), []))
            print(f"| {n} | {name[engine]} | {_fmt(rate, ',.0f') if rate else s.get('error', '—')} | {ratio} | "
                  f"{wall} | {steps} |")
    if ("sb3", "learn", 0) in results:
        wall, steps, walls[("sb3", 0)] = _learn_cell(results[("sb3", "learn", 0)])
        print(f"| (1 process) | {name['sb3']} | — | — | {wall} | {steps} |")
    # Targets (issue 11): steps/s >= 1.5x RLlib with the same runners; time to 475 <= RLlib's and <= SB3's.
    print()
    for n in runners:
        ours, ray_rate = results[("distcore", "sample", n)].get("steps_per_s"), results.get(
            ("ray", "sample", n), {}).get("steps_per_s")
        if ours and ray_rate:
            print(f"target steps/s >= 1.5x RLlib, {n} runners: {ours / ray_rate:.2f}x "
                  f"{'MET' if ours >= 1.5 * ray_rate else 'NOT MET'}")
        for other in ("ray", "sb3"):
            theirs = walls.get((other, n if other == "ray" else 0))
            if other in args.compare and not args.skip_learn:
                mine = walls.get(("distcore", n))
                if mine is None:
                    verdict = "NOT MET (distcore did not reach 475)" if results.get(
                        ("distcore", "learn", n), [{}])[0].get("reached") is False else "not measured"
                elif theirs is None:
                    verdict = f"MET ({name[other]} did not reach 475 or was not measured)"
                else:
                    verdict = "MET" if mine <= theirs else "NOT MET"
                print(f"target time to 475 <= {name[other]}, {n} runners: distcore {_fmt(mine, '.1f')} s vs "
                      f"{_fmt(theirs, '.1f')} s {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{e}/{m}/{n}": v for (e, m, n), v in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
