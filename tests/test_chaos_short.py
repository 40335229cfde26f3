"""The chaos run's CI form: ``tools/chaos/chaos_run.py --short`` must end with 0 wrong, lost and hung results.

It starts its own 3-node cluster (twice: the fault-free baseline, then the run
with worker and node kills); see docs/chaos.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(330)]

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "chaos" / "chaos_run.py"


def test_chaos_run_short_form_loses_nothing(isolated_tmp):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT), "--short", "--json", "-v"], capture_output=True,
                              text=True, timeout=300, env=env, cwd=isolated_tmp)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"the chaos run took over 300 s:\n{out[-6000:]}")
    output = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary (exit {proc.returncode}):\n{output[-6000:]}"
    runs = json.loads(lines[-1])["runs"]
    assert {r["mode"] for r in runs} == {"no-faults", "faults"}
    table = proc.stdout[:proc.stdout.rindex(lines[-1])]
    for label in ("wrong results", "lost results (exceptions)", "hangs"):
        row = next(line for line in table.splitlines() if line.startswith(label))
        assert row.split()[-len(runs):] == ["0"] * len(runs), f"{row}\n{output[-6000:]}"
    faults = next(r for r in runs if r["mode"] == "faults")
    assert faults["worker_kills"] > 0 and faults["node_kills"] == 1, faults
    assert faults["tasks_submitted"] >= 1000, faults
    assert proc.returncode == 0, output[-6000:]
