"""The live console table (rich on a TTY, plain lines otherwise) and TensorBoard event files."""

from __future__ import annotations

import io
import os

import pytest

from distcore import tune
from distcore.tune._internal.progress import ProgressReporter
from distcore.tune._internal.tb_events import read_scalars
from distcore.tune._internal.trial import RUNNING, TERMINATED, Trial


class Tty(io.StringIO):
    def isatty(self):
        return True


def _trials() -> list[Trial]:
    out = []
    for i, (status, loss) in enumerate([(RUNNING, 0.9), (TERMINATED, 0.25), (RUNNING, 0.5), (TERMINATED, 0.7)]):
        trial = Trial(f"abc_{i:05d}", {"lr": 0.1 * (i + 1), "model": {"width": 8 * (i + 1)}}, i, "/tmp/exp",
                      "fn", None)
        trial.status = status
        trial.last_result = {"metrics": {"loss": loss}, "training_iteration": i + 1}
        out.append(trial)
    return out


def test_rich_live_table_on_a_tty(monkeypatch) -> None:
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "200")  # rich sizes a non-terminal stream by $COLUMNS (80 otherwise)
    out = Tty()
    reporter = ProgressReporter("metrics/loss", "min", verbose=1, out=out, tty_interval=0)
    trials = _trials()
    reporter.report(trials)
    first = out.getvalue()
    assert "trials: 4 (2 running, 2 terminated)" in first
    assert "best metrics/loss=0.25 (fn_abc_00001)" in first
    assert "Trial name" in first and "model/width" in first and "metrics/loss" in first
    assert "┃" in first or "│" in first  # drawn by rich, not the plain fallback
    trials[0].status = TERMINATED
    reporter.message("Trial fn_abc_00000 errored")
    reporter.report(trials)
    second = out.getvalue()[len(first):]
    assert "\x1b[" in second and "3 terminated" in second  # redrawn in place, with the new counts
    assert "Trial fn_abc_00000 errored" in second
    reporter.final(trials)
    assert reporter._live is None


def test_plain_fallback_without_rich_or_tty() -> None:
    out = Tty()
    reporter = ProgressReporter("metrics/loss", "min", verbose=1, out=out, tty_interval=0, use_rich=False)
    reporter.report(_trials())
    reporter.report(_trials())
    text = out.getvalue()
    assert "Trial name" in text and "┃" not in text and "\x1b[" in text
    lines = io.StringIO()
    ProgressReporter("metrics/loss", "min", verbose=1, out=lines, line_interval=0).report(_trials())
    assert lines.getvalue().count("\n") == 1 and "best metrics/loss=0.25" in lines.getvalue()


def reporting(config):
    for step in range(1, 4):
        tune.report({"score": config["x"] * step, "env_runners": {"return": step * 10.0}, "name": "text"})


def test_tensorboard_event_files_when_a_writer_is_installed(cluster, tmp_path) -> None:
    from distcore.tune._internal.loggers import _tensorboard_writer_cls

    if _tensorboard_writer_cls() is None:
        pytest.skip("tensorboardX is not installed")
    grid = tune.Tuner(reporting, param_space={"x": 2.0},
                      run_config=tune.RunConfig(name="tb", storage_path=str(tmp_path), verbose=0)).fit()
    trial_dir = grid[0].path
    events = [n for n in os.listdir(trial_dir) if n.startswith("events.out.tfevents")]
    assert len(events) == 1, (os.listdir(trial_dir), grid[0].error)
    scalars = read_scalars(os.path.join(trial_dir, events[0]))
    assert scalars["tune/score"] == [(1, 2.0), (2, 4.0), (3, 6.0)]
    assert scalars["tune/env_runners/return"] == [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert "tune/name" not in scalars  # only numbers become scalars


def test_event_files_do_not_load_tensorboardx_writer_stack(tmp_path) -> None:
    # tensorboardX's package __init__ loads its SummaryWriter stack (torch among it); writing
    # event files needs only its record writer and protos, and the package still works after
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("tensorboardX is not installed")
    code = (
        "import sys\n"
        "from distcore.tune._internal.tb_events import EventFileWriter\n"
        f"w = EventFileWriter({str(tmp_path)!r}); w.add_scalars({{'tune/x': 1.5}}, 1); w.close()\n"
        "heavy = [m for m in ('torch', 'tensorboardX.writer') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import tensorboardX\n"
        "from tensorboardX import SummaryWriter\n"
        "assert 'tensorboardX.writer' in sys.modules and tensorboardX.proto.event_pb2.Event\n"
        "try:\n"
        "    tensorboardX.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    (events,) = [n for n in os.listdir(tmp_path) if n.startswith("events.out.tfevents")]
    assert read_scalars(os.path.join(tmp_path, events))["tune/x"] == [(1, 1.5)]
