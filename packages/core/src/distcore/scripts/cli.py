"""The ``distcore`` command, and the small subcommand registry the libraries' CLIs share.

A subcommand is a name, a one-line help, a function that adds its arguments to
an :class:`argparse.ArgumentParser`, and a function that runs it and returns the
exit code. Later issues add core's subcommands (``start``, ``stop``, ``status``,
...) by calling :meth:`CommandLine.add` on :data:`DISTCORE` in a module listed in
:data:`_BUILTIN_MODULES`; each library builds its own :class:`CommandLine`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from distcore._version import API_VERSION, __version__

Run = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    run: Run
    configure: Configure = _no_arguments


@dataclass
class CommandLine:
    """An argparse program with ``--version`` and registered subcommands."""

    prog: str
    version: str
    description: str
    _commands: dict[str, Subcommand] = field(default_factory=dict)

    def add(self, name: str, help: str, run: Run, configure: Configure = _no_arguments) -> None:
        if name in self._commands:
            raise ValueError(f"{self.prog}: subcommand {name!r} is already registered")
        self._commands[name] = Subcommand(name, help, run, configure)

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument("--version", action="version", version=self.version)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
        for command in self._commands.values():
            command.configure(sub.add_parser(command.name, help=command.help))
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = self.parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return self._commands[args.command].run(args)


DISTCORE = CommandLine(
    prog="distcore",
    version=f"distcore {__version__} (API {API_VERSION})",
    description="Manage distcore clusters.",
)

# Modules whose import registers core subcommands on DISTCORE (filled by later issues).
_BUILTIN_MODULES: tuple[str, ...] = ("distcore.scripts.cluster_commands", "distcore.scripts.job_commands",
                                     "distcore.scripts.state_commands", "distcore.scripts.autoscaler_commands",
                                     "distcore.scripts.bench_commands")


def main(argv: Sequence[str] | None = None) -> int:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return DISTCORE.main(argv)


if __name__ == "__main__":
    # Run the importable module's main, so subcommands register on one registry.
    from distcore.scripts.cli import main as _main

    sys.exit(_main())
