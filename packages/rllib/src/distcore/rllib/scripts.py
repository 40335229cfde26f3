"""The ``distcore-rllib`` command: ``train`` an algorithm on an env, ``evaluate`` a checkpoint.

Examples::

    distcore-rllib train --algo PPO --env CartPole-v1 --stop 475 --checkpoint-dir /tmp/ppo
    distcore-rllib train --algo DQN --env CartPole-v1 --config '{"lr": 0.001, "n_step": 3}'
    distcore-rllib evaluate /tmp/ppo --episodes 10
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence

import distcore
from distcore.rllib import __version__
from distcore.scripts.cli import CommandLine

CLI = CommandLine(
    prog="distcore-rllib",
    version=f"distcore-rllib {__version__} (distcore {distcore.__version__})",
    description="Train and evaluate reinforcement learning algorithms.",
)


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", required=True, help="PPO, DQN, SAC, IMPALA or APPO")
    parser.add_argument("--env", required=True, help="a gymnasium id or a registered env name")
    parser.add_argument("--stop", type=float, default=None,
                        help="stop once env_runners/episode_return_mean reaches this reward")
    parser.add_argument("--max-iterations", type=int, default=100, help="stop after this many iterations")
    parser.add_argument("--max-timesteps", type=int, default=None, help="stop after this many env steps")
    parser.add_argument("--config", default="{}",
                        help="JSON object of config settings, e.g. '{\"lr\": 0.001, \"num_env_runners\": 2}'")
    parser.add_argument("--checkpoint-dir", default=None, help="save the final checkpoint here")
    parser.add_argument("--seed", type=int, default=None)


def _train(args: argparse.Namespace) -> int:
    from distcore.rllib.algorithms.registry import get_algorithm_class

    try:
        algo_cls = get_algorithm_class(args.algo)
        overrides = json.loads(args.config)
        if not isinstance(overrides, dict):
            raise ValueError("--config must be a JSON object")
    except (ValueError, json.JSONDecodeError) as error:
        print(f"distcore-rllib train: {error}", file=sys.stderr)
        return 2
    config = algo_cls.get_default_config().environment(args.env)
    try:
        config.update_from_dict(overrides)
        if args.seed is not None:
            config.debugging(seed=args.seed)
        algo = config.build()
    except (ValueError, TypeError) as error:
        print(f"distcore-rllib train: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    reached = False
    try:
        for _ in range(args.max_iterations):
            result = algo.train()
            ret = result["env_runners"]["episode_return_mean"]
            steps = result["num_env_steps_sampled_lifetime"]
            print(f"iter {result['training_iteration']:4d}  steps {steps:8d}  return {ret:8.2f}  "
                  f"time {time.perf_counter() - started:7.1f}s", flush=True)
            if args.stop is not None and not math.isnan(ret) and ret >= args.stop:
                reached = True
                break
            if args.max_timesteps is not None and steps >= args.max_timesteps:
                break
        if args.checkpoint_dir:
            path = algo.save_to_path(args.checkpoint_dir)
            print(f"checkpoint: {path}")
    finally:
        algo.stop()
    if args.stop is not None:
        print("reached the stop reward" if reached else "did not reach the stop reward")
        return 0 if reached else 1
    return 0


def _configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a directory written by train --checkpoint-dir / Algorithm.save_to_path")
    parser.add_argument("--episodes", type=int, default=10, help="greedy episodes to run")


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from distcore.rllib.algorithms.algorithm import Algorithm

    # Greedy episodes run on CPU env runners: a GPU run's checkpoint evaluates where there is no GPU.
    overrides = {} if torch.cuda.is_available() else {"num_gpus_per_learner": 0, "num_gpus": 0}
    try:
        algo = Algorithm.from_checkpoint(args.checkpoint, **overrides)
    except (FileNotFoundError, TypeError, ValueError) as error:  # ValueError: CheckpointError
        print(f"distcore-rllib evaluate: {error}", file=sys.stderr)
        return 2
    try:
        algo.config.evaluation_duration = args.episodes
        algo.config.evaluation_duration_unit = "episodes"
        metrics = algo.evaluate()["env_runners"]
    finally:
        algo.stop()
    print(f"episodes {metrics['num_episodes']}  return mean {metrics['episode_return_mean']:.2f}  "
          f"min {metrics['episode_return_min']:.2f}  max {metrics['episode_return_max']:.2f}")
    return 0


CLI.add("train", "train an algorithm on an env", _train, _configure_train)
CLI.add("evaluate", "run greedy episodes with a checkpoint", _evaluate, _configure_evaluate)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
