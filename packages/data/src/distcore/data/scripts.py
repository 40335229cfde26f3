"""The ``distcore-data`` command. Subcommands are added by :data:`CLI`.add(...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.data import __version__
from distcore.scripts.cli import CommandLine

CLI = CommandLine(
    prog="distcore-data",
    version=f"distcore-data {__version__} (distcore {distcore.__version__})",
    description="Inspect and convert datasets on a distcore cluster.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
