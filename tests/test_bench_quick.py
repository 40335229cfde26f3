"""The CI mode of the core microbenchmark: ``tools/bench/core_micro.py --quick`` runs and passes its floors."""

from __future__ import annotations

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
    assert "| metric" in out and "distcore |" in out
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
