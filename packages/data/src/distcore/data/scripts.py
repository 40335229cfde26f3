"""The ``distcore-data`` command: inspect and convert datasets on the distcore engine.

Examples::

    distcore-data schema /data/events            # a parquet directory
    distcore-data head /data/logs.jsonl -n 3
    distcore-data count "/data/csv/*.csv"
    distcore-data convert /data/csv /data/parquet --to parquet

Each command runs a real Dataset (reads, operators, progress bars) on a local
cluster, or on ``--address`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import distcore
from distcore.data import __version__
from distcore.scripts.cli import CommandLine

CLI = CommandLine(
    prog="distcore-data",
    version=f"distcore-data {__version__} (distcore {distcore.__version__})",
    description="Inspect and convert datasets on a distcore cluster.",
)

#: file extension -> reader format
_EXTENSIONS = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "json": "json", "jsonl": "json",
               "ndjson": "json", "txt": "text", "text": "text", "npy": "numpy"}
_FORMATS = ("parquet", "csv", "json", "text", "numpy")


class CLIError(Exception):
    """A problem with the command's input, reported as one line and exit code 2."""


def detect_format(path: str) -> str:
    """The reader format of a file (by extension) or of a directory (its most common file extension)."""
    from distcore.data._internal.datasource.paths import expand_paths

    try:
        files = expand_paths(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    counts = Counter(_EXTENSIONS.get(os.path.splitext(f)[1].lower().lstrip(".")) for f in files)
    counts.pop(None, None)
    if not counts:
        raise CLIError(f"cannot tell the format of {path!r} from its file names: pass --format "
                       f"({'|'.join(_FORMATS)})")
    return counts.most_common(1)[0][0]


def open_dataset(path: str, fmt: str | None, num_blocks: int | None = None) -> Any:
    import distcore.data as dd

    fmt = fmt or detect_format(path)
    reader = {"parquet": dd.read_parquet, "csv": dd.read_csv, "json": dd.read_json, "text": dd.read_text,
              "numpy": dd.read_numpy}[fmt]
    try:
        return reader(path, override_num_blocks=num_blocks)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise CLIError(str(exc)) from exc


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a file, a directory, a glob or a comma-free list of paths")
    parser.add_argument("--format", choices=_FORMATS, help="the input format (default: from the file names)")
    parser.add_argument("--address", help="a running cluster to use (default: start a local one)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _session(args: argparse.Namespace) -> bool:
    """Connect (or start a local cluster); True when this command must shut it down."""
    from distcore.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = not args.no_progress
    ctx.progress_bars_in_non_tty = not args.no_progress
    if distcore.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": args.address} if args.address else {}
    if args.num_cpus is not None and not args.address:
        kwargs["num_cpus"] = args.num_cpus
    distcore.init(**kwargs)
    return True


def _run(args: argparse.Namespace, body: Any) -> int:
    started = False
    try:
        started = _session(args)
        body(args)
        return 0
    except CLIError as exc:
        print(f"distcore-data {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if started:
            distcore.shutdown()


def _schema(args: argparse.Namespace) -> None:
    schema = open_dataset(args.path, args.format).schema()
    if schema is None:
        print("(empty dataset: no schema)")
        return
    width = max((len(n) for n in schema.names), default=0)
    for field in schema:
        print(f"{field.name:<{width}}  {field.type}{'' if field.nullable else ' not null'}")


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _head(args: argparse.Namespace) -> None:
    if args.n < 0:
        raise CLIError(f"-n must be >= 0, got {args.n}")
    for row in open_dataset(args.path, args.format).take(args.n):
        print(json.dumps(row, default=_jsonable))


def _count(args: argparse.Namespace) -> None:
    print(open_dataset(args.path, args.format).count())


def _convert(args: argparse.Namespace) -> None:
    ds = open_dataset(args.path, args.format, args.num_blocks)
    if os.path.abspath(args.dest) == os.path.abspath(args.path):
        raise CLIError("the destination must differ from the input")
    if os.path.isfile(args.dest):
        raise CLIError(f"the destination {args.dest!r} is a file; give a directory")
    writer = {"parquet": ds.write_parquet, "csv": ds.write_csv, "json": ds.write_json}[args.to]
    try:
        results = writer(args.dest, mode="error" if not args.overwrite else "overwrite")
    except FileExistsError as exc:
        raise CLIError(f"{exc}; pass --overwrite to replace its {args.to} files") from exc
    rows = sum(getattr(r, "num_rows", 0) for r in results or [])
    files = sum(len(getattr(r, "paths", [])) for r in results or [])
    print(f"wrote {rows} rows in {files} {args.to} files to {args.dest}")


def _configure_head(parser: argparse.ArgumentParser) -> None:
    _add_input(parser)
    parser.add_argument("-n", type=int, default=5, help="rows to show (default 5)")


def _configure_convert(parser: argparse.ArgumentParser) -> None:
    _add_input(parser)
    parser.add_argument("dest", help="output directory (one file per block)")
    parser.add_argument("--to", required=True, choices=("parquet", "csv", "json"), help="output format")
    parser.add_argument("--num-blocks", type=int, default=None, help="read tasks (output files) to use")
    parser.add_argument("--overwrite", action="store_true", help="replace files of that format in dest")


CLI.add("schema", "print the column names and types", lambda a: _run(a, _schema), _add_input)
CLI.add("head", "print the first rows as JSON lines", lambda a: _run(a, _head), _configure_head)
CLI.add("count", "print the number of rows", lambda a: _run(a, _count), _add_input)
CLI.add("convert", "convert files or a directory to parquet, csv or json", lambda a: _run(a, _convert),
        _configure_convert)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
