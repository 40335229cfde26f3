"""Tuner end to end on a real 2-CPU cluster: function and class trainables, files,
stoppers, failures and retries, resources, with_parameters, ResultGrid."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from distcore import train, tune
from distcore.tune.stopper import MaximumIterationStopper

pytestmark = pytest.mark.integration


def quadratic(config):
    for step in range(1, 6):
        tune.report({"loss": (config["x"] - 3) ** 2 + 1.0 / step, "step": step})


def read(path):
    with open(path) as f:
        return f.read()


def run(trainable, tmp_path, name="exp", param_space=None, **kwargs):
    run_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in (
        "stop", "checkpoint_config", "failure_config", "callbacks", "verbose")}
    run_kwargs.setdefault("verbose", 0)
    return tune.Tuner(trainable, param_space=param_space or {},
                      tune_config=tune.TuneConfig(**kwargs),
                      run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), **run_kwargs)).fit()


def test_function_trainable_grid_and_result_grid(cluster, tmp_path) -> None:
    grid = run(quadratic, tmp_path, param_space={"x": tune.grid_search([1, 2, 3, 4]), "const": "c"},
               metric="loss", mode="min")
    assert len(grid) == 4 and grid.num_terminated == 4 and grid.num_errors == 0
    best = grid.get_best_result()
    assert best.config == {"x": 3, "const": "c"}
    assert best.metrics["loss"] == pytest.approx(0.2) and best.metrics["training_iteration"] == 5
    assert best.metrics["done"] is True
    # scope: the best over all iterations vs the average
    assert grid.get_best_result(scope="avg").config["x"] == 3
    assert grid.get_best_result(metric="loss", mode="max", scope="all").config["x"] == 1
    df = grid.get_dataframe()
    assert sorted(df["config/x"]) == [1, 2, 3, 4] and set(df["training_iteration"]) == {5}
    frame = best.metrics_dataframe
    assert list(frame["step"]) == [1, 2, 3, 4, 5]
    # per-trial files
    trial_dir = best.path
    assert json.loads(read(os.path.join(trial_dir, "params.json"))) == {"x": 3, "const": "c"}
    lines = read(os.path.join(trial_dir, "result.json")).splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["config"] == {"x": 3, "const": "c"}
    assert read(os.path.join(trial_dir, "progress.csv")).startswith("loss,step,")
    assert not [n for n in os.listdir(trial_dir) if n.startswith("events.out.tfevents")] or \
        __import__("importlib").util.find_spec("tensorboardX")
    assert tune.Tuner.can_restore(tmp_path / "exp")


def test_train_report_and_returning_a_dict_both_report(cluster, tmp_path) -> None:
    def via_train(config):
        train.report({"value": config["v"]})
        return {"value": config["v"] * 10}

    grid = run(via_train, tmp_path, param_space={"v": tune.grid_search([1, 2])})
    values = sorted(r.metrics["value"] for r in grid)
    assert values == [10, 20]
    assert all(r.metrics["training_iteration"] == 2 for r in grid)


def test_random_search_num_samples_and_seed(cluster, tmp_path) -> None:
    def f(config):
        tune.report({"y": config["x"]})

    grid = run(f, tmp_path, param_space={"x": tune.uniform(0, 1)}, num_samples=6, seed=0)
    again = run(f, tmp_path, name="again", param_space={"x": tune.uniform(0, 1)}, num_samples=6, seed=0)
    xs = sorted(r.config["x"] for r in grid)
    assert len(set(xs)) == 6 and xs == sorted(r.config["x"] for r in again)


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = config["start"]

    def step(self):
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value}

    def load_checkpoint(self, state):
        self.value = state["value"]


def test_class_trainable_with_stop_dict_and_checkpoints(cluster, tmp_path) -> None:
    grid = run(Counter, tmp_path, param_space={"start": tune.grid_search([0, 100])},
               stop={"training_iteration": 4},
               checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, num_to_keep=1))
    for result in grid:
        assert result.metrics["training_iteration"] == 4
        assert result.metrics["value"] == result.config["start"] + 4
        assert result.checkpoint is not None
        kept = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_"))
        assert kept == ["checkpoint_000001"]  # frequency 2 -> iterations 2 and 4; keep 1 (the latest)
        with result.checkpoint.as_directory() as d:
            assert os.path.exists(os.path.join(d, ".tune_checkpoint.json"))


def test_stoppers_end_trials(cluster, tmp_path) -> None:
    def forever(config):
        i = 0
        while True:
            i += 1
            tune.report({"i": i})

    grid = run(forever, tmp_path, param_space={"a": tune.grid_search([1, 2])}, stop=MaximumIterationStopper(7))
    assert [r.metrics["training_iteration"] for r in grid] == [7, 7]
    assert all(len(r.metrics_dataframe) == 7 for r in grid)  # results past the stop are dropped

    grid = run(forever, tmp_path, name="fn", stop=lambda trial_id, result: result["i"] >= 3)
    assert grid[0].metrics["i"] == 3


def test_failure_retries_from_checkpoint_then_errors(cluster, tmp_path) -> None:
    marker = tmp_path / "failed_once"

    def flaky(config):
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                start = int(read(os.path.join(d, "step")))
        for step in range(start + 1, 6):
            d = tmp_path / f"ck{step}"
            d.mkdir(exist_ok=True)
            (d / "step").write_text(str(step))
            tune.report({"step": step, "start": start}, checkpoint=tune.Checkpoint.from_directory(str(d)))
            if step == 3 and not marker.exists():
                marker.write_text("x")
                raise RuntimeError("boom at step 3")

    grid = run(flaky, tmp_path, failure_config=tune.FailureConfig(max_failures=1))
    result = grid[0]
    assert result.error is None and result.metrics["step"] == 5
    assert result.metrics["start"] == 3  # resumed from the checkpoint of step 3

    def always_fails(config):
        raise ValueError(f"bad config {config['x']}")

    grid = run(always_fails, tmp_path, name="errors", param_space={"x": tune.grid_search([1, 2])},
               failure_config=tune.FailureConfig(max_failures=1))
    assert grid.num_errors == 2 and grid.num_terminated == 0
    assert all(isinstance(e, ValueError) for e in grid.errors)
    assert "bad config" in read(os.path.join(grid[0].path, "error.txt"))

    with pytest.raises(ValueError, match="bad config"):
        run(always_fails, tmp_path, name="raise", param_space={"x": tune.grid_search([1, 2])},
            failure_config=tune.FailureConfig(fail_fast="raise"))


def test_with_resources_packs_the_cluster(cluster, tmp_path) -> None:
    import time

    def sleepy(config):
        start = time.time()
        time.sleep(0.5)
        tune.report({"start": start, "end": time.time()})

    grid = run(tune.with_resources(sleepy, {"cpu": 2}), tmp_path, param_space={"i": tune.grid_search([0, 1])})
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    assert spans[1][0] >= spans[0][1] - 0.05  # 2 CPUs each on a 2-CPU cluster: one at a time

    # 1 CPU each: both at once. Each trial waits (up to 30 s) for the other to be running too,
    # so a slow actor start on a busy machine cannot make them look sequential
    barrier = tmp_path / "barrier"
    barrier.mkdir()

    def meets(config):
        (barrier / str(config["i"])).touch()
        deadline = time.monotonic() + 30
        while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        tune.report({"met": len(os.listdir(barrier)) == 2})

    grid = run(tune.with_resources(meets, {"cpu": 1}), tmp_path, name="packed",
               param_space={"i": tune.grid_search([0, 1])})
    assert [r.metrics["met"] for r in grid] == [True, True]

    with pytest.raises(ValueError, match="not enough CPU"):
        run(tune.with_resources(sleepy, {"cpu": 3}), tmp_path, name="toolarge")


def test_max_concurrent_trials(cluster, tmp_path) -> None:
    import time

    def sleepy(config):
        start = time.time()
        time.sleep(0.3)
        tune.report({"start": start, "end": time.time()})

    grid = run(tune.with_resources(sleepy, {"cpu": 0.5}), tmp_path, param_space={"i": tune.grid_search([0, 1, 2])},
               max_concurrent_trials=1)
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    assert all(b[0] >= a[1] - 0.05 for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.slow
def test_with_parameters_puts_a_200mb_array_once(cluster, tmp_path) -> None:
    from distcore._private.testing import object_store_stats

    data = np.ones(200 * 1024 * 1024 // 8, dtype=np.float64)
    before = object_store_stats()

    def uses_data(config, data):
        tune.report({"sum": float(data[:10].sum()) * config["k"], "nbytes": data.nbytes,
                     "writeable": bool(data.flags.writeable)})

    wrapped = tune.with_parameters(uses_data, data=data)
    import cloudpickle

    assert len(cloudpickle.dumps(wrapped)) < 100_000  # the array travels by reference
    grid = run(wrapped, tmp_path, param_space={"k": tune.grid_search([1, 2, 3, 4])})
    assert sorted(r.metrics["sum"] for r in grid) == [10.0, 20.0, 30.0, 40.0]
    assert all(r.metrics["nbytes"] == data.nbytes and not r.metrics["writeable"] for r in grid)
    after = object_store_stats()
    grown = after["used"] - before["used"]
    assert grown < 1.5 * data.nbytes, (before, after)  # one copy in the store, not one per trial


def test_callbacks_see_the_experiment(cluster, tmp_path) -> None:
    events = []

    class Recorder(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append(("start", trial.trial_id))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append(("result", trial.trial_id))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append(("complete", trial.trial_id))

        def on_experiment_end(self, trials, **info):
            events.append(("end", len(trials)))

    run(quadratic, tmp_path, param_space={"x": 1}, callbacks=[Recorder()])
    kinds = [e[0] for e in events]
    assert kinds == ["start"] + ["result"] * 5 + ["complete", "end"]


def test_bad_arguments_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(TypeError, match="param_space must be a dict"):
        tune.Tuner(quadratic, param_space=[1])
    with pytest.raises(ValueError, match="num_samples"):
        tune.TuneConfig(num_samples=0)
    with pytest.raises(ValueError, match="mode"):
        tune.TuneConfig(mode="best")
    with pytest.raises(ValueError, match="unknown trainable"):
        tune.Tuner("no_such_trainable")
    with pytest.raises(TypeError, match="subclass tune.Trainable"):
        tune.Tuner(int)


def test_cli_lists_experiments_and_shows_results(cluster, tmp_path, capsys) -> None:
    from distcore.tune.scripts import main

    run(quadratic, tmp_path, name="cli_exp", param_space={"x": tune.grid_search([1, 3])}, metric="loss", mode="min")
    capsys.readouterr()
    assert main(["list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cli_exp" in out and "terminated" in out
    assert main(["show", str(tmp_path / "cli_exp"), "--metric", "loss", "--mode", "min"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "cli_exp: 2 trials"
    assert "TERMINATED" in lines[3] and " 3 " in f" {lines[3]} "  # best (x=3) first
    assert main(["show", str(tmp_path)]) == 1


def test_time_budget_ends_the_experiment(cluster, tmp_path) -> None:
    import time

    def slow(config):
        for i in range(1000):
            time.sleep(0.05)
            tune.report({"i": i})

    start = time.monotonic()
    grid = run(slow, tmp_path, param_space={"a": tune.grid_search([1, 2, 3])}, time_budget_s=1.5)
    assert time.monotonic() - start < 30
    assert grid.num_terminated == 3 and all(r.metrics.get("i", 0) < 999 for r in grid)


def test_restore_errored_trials(cluster, tmp_path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("1")

    def maybe_fails(config):
        if os.path.exists(config["flag"]) and config["x"] == 2:
            raise RuntimeError("failing while the flag exists")
        tune.report({"x": config["x"]})

    space = {"x": tune.grid_search([1, 2]), "flag": str(flag)}
    grid = run(maybe_fails, tmp_path, param_space=space)
    assert grid.num_errors == 1
    path = str(tmp_path / "exp")
    untouched = tune.Tuner.restore(path, trainable=maybe_fails).fit()
    assert untouched.num_errors == 1  # errored trials stay errored by default
    flag.unlink()
    grid = tune.Tuner.restore(path, trainable=maybe_fails, restart_errored=True).fit()
    assert grid.num_errors == 0 and sorted(r.metrics["x"] for r in grid) == [1, 2]
    with pytest.raises(ValueError, match="no restorable experiment"):
        tune.Tuner.restore(str(tmp_path / "missing"), trainable=maybe_fails)


def test_placement_group_factory_trial(cluster, tmp_path) -> None:
    from distcore.util import get_current_placement_group

    def in_group(config):
        pg = get_current_placement_group()
        tune.report({"bundles": len(pg.bundle_specs) if pg is not None else 0})

    pgf = tune.PlacementGroupFactory([{"CPU": 0.5}, {"CPU": 1}])
    grid = run(tune.with_resources(in_group, pgf), tmp_path)
    assert grid[0].metrics["bundles"] == 2


def test_get_context_inside_a_trial(cluster, tmp_path) -> None:
    def ctx(config):
        c = tune.get_context()
        tune.report({"trial_id": c.get_trial_id(), "dir": c.get_trial_dir(), "name": c.get_trial_name(),
                     "exp": c.get_experiment_name()})

    grid = run(ctx, tmp_path, name="ctx")
    metrics = grid[0].metrics
    assert metrics["dir"] == grid[0].path and metrics["exp"] == "ctx"
    assert metrics["name"].startswith("ctx_") and metrics["name"].endswith(metrics["trial_id"])


def test_a_running_trials_results_reach_the_driver_while_it_runs(cluster, tmp_path) -> None:
    # a trial runs inside its actor call; its results must still stream: the trial waits until
    # the driver has seen its first result (a callback drops a file) before it reports again
    seen = tmp_path / "seen"

    class Marker(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["training_iteration"] == 1:
                seen.write_text(str(trial.trial_id))

    def waits_for_the_driver(config):
        import time

        tune.report({"step": 1})
        deadline = time.monotonic() + 20
        while not os.path.exists(config["seen"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        tune.report({"step": 2, "seen": os.path.exists(config["seen"])})

    grid = run(waits_for_the_driver, tmp_path, param_space={"seen": str(seen)}, callbacks=[Marker()])
    assert grid.num_errors == 0
    assert grid[0].metrics["seen"] is True and grid[0].metrics["training_iteration"] == 2
    assert list(grid[0].metrics_dataframe["step"]) == [1, 2]
