"""Sources that read files: each read task reads a group of files (one block per file) or, for
formats split by lines (CSV, JSON lines), one byte range of a big file.

Files live on any filesystem ``fs.resolve`` knows (local, URIs, ``filesystem=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from distcore.data._internal.datasource import fs as F
from distcore.data._internal.datasource._meta import estimate
from distcore.data._internal.datasource.datasource import (
    Datasource,
    ReadTask,
    limit_tables,
    resolve_parallelism,
    split_evenly,
)

#: a file is split into byte ranges of at least this many bytes (formats that split by lines)
MIN_RANGE_BYTES = 256 * 1024
_CHUNK = 64 * 1024


class FileReadError(RuntimeError):
    """A file could not be read or parsed; the message names the file."""


def _finish(table: pa.Table, path: str, include_paths: bool, columns: list[str] | None) -> pa.Table:
    if include_paths:
        table = table.append_column("path", pa.array([path] * table.num_rows, pa.string()))
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise KeyError(f"columns {missing} not in {path!r} (it has {table.column_names})")
        table = table.select(columns)
    return table


def _read_units(read: Callable[[Any], pa.Table], units: list[tuple], include_paths: bool,
                columns: list[str] | None) -> Iterator[pa.Table]:
    for unit in units:
        path = unit[0]
        try:
            table = read(unit)
        except FileNotFoundError:
            raise
        except Exception as exc:  # parse errors: name the file
            where = "" if unit[1] is None else f" (bytes {unit[1]}-{unit[2]})"
            raise FileReadError(f"failed to read {path!r}{where}: {type(exc).__name__}: {exc}") from exc
        yield _finish(table, path, include_paths, columns)


def _find_newline(f: Any, offset: int, size: int) -> int:
    """Index just past the first ``\\n`` at or after ``offset`` (``size`` when there is none)."""
    while offset < size:
        chunk = f.read_at(min(_CHUNK, size - offset), offset)
        i = chunk.find(b"\n")
        if i >= 0:
            return offset + i + 1
        offset += len(chunk)
    return size


def read_line_range(f: Any, start: int, end: int, size: int) -> bytes:
    """The whole lines that start in ``[start, end)`` of the open file ``f``."""
    begin = 0 if start == 0 else _find_newline(f, start - 1, size)
    stop = size if end >= size else _find_newline(f, end - 1, size)
    return f.read_at(stop - begin, begin) if stop > begin else b""


def first_line(f: Any, size: int) -> bytes:
    return f.read_at(_find_newline(f, 0, size), 0)


class FileBasedDatasource(Datasource):
    """Files -> blocks. Subclasses implement :meth:`read_stream` (one open file -> one table); those whose
    format splits at line ends also :meth:`read_lines` (a byte range of whole lines -> one table)."""

    _FILE_EXTENSIONS: Sequence[str] | None = None
    #: decompress ``.gz``/``.bz2``/... files by their extension when reading a whole file
    _DECOMPRESS = False
    supports_projection = True
    supports_limit = True

    def __init__(self, paths: Any, *, file_extensions: Sequence[str] | None = None,
                 include_paths: bool = False, columns: list[str] | None = None,
                 limit: int | None = None, filesystem: Any = None) -> None:
        self._paths_arg = paths
        exts = file_extensions if file_extensions is not None else self._FILE_EXTENSIONS
        self._fs, self._files = F.expand(paths, exts, filesystem)
        self._include_paths = include_paths
        self._columns = columns
        self._limit = limit
        self._sizes = {f: F.file_size(self._fs, f) for f in self._files}

    def _copy(self, **changes: Any) -> FileBasedDatasource:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def files(self) -> list[str]:
        return list(self._files)

    def read_stream(self, f: Any, path: str) -> pa.Table:
        """One whole file (``f``: a pyarrow input stream, decompressed by extension)."""
        raise NotImplementedError

    def splittable(self, path: str) -> bool:
        """Whether ``path`` may be read as several byte ranges of whole lines."""
        return False

    def read_lines(self, data: bytes, header: bytes, path: str) -> pa.Table:
        """Whole lines of a file (``header``: its first line, already in ``data`` for the first range)."""
        raise NotImplementedError

    def range_bounds(self, path: str, bounds: list[int]) -> list[int]:
        """Where the byte ranges of ``path`` start and end (``bounds``: even cuts, first 0, last the size).
        A format whose records may span lines moves the cuts to record boundaries."""
        return bounds

    def header(self, f: Any, size: int, path: str) -> bytes:
        """The bytes every range after the first is parsed after (its header line)."""
        return first_line(f, size)

    def _read_unit(self, unit: tuple) -> pa.Table:
        path, start, end = unit
        if start is None:
            with self._fs.open_input_stream(path, compression="detect" if self._DECOMPRESS else None) as f:
                return self.read_stream(f, path)
        with self._fs.open_input_file(path) as f:
            size = f.size()
            data = read_line_range(f, start, end, size)
            header = self.header(f, size, path) if start > 0 else b""
        return self.read_lines(data, header, path)

    def with_columns(self, columns: list[str]) -> Datasource:
        return self._copy(_columns=list(columns))

    def with_limit(self, n: int) -> Datasource:
        return self._copy(_limit=n if self._limit is None else min(n, self._limit))

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(self._sizes.values())

    def _units(self, n: int) -> list[list[tuple]]:
        """Read tasks' units: ``(path, None, None)`` for a whole file, ``(path, start, end)`` for a range."""
        files = self._files
        if n <= len(files) or self._limit is not None:
            return [[(f, None, None) for f in group] for group in split_evenly(files, n)]
        total = sum(self._sizes.values()) or 1
        out: list[list[tuple]] = []
        for f in files:
            size = self._sizes[f]
            k = max(1, min(round(n * size / total), size // MIN_RANGE_BYTES)) if self.splittable(f) else 1
            if k == 1:
                out.append([(f, None, None)])
                continue
            bounds = self.range_bounds(f, [size * i // k for i in range(k + 1)])
            out.extend([(f, s, e)] for s, e in zip(bounds, bounds[1:], strict=False) if e > s)
        return out

    def get_read_tasks(self, parallelism: int) -> list[ReadTask]:
        n = resolve_parallelism(parallelism, len(self._files))
        include_paths, columns, limit = self._include_paths, self._columns, self._limit
        tasks = []
        for units in self._units(n):
            size = sum(self._sizes[u[0]] if u[1] is None else u[2] - u[1] for u in units)

            def read_fn(units: list[tuple] = units) -> Iterator[pa.Table]:
                return limit_tables(_read_units(self._read_unit, units, include_paths, columns), limit)

            tasks.append(ReadTask(read_fn, estimate(None, size, None, sorted({u[0] for u in units}))))
        return tasks
