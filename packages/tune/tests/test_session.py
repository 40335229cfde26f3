"""tune.report & co. inside a trial: no pyarrow import for a plain function trial, and
``train.report`` still works when the user's code imports ``distcore.train`` mid-trial."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys, time
    from distcore import tune
    from distcore.tune._internal.trial_actor import TrialWorker

    def plain(config):
        tune.report({"x": config["x"], "nested": {"a": 1}})

    def late_train_import(config):
        from distcore import train  # imported only now, inside the running trial
        train.report({"x": config["x"] * 2})

    def spec(i, trial_dir):
        return {"trial_id": f"t{i}", "trial_name": f"t{i}", "trial_dir": trial_dir, "experiment_name": "e",
                "config": {"x": i}, "checkpoint_path": None, "checkpoint_index": 0, "start_iteration": 0,
                "start_time_total": 0.0, "sync": False, "window": 256, "reuse": True,
                "checkpoint_frequency": 0, "checkpoint_at_end": False, "resources": {"CPU": 1}}

    def run(worker, fn, i):
        reply = worker.start(spec(i, sys.argv[1]), fn, 5.0)
        results = list(reply["results"])
        while reply["status"] == "running":
            reply = worker.poll(reply["seq"], 5.0)
            results += reply["results"]
        return reply["status"], [r for r, _ in results], reply["error"]

    out = {}
    out["plain"] = run(TrialWorker(), plain, 1)
    out["pyarrow_loaded"] = "pyarrow" in sys.modules or "distcore.train" in sys.modules
    out["late"] = run(TrialWorker(), late_train_import, 2)
    print(json.dumps(out))
""")


def test_function_trial_does_not_import_train_and_train_report_still_works(tmp_path) -> None:
    script = tmp_path / "trial.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    status, results, error = out["plain"]
    assert status == "done", error
    assert [(r["x"], r["nested"], r["training_iteration"]) for r in results] == [(1, {"a": 1}, 1)]
    assert out["pyarrow_loaded"] is False
    status, results, error = out["late"]
    assert status == "done", error
    assert [r["x"] for r in results] == [4]


def test_report_outside_a_trial_names_the_problem() -> None:
    from distcore import tune

    with pytest.raises(RuntimeError, match="outside a training session"):
        tune.report({"x": 1})


def test_report_rejects_bad_metrics() -> None:
    from distcore.tune._internal import session

    class Fake:
        def report(self, metrics, checkpoint=None):
            raise AssertionError("must not be reached")

        def get_checkpoint(self):
            return None

        get_context = get_dataset_shard = get_checkpoint

    session.set_session(Fake())
    try:
        with pytest.raises(TypeError, match="metrics must be a dict"):
            session.report([1, 2])
        with pytest.raises(TypeError, match="metric names must be str"):
            session.report({1: 2})
        with pytest.raises(TypeError, match="checkpoint must be"):
            session.report({"a": 1}, checkpoint="/tmp/x")
    finally:
        session.set_session(None)


def test_report_turns_numpy_scalars_into_numbers() -> None:
    import numpy as np

    from distcore.tune._internal import session

    seen = []

    class Capture:
        def report(self, metrics, checkpoint=None):
            seen.append(metrics)

        def get_checkpoint(self):
            return None

        get_context = get_dataset_shard = get_checkpoint

    session.set_session(Capture())
    try:
        session.report({"f": np.float32(0.5), "i": np.int64(3), "arr": np.arange(2), "s": "x"})
    finally:
        session.set_session(None)
    (metrics,) = seen
    assert type(metrics["f"]) is float and metrics["f"] == 0.5 and type(metrics["i"]) is int
    assert list(metrics["arr"]) == [0, 1] and metrics["s"] == "x"
