"""Nested result dicts ("env_runners/episode_return_mean") and param_space objects with to_dict()."""

from __future__ import annotations

import csv
import io
import os

import pytest

from distcore import tune
from distcore.tune._internal.progress import ProgressReporter
from distcore.tune._internal.trial import Trial, flatten_result
from distcore.tune.schedulers import ASHAScheduler

pytestmark = pytest.mark.integration

METRIC = "env_runners/episode_return_mean"


def nested_trainable(config):
    for step in range(1, 10):
        tune.report({"env_runners": {"episode_return_mean": config["rate"] * step, "num_episodes": step},
                     "learners": {"default": {"loss": 1.0 / step}}, "step": step})


def test_nested_metric_drives_scheduler_stopper_and_results(cluster, tmp_path) -> None:
    grid = tune.Tuner(
        nested_trainable, param_space={"rate": tune.grid_search([5, 4, 3, 2, 1])},
        tune_config=tune.TuneConfig(metric=METRIC, mode="max",
                                    scheduler=ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)),
        run_config=tune.RunConfig(name="nested", storage_path=str(tmp_path), verbose=0,
                                  stop={METRIC: 40})).fit()
    assert grid.num_errors == 0 and len(grid) == 5
    best = grid.get_best_result()
    assert best.config["rate"] == 5
    # result.metrics keeps the nested dict the trainable reported
    assert best.metrics["env_runners"] == {"episode_return_mean": 40, "num_episodes": 8}
    assert best.metrics["learners"]["default"]["loss"] == pytest.approx(1 / 8)
    # the stopper saw the flattened key: rate 5 stops at step 8 (40 >= 40), not at max_t=9
    assert best.metrics["training_iteration"] == 8
    # ASHA decided by the nested metric: only the best trial runs past the first rungs
    iters = {r.config["rate"]: r.metrics["training_iteration"] for r in grid}
    assert all(v in (1, 3, 8, 9) for v in iters.values()), iters
    assert min(iters.values()) < 8
    assert grid.get_best_result(metric="learners/default/loss", mode="min").metrics["step"] == max(iters.values())
    frame = grid.get_dataframe()
    assert METRIC in frame.columns and "env_runners" not in frame.columns
    row = frame[frame["config/rate"] == 5].iloc[0]
    assert row[METRIC] == 40
    filtered = grid.get_dataframe(filter_metric=METRIC, filter_mode="max")
    assert sorted(filtered[METRIC]) == sorted(r.config["rate"] * iters[r.config["rate"]] for r in grid)
    assert list(best.metrics_dataframe[METRIC]) == [5 * s for s in range(1, 9)]
    with open(os.path.join(best.path, "progress.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r[METRIC]) for r in rows] == [5.0 * s for s in range(1, 9)]
    assert "learners/default/loss" in rows[0]


def test_flatten_result_and_progress_best_use_nested_metric() -> None:
    assert flatten_result({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a/b": 1, "a/c/d": 2, "e": 3}
    plain = {"a": 1}
    assert flatten_result(plain) is plain  # no copy when nothing is nested
    trials = []
    for i, value in enumerate([3.0, 7.0, 5.0]):
        trial = Trial(f"t{i}", {"x": i}, i, "/tmp/exp", "fn", None)
        trial.last_result = {"env_runners": {"episode_return_mean": value}, "training_iteration": 1}
        trial.update_metric_analysis(trial.last_result)
        trials.append(trial)
    assert trials[1].metric_analysis[METRIC]["max"] == 7.0
    out = io.StringIO()
    reporter = ProgressReporter(METRIC, "max", verbose=1, out=out)
    reporter.report(trials, force=True)
    assert f"best {METRIC}=7 (fn_t1)" in out.getvalue()
    assert "7" in "\n".join(reporter.table(trials))


class AlgoConfigLike:
    """Stands in for an rllib AlgorithmConfig: Tuner takes its to_dict()."""

    def __init__(self) -> None:
        self.lr = tune.grid_search([0.1, 0.2])
        self.gamma = 0.9

    def to_dict(self) -> dict:
        return {"lr": self.lr, "gamma": self.gamma, "model": {"hidden": [8, 8]}}


def echo(config):
    tune.report({"lr": config["lr"], "gamma": config["gamma"], "hidden": sum(config["model"]["hidden"])})


def test_param_space_object_with_to_dict(cluster, tmp_path) -> None:
    grid = tune.Tuner(echo, param_space=AlgoConfigLike(),
                      run_config=tune.RunConfig(name="todict", storage_path=str(tmp_path), verbose=0)).fit()
    assert sorted(r.metrics["lr"] for r in grid) == [0.1, 0.2]
    assert all(r.metrics["gamma"] == 0.9 and r.metrics["hidden"] == 16 for r in grid)
    assert all(r.config["model"] == {"hidden": [8, 8]} for r in grid)


def test_param_space_bad_types_name_the_problem() -> None:
    class BadToDict:
        def to_dict(self):
            return [1, 2]

    with pytest.raises(TypeError, match=r"to_dict\(\) of BadToDict must return a dict"):
        tune.Tuner(echo, param_space=BadToDict())
    with pytest.raises(TypeError, match="param_space must be a dict"):
        tune.Tuner(echo, param_space=[1, 2])
