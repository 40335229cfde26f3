"""The CI mode of the core microbenchmark: ``tools/bench/core_micro.py --quick`` runs and passes its floors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools/bench/core_micro.py"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(240)
def test_quick_mode_prints_the_table_and_passes_its_floors(isolated_tmp):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "tasks sync", "--only", "get calls",
         "--json", str(isolated_tmp / "quick.json")],
        capture_output=True, text=True, timeout=200, cwd=ROOT,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{proc.stderr[-3000:]}"
    assert re.search(r"^\| metric\s+\| distcore\s+\|", out, re.MULTILINE), out
    assert "single client tasks sync" in out
    assert "single client get calls (Plasma Store)" in out
    assert "--quick floors" in out
    assert "quick check: all metrics above their floors" in out
    assert (isolated_tmp / "quick.json").exists()


def test_floor_check_reports_a_drop_and_a_failure():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import core_micro
    finally:
        sys.path.remove(str(SCRIPT.parent))
    names = ["single client tasks sync", "1:1 actor calls sync"]
    results = {"single client tasks sync": {"rates": [1.0, 1.0], "mean": 1.0, "std": 0.0},
               "1:1 actor calls sync": {"rates": [], "error": "hung"}}
    failures = core_micro.check_floors(names, results)
    assert len(failures) == 2
    assert "below the floor" in failures[0] and "hung" in failures[1]
    assert "| single client tasks sync" in core_micro.format_table(names, results, None)


RAY_NAMES = [
    "single client get calls (Plasma Store)", "single client put calls (Plasma Store)",
    "multi client put calls (Plasma Store)", "single client put gigabytes", "single client tasks and get batch",
    "multi client put gigabytes", "single client get object containing 10k refs", "single client wait 1k refs",
    "single client tasks sync", "single client tasks async", "multi client tasks async", "1:1 actor calls sync",
    "1:1 actor calls async", "1:1 actor calls concurrent", "1:n actor calls async", "n:n actor calls async",
    "n:n actor calls with arg async", "1:1 async-actor calls sync", "1:1 async-actor calls async",
    "1:1 async-actor calls with args async", "1:n async-actor calls async", "n:n async-actor calls async",
    "placement group create/removal",
]


def test_workloads_carry_rays_names_and_every_one_has_a_floor():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import core_micro
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from distcore._private import microbenchmark as mb

    names = core_micro._selected_names(mb, core_micro.parse_args([]))
    assert names == RAY_NAMES
    assert set(core_micro.QUICK_FLOORS) == set(RAY_NAMES)
    assert mb.names(only="tasks sync") == ["single client tasks sync"]
    assert mb.names(only=["get calls", "wait"]) == [RAY_NAMES[0], "single client wait 1k refs"]


def test_cli_has_microbenchmark(capsys):
    from distcore.scripts.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["microbenchmark", "--help"])
    assert exc.value.code == 0
    assert "--only" in capsys.readouterr().out
