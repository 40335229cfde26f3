"""Schedulers driving real trials: ASHA stops early, HyperBand pauses and resumes
from checkpoints, PBT exploits by copying a checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest

from distcore import tune
from distcore.tune.schedulers import ASHAScheduler, HyperBandScheduler, PopulationBasedTraining

pytestmark = pytest.mark.integration


def run(trainable, tmp_path, param_space, scheduler, name="exp", **kwargs):
    return tune.Tuner(trainable, param_space=param_space,
                      tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, **kwargs),
                      run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0)).fit()


def _load_step() -> tuple[int, float]:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0, 0.0
    with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
        state = json.load(f)
    return state["step"], state["value"]


def _save(step: int, value: float) -> tune.Checkpoint:
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump({"step": step, "value": value}, f)
    return tune.Checkpoint.from_directory(d)


def rate_trainable(config):
    """score grows by config["rate"] per step; checkpoints every step."""
    step, value = _load_step()
    while step < 100:
        step += 1
        value += config["rate"]
        tune.report({"score": value, "step": step, "resumed_from": config.get("_", 0)}, checkpoint=_save(step, value))


def test_asha_stops_bad_trials_at_rungs(cluster, tmp_path) -> None:
    # best first: every later trial is worse than those recorded before it, whatever the timing
    grid = run(rate_trainable, tmp_path, {"rate": tune.grid_search([6, 5, 4, 3, 2, 1])},
               ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3))
    iters = {r.config["rate"]: r.metrics["training_iteration"] for r in grid}
    assert iters[6] == 9  # the best runs to max_t
    assert min(iters.values()) < 9  # others were cut at a rung
    assert all(v in (1, 3, 9) for v in iters.values()), iters
    assert grid.get_best_result().config["rate"] == 6


@pytest.mark.slow
def test_hyperband_pauses_and_resumes_from_checkpoints(cluster, tmp_path) -> None:
    grid = run(rate_trainable, tmp_path, {"rate": tune.grid_search([1, 2, 3])},
               HyperBandScheduler(max_t=9, reduction_factor=3))
    iters = {r.config["rate"]: r.metrics["training_iteration"] for r in grid}
    assert iters[3] == 9
    for result in grid:
        frame = result.metrics_dataframe
        # resumed trials continue from their checkpoint: steps never repeat
        assert list(frame["step"]) == list(range(1, len(frame) + 1))
        assert result.metrics["score"] == pytest.approx(result.config["rate"] * result.metrics["step"])


@pytest.mark.slow
def test_pbt_exploit_copies_checkpoint_and_mutates_within_space(cluster, tmp_path) -> None:
    scheduler = PopulationBasedTraining(perturbation_interval=3, quantile_fraction=0.5, seed=0,
                                        hyperparam_mutations={"rate": tune.uniform(0.5, 10.0)},
                                        resample_probability=0.5)

    barrier = str(tmp_path / "started")
    os.makedirs(barrier)

    def trainable(config):
        # the first two trials wait for each other (a new trial actor may take a second to start),
        # so that PBT has a population to compare: without peers it has no one to exploit
        open(os.path.join(barrier, str(config["rate"])), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        step, value = _load_step()
        while step < 24:
            step += 1
            value += config["rate"]
            tune.report({"score": value, "step": step, "rate": config["rate"]}, checkpoint=_save(step, value))

    grid = run(trainable, tmp_path, {"rate": tune.grid_search([0.5, 1.0, 8.0, 9.0])}, scheduler)
    assert scheduler.num_perturbations >= 1
    event = scheduler.history[0]
    assert 0.5 <= event["new_config"]["rate"] <= 10.0
    exploited = next(r for r in grid if r.metrics_dataframe["step"].is_monotonic_increasing is False
                     or r.path.endswith(event["trial"]) or event["trial"] in r.path)
    frame = exploited.metrics_dataframe
    # after the exploit the trial continues from the donor's step and value (a copied checkpoint)
    jump = frame[frame["rate"] == event["new_config"]["rate"]].iloc[0]
    donor = next(r for r in grid if event["donor"] in r.path).metrics_dataframe
    donor_row = donor[donor["step"] == jump["step"] - 1].iloc[0]
    assert jump["score"] == pytest.approx(donor_row["score"] + event["new_config"]["rate"])
    assert all(0.5 <= r.config["rate"] <= 10.0 for r in grid)
