"""Who writes a trial's files: its actor when it shares the driver's node, else the driver.
Either way the files hold exactly the results the driver accepted, and are complete when
``fit`` returns."""

from __future__ import annotations

import csv
import json
import os
import threading
import time

import pytest

import distcore
from distcore import tune
from distcore._private.testing import assert_no_leaks

pytestmark = pytest.mark.integration


class _WriterThreadSeen(tune.Callback):
    """Records whether the driver ran its own trial-files writer thread during the fit."""

    def __init__(self) -> None:
        self.seen = False

    def on_trial_result(self, iteration, trials, trial, result) -> None:
        time.sleep(0.005)  # the driver's writer (if any) starts on its first queued write
        self.seen |= any(t.name == "tune-trial-files" for t in threading.enumerate())


def _rows(trial_dir: str) -> tuple[list[dict], list[dict]]:
    with open(os.path.join(trial_dir, "result.json")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(trial_dir, "progress.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return lines, rows


def _event_steps(trial_dir: str) -> list[int] | None:
    from distcore.tune._internal.loggers import _tensorboard_writer_cls

    if _tensorboard_writer_cls() is None:
        return None
    from distcore.tune._internal.tb_events import read_scalars

    events = [n for n in os.listdir(trial_dir) if n.startswith("events.out.tfevents")]
    steps: list[int] = []
    for name in events:
        steps += [step for step, _ in read_scalars(os.path.join(trial_dir, name)).get("tune/score", [])]
    return sorted(steps)


def three_reports(config):
    for step in range(1, 4):
        tune.report({"score": config["x"] * step})


def test_a_local_trial_actor_writes_its_own_files(cluster, tmp_path) -> None:
    seen = _WriterThreadSeen()
    grid = tune.Tuner(three_reports, param_space={"x": tune.grid_search([1.0, 2.0, 3.0])},
                      run_config=tune.RunConfig(name="local", storage_path=str(tmp_path), verbose=0,
                                                callbacks=[seen])).fit()
    assert grid.num_errors == 0
    assert not seen.seen  # the driver never wrote a trial file itself
    for result in grid:
        lines, rows = _rows(result.path)
        x = result.config["x"]
        assert [line["score"] for line in lines] == [x, 2 * x, 3 * x]
        assert [line["config"] for line in lines] == [{"x": x}] * 3
        assert [float(row["score"]) for row in rows] == [x, 2 * x, 3 * x]
        with open(os.path.join(result.path, "params.json")) as f:
            assert json.load(f) == {"x": x}
        steps = _event_steps(result.path)
        assert steps is None or steps == [1, 2, 3]
        assert list(result.metrics_dataframe["score"]) == [x, 2 * x, 3 * x]


def writes_into_its_dir(config):
    with open(os.path.join(tune.get_context().get_trial_dir(), "mine.txt"), "w") as f:
        f.write(str(config["x"]))
    tune.report({"score": config["x"]})


def test_a_trial_can_write_into_its_directory_from_the_start(cluster, tmp_path) -> None:
    grid = tune.Tuner(writes_into_its_dir, param_space={"x": tune.grid_search([1, 2, 3])},
                      run_config=tune.RunConfig(name="own", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0, [r.error for r in grid]
    for result in grid:
        with open(os.path.join(result.path, "mine.txt")) as f:
            assert f.read() == str(result.config["x"])
        assert len(_rows(result.path)[0]) == 1


def many_quick_reports(config):
    for _ in range(400):
        tune.report({"score": 1.0})
        time.sleep(0.001)


def test_results_that_ran_ahead_of_a_stop_are_cut_from_the_files(cluster, tmp_path) -> None:
    # batch mode: the trial reports ahead of the driver's decisions, and its actor writes each
    # result as it comes; the stop at iteration 5 leaves exactly 5 results in every file
    grid = tune.Tuner(many_quick_reports, param_space={"x": tune.grid_search([1, 2])},
                      run_config=tune.RunConfig(name="ahead", storage_path=str(tmp_path), verbose=0,
                                                stop={"training_iteration": 5})).fit()
    assert grid.num_errors == 0
    for result in grid:
        assert result.metrics["training_iteration"] == 5
        lines, rows = _rows(result.path)
        assert [line["training_iteration"] for line in lines] == [1, 2, 3, 4, 5]
        assert [int(row["training_iteration"]) for row in rows] == [1, 2, 3, 4, 5]
        steps = _event_steps(result.path)
        assert steps is None or steps == [1, 2, 3, 4, 5]


def test_files_are_complete_when_each_trial_gets_a_new_actor(cluster, tmp_path) -> None:
    # reuse_actors=False: each actor is killed when its trial ends, after its files are flushed
    grid = tune.Tuner(three_reports, param_space={"x": tune.grid_search([1.0, 2.0, 3.0, 4.0])},
                      tune_config=tune.TuneConfig(reuse_actors=False),
                      run_config=tune.RunConfig(name="fresh", storage_path=str(tmp_path), verbose=0)).fit()
    assert grid.num_errors == 0
    for result in grid:
        lines, rows = _rows(result.path)
        assert [line["training_iteration"] for line in lines] == [1, 2, 3]
        assert len(rows) == 3


def test_trials_stopped_mid_batch_one_after_another_on_one_actor(cluster, tmp_path) -> None:
    # each trial's cut happens before the next trial starts on the same actor
    grid = tune.Tuner(many_quick_reports, param_space={"x": tune.grid_search([1, 2, 3])},
                      tune_config=tune.TuneConfig(max_concurrent_trials=1),
                      run_config=tune.RunConfig(name="same_actor", storage_path=str(tmp_path), verbose=0,
                                                stop={"training_iteration": 3})).fit()
    for result in grid:
        lines, rows = _rows(result.path)
        assert [line["training_iteration"] for line in lines] == [1, 2, 3]
        assert [int(row["training_iteration"]) for row in rows] == [1, 2, 3]


@pytest.mark.slow
def test_an_actor_on_another_node_leaves_the_files_to_the_driver(tmp_path) -> None:
    from distcore.cluster_utils import Cluster

    if distcore.is_initialized():
        distcore.shutdown()
    c = Cluster()
    try:
        c.add_node(num_cpus=0)  # the driver's node runs no trial
        c.add_node(num_cpus=2)
        c.wait_for_nodes()
        c.connect()
        seen = _WriterThreadSeen()
        grid = tune.Tuner(three_reports, param_space={"x": tune.grid_search([1.0, 2.0])},
                          run_config=tune.RunConfig(name="remote", storage_path=str(tmp_path), verbose=0,
                                                    callbacks=[seen])).fit()
        assert grid.num_errors == 0
        assert seen.seen  # the driver wrote them
        for result in grid:
            lines, rows = _rows(result.path)
            x = result.config["x"]
            assert [line["score"] for line in lines] == [x, 2 * x, 3 * x]
            assert len(rows) == 3
            with open(os.path.join(result.path, "params.json")) as f:
                assert json.load(f) == {"x": x}
    finally:
        distcore.shutdown()
        c.shutdown()
    assert_no_leaks({c._session_name})


STUCK_DRIVER = """
import os, sys
import distcore
from distcore import tune

def stuck(config):
    tune.report({"score": 1})
    open(os.path.join(config["marks"], str(config["i"])), "w").close()
    sum(range(10 ** 13))  # C code that never lets go of the GIL

distcore.init(num_cpus=2)
tune.Tuner(stuck, param_space={"i": tune.grid_search([0, 1]), "marks": sys.argv[1]},
           run_config=tune.RunConfig(name="stuck", storage_path=sys.argv[2], verbose=0)).fit()
"""


@pytest.mark.slow
def test_ctrl_c_is_prompt_when_trial_actors_cannot_answer(tmp_path) -> None:
    # on Ctrl-C the driver asks every trial actor to flush its files, all at once and for 2 s
    # in all, then kills them: two actors stuck in C code do not hold it up for long
    import signal
    import subprocess
    import sys

    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(STUCK_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), str(marks), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(os.listdir(marks)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    assert "Tuner.restore(" in out, out
    assert took < 12, f"Ctrl-C took {took:.1f} s"
