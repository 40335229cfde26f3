"""The ``distcore-tune`` command: ``list`` experiments under a storage path, ``show`` one's results.

Example::

    distcore-tune list ~/distcore_results
    distcore-tune show ~/distcore_results/my_exp --metric loss --mode min
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import distcore
from distcore.scripts.cli import CommandLine
from distcore.tune import __version__
from distcore.tune._internal import cli as _cli

CLI = CommandLine(
    prog="distcore-tune",
    version=f"distcore-tune {__version__} (distcore {distcore.__version__})",
    description="List experiments and show their results.",
)
CLI.add("list", "list the experiments under a storage path", _cli.list_experiments, _cli.configure_list)
CLI.add("show", "show the trials of one experiment as a table", _cli.show_experiment, _cli.configure_show)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
