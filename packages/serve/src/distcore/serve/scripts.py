"""The ``distcore-serve`` command. Subcommands are added by :data:`CLI`.add(...)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.scripts.cli import CommandLine
from distcore.serve import __version__

CLI = CommandLine(
    prog="distcore-serve",
    version=f"distcore-serve {__version__} (distcore {distcore.__version__})",
    description="Build, deploy and inspect Serve applications.",
)

from distcore.serve._internal.cli_commands import register  # noqa: E402

register(CLI)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
