"""Tune runs rllib algorithms: by registered name, by class, and under PBT over the learning rate."""

from __future__ import annotations

import pytest

from distcore import tune
from distcore.rllib.algorithms.ppo import PPO, PPOConfig
from distcore.tune.schedulers import PopulationBasedTraining

pytestmark = pytest.mark.integration


def base_config() -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size=200, minibatch_size=100, num_epochs=1)
            .rl_module(model_config={"fcnet_hiddens": [16]}).debugging(seed=0))


@pytest.mark.parametrize("trainable", ["PPO", pytest.param(PPO, marks=pytest.mark.slow)], ids=["by-name", "by-class"])
def test_tuner_by_name_and_by_class(cluster, trainable) -> None:
    space = base_config().to_dict()
    space["lr"] = tune.grid_search([1e-3, 3e-3])
    if True:
        grid = tune.Tuner(trainable, param_space=space,
                          tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean", mode="max"),
                          run_config=tune.RunConfig(stop={"training_iteration": 2})).fit()
        assert len(grid) == 2 and not grid.errors
        lrs = sorted(r.config["lr"] for r in grid)
        assert lrs == [1e-3, 3e-3]
        for result in grid:
            assert result.metrics["training_iteration"] == 2
            assert result.metrics["num_env_steps_sampled_lifetime"] == 400
        best = grid.get_best_result()
        assert best.metrics["env_runners"]["episode_return_mean"] > 0


@pytest.mark.slow
def test_pbt_over_lr(cluster) -> None:
    space = base_config().to_dict()
    space["lr"] = tune.choice([1e-4, 1e-3])
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-2)}, seed=0)
    grid = tune.Tuner("PPO", param_space=space,
                      tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean", mode="max",
                                                  scheduler=pbt, num_samples=2),
                      run_config=tune.RunConfig(stop={"training_iteration": 4},
                                                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2))
                      ).fit()
    assert len(grid) == 2 and not grid.errors
    assert all(r.metrics["training_iteration"] == 4 for r in grid)
