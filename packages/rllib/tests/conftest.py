"""Fixtures for rllib's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """4 CPUs (more than the machine's cores on purpose: runners + learners fit)."""
    return {"num_cpus": 4, "object_store_memory": 200 * 1024 * 1024}


def _train_then_evaluate(config, target: float, max_env_steps: int) -> tuple[dict, int]:
    """Train until the training return passes ``target``, then confirm with 100 greedy episodes;
    keeps training while the confirmation fails, until ``max_env_steps``. Returns (eval metrics, steps)."""
    algo = config.evaluation(evaluation_duration=100, evaluation_duration_unit="episodes",
                             evaluation_config={"num_envs_per_env_runner": 10}).build()
    try:
        while True:
            result = algo.train()
            steps = result["num_env_steps_sampled_lifetime"]
            if result["env_runners"]["episode_return_mean"] >= target or steps >= max_env_steps:
                evaluation = algo.evaluate()["env_runners"]
                assert evaluation["num_episodes"] == 100
                if evaluation["episode_return_mean"] >= target or steps >= max_env_steps:
                    return evaluation, steps
    finally:
        algo.stop()


def _describe(evaluation: dict, steps: int) -> str:
    return (f"mean return of 100 greedy episodes {evaluation['episode_return_mean']:.1f} "
            f"(std {evaluation.get('episode_return_std', float('nan')):.1f}) after {steps} env steps")


@pytest.fixture
def train_then_evaluate():
    """The learning tests' loop: train to the target, then confirm with 100 greedy episodes."""
    return _train_then_evaluate


@pytest.fixture
def describe():
    """A learning test's failure message: the 100-episode mean, its std and the env steps."""
    return _describe
