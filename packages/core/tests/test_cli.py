"""The `distcore` command and the subcommand registry the libraries' CLIs share."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

import pytest

from distcore._version import API_VERSION, __version__
from distcore.scripts.cli import CommandLine, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"distcore {__version__} (API {API_VERSION})"


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: distcore")


def test_console_script_is_declared() -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="distcore")
    assert entry.value == "distcore.scripts.cli:main"


def test_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distcore.scripts.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"distcore {__version__}")


def test_registered_subcommand_gets_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    cli = CommandLine(prog="tool", version="tool 1.0", description="A test tool.")

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--times", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        print("hi " * args.times)
        return 3

    cli.add("greet", "say hi", run, configure)
    assert cli.main(["greet", "--times", "2"]) == 3
    assert capsys.readouterr().out.strip() == "hi hi"
    assert "greet" in cli.parser().format_help()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nope"])
    assert exit_info.value.code == 2


def test_duplicate_subcommand_is_refused() -> None:
    cli = CommandLine(prog="tool", version="tool 1.0", description="A test tool.")
    cli.add("start", "start it", lambda args: 0)
    with pytest.raises(ValueError, match="'start' is already registered"):
        cli.add("start", "again", lambda args: 0)
