"""The ``distcore-rllib`` command. Subcommands are added by :data:`CLI`.add(...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.rllib import __version__
from distcore.scripts.cli import CommandLine

CLI = CommandLine(
    prog="distcore-rllib",
    version=f"distcore-rllib {__version__} (distcore {distcore.__version__})",
    description="Train and evaluate reinforcement learning algorithms.",
)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
