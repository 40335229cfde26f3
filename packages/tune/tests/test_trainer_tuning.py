"""A distcore.train Trainer as a trainable: its train_loop_config is tuned, each
trial runs a gang of workers, and every rank-0 report reaches the scheduler."""

from __future__ import annotations

import pytest

from distcore import train, tune
from distcore.train import DataParallelTrainer, ScalingConfig

pytestmark = pytest.mark.integration


def loop(config):
    ctx = train.get_context()
    for epoch in range(3):
        train.report({"score": config["lr"] * (epoch + 1), "world": ctx.get_world_size(), "base": config["base"]})


def test_tuning_a_trainer(cluster, tmp_path) -> None:
    trainer = DataParallelTrainer(loop, train_loop_config={"base": 7}, scaling_config=ScalingConfig(num_workers=1))
    grid = tune.Tuner(trainer, param_space={"train_loop_config": {"lr": tune.grid_search([0.1, 0.3])}},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(name="trainer", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0, grid.errors
    best = grid.get_best_result()
    assert best.config["train_loop_config"] == {"base": 7, "lr": 0.3}
    assert best.metrics["score"] == pytest.approx(0.9) and best.metrics["training_iteration"] == 3
    assert best.metrics["world"] == 1 and best.metrics["base"] == 7
    assert list(best.metrics_dataframe["score"]) == pytest.approx([0.3, 0.6, 0.9])


def test_trainer_param_space_is_checked(tmp_path) -> None:
    trainer = DataParallelTrainer(loop, scaling_config=ScalingConfig(num_workers=1))
    with pytest.raises(ValueError, match="param_space keys"):
        tune.Tuner(trainer, param_space={"lr": 1})
