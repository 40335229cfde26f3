"""A killed or interrupted driver leaves a restorable experiment; Tuner.restore
finishes it with no trial run twice past its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from distcore import tune

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ITERATIONS = 8


def counting(config):
    """Checkpoints every step; logs each executed step to config["log"]."""
    import tempfile

    step = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "step")) as f:
            step = int(f.read())
    while step < config["iters"]:
        step += 1
        time.sleep(config["sleep"])
        with open(config["log"], "a") as f:
            f.write(f"{config['i']} {step} {os.environ.get('TUNE_PHASE', '2')}\n")
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "step"), "w") as f:
            f.write(str(step))
        tune.report({"step": step}, checkpoint=tune.Checkpoint.from_directory(d))


DRIVER = textwrap.dedent("""
    import os, sys, time
    os.environ["TUNE_PHASE"] = "1"
    import distcore
    from distcore import tune
    sys.path.insert(0, {tests!r})
    distcore.init(num_cpus=2, runtime_env={{"env_vars": {{"TUNE_PHASE": "1"}}}})
    import cloudpickle, test_restore_trainable
    cloudpickle.register_pickle_by_value(test_restore_trainable)
    from test_restore_trainable import counting
    tune.Tuner(counting, param_space={{"i": tune.grid_search([0, 1, 2]), "iters": {iters}, "sleep": 0.25,
                                      "log": {log!r}}},
               run_config=tune.RunConfig(name="exp", storage_path={storage!r}, verbose=1)).fit()
    print("FIT RETURNED", flush=True)
""")


def _lines(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [tuple(map(int, line.split())) for line in f if line.strip()]


def _start_driver(tmp_path):
    tests = tmp_path / "mods"
    tests.mkdir()
    import inspect

    (tests / "test_restore_trainable.py").write_text(
        "import os, time\nfrom distcore import tune\n\n" + inspect.getsource(counting))
    log = str(tmp_path / "steps.log")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(tests), iters=ITERATIONS, log=log, storage=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    return proc, log


def _wait_for_progress(proc, log, min_steps=3, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {}
        for i, step, _ in _lines(log):
            done[i] = max(done.get(i, 0), step)
        if len(done) >= 2 and all(v >= min_steps for v in done.values()):
            return
        if proc.poll() is not None:
            pytest.fail(f"driver exited early: {proc.stdout.read()}")
        time.sleep(0.1)
    pytest.fail("the driver made no progress")


def _check_resumed(tmp_path, log):
    from distcore.tune._internal.trial_checkpoints import latest_checkpoint_on_disk

    path = tmp_path / "exp"
    assert tune.Tuner.can_restore(path)
    # what phase 1 had checkpointed, per trial (read before the restore runs)
    state = json.loads((path / "experiment_state.json").read_text())
    checkpointed = {}
    for doc in state["trials"]:
        found = latest_checkpoint_on_disk(str(path / doc["dirname"]))
        checkpointed[doc["config"]["i"]] = found[1] if found else 0
    grid = tune.Tuner.restore(str(path), trainable=counting).fit()
    assert len(grid) == 3 and grid.num_terminated == 3 and grid.num_errors == 0
    assert sorted(r.metrics["step"] for r in grid) == [ITERATIONS] * 3
    lines = _lines(log)
    for i in range(3):
        phase2 = sorted(step for trial, step, phase in lines if trial == i and phase == 2)
        # resumed right after its checkpoint: nothing up to the checkpoint ran again
        assert phase2 == list(range(checkpointed.get(i, 0) + 1, ITERATIONS + 1)), (i, checkpointed, phase2)
    return grid


def test_restore_after_killing_the_driver(cluster, tmp_path) -> None:
    proc, log = _start_driver(tmp_path)
    try:
        _wait_for_progress(proc, log)
        time.sleep(1.2)  # at least one periodic experiment-state save
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    time.sleep(2.0)  # orphaned trial actors notice their driver is gone
    _check_resumed(tmp_path, log)


def test_ctrl_c_leaves_a_restorable_experiment(cluster, tmp_path) -> None:
    proc, log = _start_driver(tmp_path)
    try:
        _wait_for_progress(proc, log, min_steps=2)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    assert "Tuner.restore(" in out, out
    state = json.loads((tmp_path / "exp" / "experiment_state.json").read_text())
    assert state["interrupted"] is True
    assert any(doc["status"] != "TERMINATED" for doc in state["trials"])
    _check_resumed(tmp_path, log)
