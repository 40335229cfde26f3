"""The ``distcore-tune`` command. Subcommands are added by :data:`CLI`.add(...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.scripts.cli import CommandLine
from distcore.tune import __version__

CLI = CommandLine(
    prog="distcore-tune",
    version=f"distcore-tune {__version__} (distcore {distcore.__version__})",
    description="List experiments and show their results.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
