"""The ``distcore-train`` command. Subcommands are added by :data:`CLI`.add(...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.scripts.cli import CommandLine
from distcore.train import __version__

CLI = CommandLine(
    prog="distcore-train",
    version=f"distcore-train {__version__} (distcore {distcore.__version__})",
    description="Run training jobs as a gang of workers on a distcore cluster.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
