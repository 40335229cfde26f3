"""PPO on CartPole-v1: distcore-rllib vs RLlib (Ray) vs Stable-Baselines3.

For 0, 1 and 2 env runners it measures
  * sampling throughput: env steps/s of synchronous sampling rounds (1024 steps per round,
    8 envs per runner, fixed weights) through each library's own runner group;
  * learning: wall time and env steps until ``episode_return_mean`` (mean of the last 100
    episodes in all three libraries) reaches 475, with the same PPO hyperparameters.
SB3 (single process, 8 envs in a DummyVecEnv) runs the learning measurement only.

Every measurement runs in its own subprocess (one cluster at a time). Usage::

    .venv/bin/python tools/bench/rllib_bench.py                        # distcore only
    .venv/bin/python tools/bench/rllib_bench.py --compare ray --compare sb3
    .venv/bin/python tools/bench/rllib_bench.py --runners 0 --sample-seconds 5 --max-time 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = {"distcore": os.path.join(ROOT, ".venv", "bin", "python"),
          "ray": os.path.join(ROOT, ".venv-ray", "bin", "python"),
          "sb3": os.path.join(ROOT, ".venv-ray", "bin", "python")}

# One set of PPO hyperparameters for all three libraries.
HP = {"lr": 1e-3, "batch": 1024, "minibatch": 256, "epochs": 10, "lambda": 0.95, "gamma": 0.99,
      "clip": 0.2, "vf_coeff": 0.5, "entropy": 0.0, "hidden": [64, 64], "envs_per_runner": 8, "seed": 0}
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
              .debugging(seed=HP["seed"]))
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
              .debugging(seed=HP["seed"]))
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

    env = make_vec_env("CartPole-v1", n_envs=HP["envs_per_runner"], seed=HP["seed"])
    model = PPO("MlpPolicy", env, n_steps=HP["batch"] // HP["envs_per_runner"], batch_size=HP["minibatch"],
                n_epochs=HP["epochs"], learning_rate=HP["lr"], gae_lambda=HP["lambda"], gamma=HP["gamma"],
                clip_range=HP["clip"], ent_coef=HP["entropy"], vf_coef=HP["vf_coeff"], seed=HP["seed"],
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
def _run(engine: str, mode: str, runners: int, args: argparse.Namespace) -> dict:
    result = _run_once(engine, mode, runners, args)
    if "error" in result:  # one retry: a cluster start can time out on a loaded machine
        result = _run_once(engine, mode, runners, args)
    return result


def _run_once(engine: str, mode: str, runners: int, args: argparse.Namespace) -> dict:
    cmd = [PYTHON[engine], os.path.abspath(__file__), "--worker", engine, "--mode", mode, "--runners", str(runners),
           "--sample-seconds", str(args.sample_seconds), "--max-time", str(args.max_time)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", RAY_USAGE_STATS_ENABLED="0")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.max_time + 300, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]}


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="append", default=[], choices=["ray", "sb3"])
    parser.add_argument("--runners", default="0,1,2", help="comma-separated env runner counts")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--max-time", type=float, default=300.0, help="give up learning after this many seconds")
    parser.add_argument("--skip-learn", action="store_true")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["sample", "learn"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](args.mode, int(args.runners), args)), flush=True)
        return 0
    runners = [int(r) for r in args.runners.split(",")]
    engines = ["distcore"] + [e for e in ("ray",) if e in args.compare]
    load_before = os.getloadavg()[0]
    results: dict = {}
    for n in runners:
        for engine in engines:
            results[(engine, "sample", n)] = _run(engine, "sample", n, args)
            if not args.skip_learn:
                results[(engine, "learn", n)] = _run(engine, "learn", n, args)
            print(f"  done: {engine} runners={n}: {results[(engine, 'sample', n)]} "
                  f"{results.get((engine, 'learn', n), '')}", file=sys.stderr, flush=True)
    if "sb3" in args.compare and not args.skip_learn:
        results[("sb3", "learn", 0)] = _run("sb3", "learn", 0, args)
    print(f"\nPPO CartPole-v1, {HP['envs_per_runner']} envs per runner, batch {HP['batch']}, minibatch "
          f"{HP['minibatch']} x {HP['epochs']} epochs, lr {HP['lr']}, [64, 64] tanh; load avg "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}\n")
    print("| runners | library | env steps/s sampled | vs RLlib | wall to 475 (s) | env steps to 475 |")
    print("|--------:|---------|--------------------:|---------:|----------------:|-----------------:|")
    for n in runners:
        ray_rate = results.get(("ray", "sample", n), {}).get("steps_per_s")
        for engine in engines:
            s = results[(engine, "sample", n)]
            learn = results.get((engine, "learn", n), {})
            rate = s.get("steps_per_s")
            ratio = f"{rate / ray_rate:.2f}x" if rate and ray_rate and engine != "ray" else "—"
            wall = learn.get("wall_s") if learn.get("reached") else None
            steps = learn.get("env_steps") if learn.get("reached") else None
            wall_s = _fmt(wall, ".1f") if wall is not None else ("not reached" if learn and "error" not in learn
                                                                 else learn.get("error", "—"))
            print(f"| {n} | {'distcore-rllib' if engine == 'distcore' else 'RLlib 2.60'} | "
                  f"{_fmt(rate, ',.0f') if rate else s.get('error', '—')} | {ratio} | {wall_s} | {_fmt(steps, ',')} |")
    if ("sb3", "learn", 0) in results:
        learn = results[("sb3", "learn", 0)]
        wall = _fmt(learn["wall_s"], ".1f") if learn.get("reached") else learn.get("error", "not reached")
        steps = _fmt(learn["env_steps"], ",") if learn.get("reached") else "—"
        print(f"| (1 process) | Stable-Baselines3 | — | — | {wall} | {steps} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{e}/{m}/{n}": v for (e, m, n), v in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
