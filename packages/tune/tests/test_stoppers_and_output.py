"""Stoppers, the console view, PlacementGroupFactory and the public surface (no cluster)."""

from __future__ import annotations

import io
import time

import pytest

from distcore import tune
from distcore.tune._internal.progress import ProgressReporter
from distcore.tune._internal.stopper import DictStopper, as_stopper
from distcore.tune._internal.trial import Trial
from distcore.tune.execution import PlacementGroupFactory
from distcore.tune.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    MaximumIterationStopper,
    TimeoutStopper,
    TrialPlateauStopper,
)


def test_dict_and_function_stoppers() -> None:
    stop = as_stopper({"training_iteration": 3, "acc": 0.9})
    assert not stop("t", {"training_iteration": 2, "acc": 0.5})
    assert stop("t", {"training_iteration": 3})
    assert stop("t", {"training_iteration": 1, "acc": 0.95})
    assert as_stopper(lambda trial_id, result: result["x"] > 1)("t", {"x": 2})
    with pytest.raises(TypeError, match="must be a number"):
        DictStopper({"acc": "high"})
    with pytest.raises(TypeError, match="RunConfig.stop"):
        as_stopper(3)


def test_maximum_iteration_stopper_counts_per_trial() -> None:
    stop = MaximumIterationStopper(2)
    assert [stop("a", {}), stop("b", {}), stop("a", {})] == [False, False, True]


def test_trial_plateau_stopper() -> None:
    stop = TrialPlateauStopper("loss", std=0.01, num_results=3, grace_period=3)
    values = [5.0, 3.0, 2.0, 2.001, 2.0, 2.002]
    decisions = [stop("t", {"loss": v}) for v in values]
    assert decisions == [False, False, False, False, True, True]
    gated = TrialPlateauStopper("loss", std=0.01, num_results=2, grace_period=2, metric_threshold=1.0, mode="min")
    assert not any(gated("t", {"loss": 2.0}) for _ in range(5))  # flat but not below the threshold
    with pytest.raises(ValueError, match="metric_threshold needs mode"):
        TrialPlateauStopper("loss", metric_threshold=1.0)


def test_experiment_plateau_stopper() -> None:
    stop = ExperimentPlateauStopper("score", std=0.01, top=3, mode="max", patience=1)
    for i, v in enumerate([1.0, 5.0, 5.0]):
        stop(f"t{i}", {"score": v})
    assert not stop.stop_all()
    stop("t3", {"score": 5.0})  # top 3 = [5, 5, 5]: plateau 1
    assert not stop.stop_all()
    stop("t4", {"score": 5.001})  # plateau 2 > patience 1
    assert stop.stop_all()


def test_timeout_and_combined_stoppers() -> None:
    timeout = TimeoutStopper(0.05)
    assert not timeout.stop_all()
    time.sleep(0.08)
    assert timeout.stop_all()
    combined = CombinedStopper(MaximumIterationStopper(10), as_stopper({"x": 1}))
    assert combined("t", {"x": 1}) and not combined.stop_all()
    with pytest.raises(ValueError):
        TimeoutStopper(0)


def _trials(n):
    out = []
    for i in range(n):
        t = Trial(f"abc_{i:05d}", {"lr": 0.1 * (i + 1), "layers": i}, i, "/tmp/exp", "train_fn", None)
        t.last_result = {"loss": 1.0 / (i + 1), "training_iteration": i + 1}
        t.status = "RUNNING" if i % 2 else "TERMINATED"
        out.append(t)
    return out


def test_progress_degrades_to_status_lines_without_a_tty() -> None:
    out = io.StringIO()
    reporter = ProgressReporter("loss", "min", verbose=1, out=out, line_interval=0)
    trials = _trials(4)
    reporter.report(trials)
    line = out.getvalue().strip()
    assert "\n" not in line and "\x1b" not in line
    assert "trials: 4 (2 running, 2 terminated)" in line and "best loss=0.25 (train_fn_abc_00003)" in line
    reporter.final(trials)
    table = out.getvalue().splitlines()[1:]
    assert table[1].split()[:3] == ["Trial", "name", "status"] and "lr" in table[1]
    quiet = io.StringIO()
    ProgressReporter("loss", "min", verbose=0, out=quiet).report(trials, force=True)
    assert quiet.getvalue() == ""


def test_progress_redraws_a_table_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    reporter = ProgressReporter("loss", "min", verbose=1, out=out, tty_interval=0)
    reporter.report(_trials(3))
    reporter.report(_trials(3))
    text = out.getvalue()
    assert "\x1b[" in text and "Trial name" in text  # the second draw moves the cursor up over the first


def test_placement_group_factory() -> None:
    pgf = PlacementGroupFactory([{"CPU": 1}, {"cpu": 2, "gpu": 1}], strategy="SPREAD")
    assert pgf.head_bundle == {"CPU": 1.0}
    assert pgf.required_resources == {"CPU": 3.0, "GPU": 1.0}
    with pytest.raises(ValueError, match="strategy"):
        PlacementGroupFactory([{"CPU": 1}], strategy="NOPE")
    with pytest.raises(ValueError):
        PlacementGroupFactory([])
    with pytest.raises(ValueError, match="must be a number"):
        tune.with_resources(lambda c: None, {"cpu": -1})


def test_report_outside_a_trial_raises() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        tune.report({"x": 1})


def test_public_surface() -> None:
    expected = {
        "Callback", "Checkpoint", "CheckpointConfig", "FailureConfig", "PlacementGroupFactory", "Result",
        "ResultGrid", "RunConfig", "Stopper", "TuneConfig", "Trainable", "Tuner", "__version__", "choice",
        "get_checkpoint", "get_context", "grid_search", "lograndint", "loguniform", "qloguniform", "qlograndint",
        "qrandint", "qrandn", "quniform", "randint", "randn", "register_env", "register_trainable", "registry",
        "report", "sample_from", "schedulers", "search", "stopper", "uniform", "with_parameters", "with_resources",
    }
    assert set(tune.__all__) == expected
    for name in expected:
        assert getattr(tune, name) is not None
    from distcore import train

    assert tune.RunConfig is train.RunConfig and tune.Checkpoint is train.Checkpoint
    assert tune.CheckpointConfig is train.CheckpointConfig and tune.FailureConfig is train.FailureConfig
    assert tune.Result is train.Result
    # tune.report is tune's own (a trial reaches it without importing train); outside a trial it is train's
    assert callable(tune.report) and tune.report.__module__ == "distcore.tune._internal.session"
