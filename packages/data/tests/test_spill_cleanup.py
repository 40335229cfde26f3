"""Spill directories left by a driver that crashed mid-exchange are removed by the next exchange
that spills under the same root; live drivers' directories and unrelated files are kept."""

from __future__ import annotations

import os
import subprocess
import sys

from distcore.data._internal.exchange import streaming


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_a_crashed_drivers_spill_dir_goes_when_the_next_exchange_spills(tmp_path, monkeypatch) -> None:
    root = tmp_path / "spill"
    crashed = root / f"{_dead_pid()}-0123456789ab"
    crashed.mkdir(parents=True)
    (crashed / "map0.arrow").write_bytes(b"x" * 1024)
    mine = root / f"{os.getpid()}-aaaaaaaaaaaa"  # this process's own, from an exchange still running
    mine.mkdir()
    live = root / f"{os.getppid()}-bbbbbbbbbbbb"  # a driver that still runs
    live.mkdir()
    other = root / "notes-of-someone"
    other.mkdir()
    monkeypatch.setenv("DISTCORE_DATA_SPILL_DIR", str(root))
    monkeypatch.setattr(streaming, "_swept", set())

    new = streaming.new_spill_dir()

    assert not crashed.exists()
    assert mine.exists() and live.exists() and other.exists() and os.path.isdir(new)
    assert os.path.basename(new).startswith(f"{os.getpid()}-")
    # once per process and root: a later exchange does not list the root again
    again = root / f"{_dead_pid()}-cccccccccccc"
    again.mkdir()
    streaming.remove_spill_dir(streaming.new_spill_dir())
    assert again.exists()
    assert streaming.sweep_orphaned_spill_dirs(str(root)) == [str(again)]
