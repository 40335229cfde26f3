"""RunConfig(callbacks=[...]): tune-style hooks and train.UserCallback, called in the driver."""

from __future__ import annotations

import os
import re
import tempfile

import pytest

from distcore import train
from distcore.train import (
    Checkpoint,
    DataParallelTrainer,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    TrainingFailedError,
)

pytestmark = pytest.mark.integration


class Recorder:
    """A tune-style callback (the hooks of tune.Callback) that records every call."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def setup(self, stop=None, **info):
        self.events.append(("setup",))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", iteration, trial.status))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        assert trials == [trial] and trial.last_result == result
        self.events.append(("result", iteration, result["epoch"]))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self.events.append(("checkpoint", iteration, os.path.basename(checkpoint.path)))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.events.append(("recover", trial.num_failures))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", iteration, trial.status))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.events.append(("error", trial.status, type(trial.error).__name__))

    def on_experiment_end(self, trials, **info):
        self.events.append(("end",))


class Reports(train.UserCallback):
    def __init__(self) -> None:
        self.reports: list[tuple[list[dict], str | None]] = []
        self.exceptions: list[dict[int, BaseException]] = []
        self.contexts: list = []

    def after_report(self, run_context, metrics, checkpoint):
        self.contexts.append(run_context)
        self.reports.append((metrics, os.path.basename(checkpoint.path) if checkpoint else None))

    def after_exception(self, run_context, worker_exceptions):
        self.exceptions.append(dict(worker_exceptions))


def loop(config):
    rank = train.get_context().get_world_rank()
    ckpt = train.get_checkpoint()
    start = ckpt.get_metadata()["epoch"] + 1 if ckpt else 0
    for epoch in range(start, 3):
        if config.get("fail_rank") == rank and epoch == 1 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise ValueError(f"rank {rank} fails on purpose")
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if rank == 0 and epoch == 1:
                ck = Checkpoint.from_directory(d)
                ck.set_metadata({"epoch": epoch})
            train.report({"epoch": epoch, "rank": rank}, checkpoint=ck)


def test_callbacks_see_every_report_checkpoint_and_the_end(cluster, tmp_path, capsys) -> None:
    rec, user = Recorder(), Reports()
    result = DataParallelTrainer(
        loop, train_loop_config={}, scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="cb", storage_path=str(tmp_path), verbose=2, callbacks=[rec, user]),
    ).fit()
    assert result.error is None
    # verbose=2 says where start-up time went (tools/bench/train_bench.py parses this line)
    assert re.search(r"start-up of attempt 0: workers placed and up [\d.]+ s, Backend set up [\d.]+ s, "
                     r"training function running [\d.]+ s", capsys.readouterr().out)
    assert rec.events == [
        ("setup",), ("start", 0, "RUNNING"),
        ("result", 1, 0), ("result", 2, 1), ("checkpoint", 2, "checkpoint_000000"), ("result", 3, 2),
        ("complete", 3, "TERMINATED"), ("end",),
    ]
    # after_report gets every rank's metrics of the round, and the persisted checkpoint
    assert user.reports == [
        ([{"epoch": 0, "rank": 0}, {"epoch": 0, "rank": 1}], None),
        ([{"epoch": 1, "rank": 0}, {"epoch": 1, "rank": 1}], "checkpoint_000000"),
        ([{"epoch": 2, "rank": 0}, {"epoch": 2, "rank": 1}], None),
    ]
    ctx = user.contexts[0]
    assert ctx.name == "cb" and ctx.path == str(tmp_path / "cb") and ctx.get_run_config().callbacks == [rec, user]
    assert user.exceptions == []


def test_callbacks_see_a_failure_the_retry_and_a_final_error(cluster, tmp_path) -> None:
    rec, user = Recorder(), Reports()
    result = DataParallelTrainer(
        loop, train_loop_config={"fail_rank": 1, "marker": str(tmp_path / "failed")}, scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="retry", storage_path=str(tmp_path), verbose=0, callbacks=[rec, user],
                             failure_config=FailureConfig(max_failures=1)),
    ).fit()
    assert result.error is None and len(result.failures) == 1
    # rank 1 raised at epoch 1: the exception reaches after_exception as it was raised, keyed by rank
    assert len(user.exceptions) == 1 and list(user.exceptions[0]) == [1]
    exc = user.exceptions[0][1]
    assert isinstance(exc, ValueError) and "rank 1 fails on purpose" in str(exc)
    # rank 1 never made report 2, so rank 0's report 2 and its checkpoint were not recorded: the
    # restart begins again at epoch 0 and redoes it
    assert rec.events == [
        ("setup",), ("start", 0, "RUNNING"), ("result", 1, 0), ("recover", 1),
        ("result", 2, 0), ("result", 3, 1), ("checkpoint", 3, "checkpoint_000000"), ("result", 4, 2),
        ("complete", 4, "TERMINATED"), ("end",),
    ]

    # without retries left the run ends in on_trial_error
    rec = Recorder()
    with pytest.raises(TrainingFailedError, match="fails on purpose"):
        DataParallelTrainer(
            loop, train_loop_config={"fail_rank": 0, "marker": str(tmp_path / "failed0")}, scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(name="fail", storage_path=str(tmp_path), verbose=0, callbacks=[rec]),
        ).fit()
    assert rec.events[-2:] == [("error", "ERROR", "WorkerGroupError"), ("end",)]
    assert ("recover", 1) not in rec.events


def test_a_raising_callback_ends_the_run_naming_the_hook(cluster, tmp_path) -> None:
    class Bad(train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics[0]["epoch"] == 1:
                raise RuntimeError("callback bug")

    rec = Recorder()
    with pytest.raises(TrainingFailedError, match=r"callback Bad.after_report raised RuntimeError: callback bug") as info:
        DataParallelTrainer(
            loop, train_loop_config={}, scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(name="bad", storage_path=str(tmp_path), verbose=0, callbacks=[rec, Bad()],
                                 failure_config=FailureConfig(max_failures=3)),
        ).fit()
    # no retry for a driver-side bug; what was reported so far is kept
    assert info.value.result.failures == []
    assert list(info.value.result.metrics_dataframe["epoch"]) == [0, 1]
    assert rec.events[-2:] == [("error", "ERROR", "CallbackError"), ("end",)]


def test_run_config_rejects_a_callback_without_hooks() -> None:
    with pytest.raises(TypeError, match=r"callbacks\[1\] is a function with none of the hooks"):
        RunConfig(callbacks=[Recorder(), lambda: None])
