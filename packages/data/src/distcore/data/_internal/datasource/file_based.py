"""Sources that read whole files: each read task reads a group of files, one block per file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from distcore.data._internal.datasource._meta import estimate
from distcore.data._internal.datasource.datasource import (
    Datasource,
    ReadTask,
    limit_tables,
    resolve_parallelism,
    split_evenly,
)
from distcore.data._internal.datasource.paths import expand_paths


class FileReadError(RuntimeError):
    """A file could not be read or parsed; the message names the file."""


def _read_files(read_file: Callable[[str], pa.Table], files: list[str], include_paths: bool,
                columns: list[str] | None) -> Iterator[pa.Table]:
    for path in files:
        try:
            table = read_file(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # parse errors: name the file
            raise FileReadError(f"failed to read {path!r}: {type(exc).__name__}: {exc}") from exc
        if include_paths:
            table = table.append_column("path", pa.array([path] * table.num_rows, pa.string()))
        if columns is not None:
            missing = [c for c in columns if c not in table.column_names]
            if missing:
                raise KeyError(f"columns {missing} not in {path!r} (it has {table.column_names})")
            table = table.select(columns)
        yield table


class FileBasedDatasource(Datasource):
    """Files -> blocks. Subclasses implement :meth:`read_file` (one file -> one table)."""

    _FILE_EXTENSIONS: Sequence[str] | None = None
    supports_projection = True
    supports_limit = True

    def __init__(self, paths: Any, *, file_extensions: Sequence[str] | None = None,
                 include_paths: bool = False, columns: list[str] | None = None,
                 limit: int | None = None) -> None:
        self._paths_arg = paths
        self._files = expand_paths(paths, file_extensions if file_extensions is not None else self._FILE_EXTENSIONS)
        self._include_paths = include_paths
        self._columns = columns
        self._limit = limit

    def _copy(self, **changes: Any) -> FileBasedDatasource:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def files(self) -> list[str]:
        return list(self._files)

    def read_file(self, path: str) -> pa.Table:
        raise NotImplementedError

    def with_columns(self, columns: list[str]) -> Datasource:
        return self._copy(_columns=list(columns))

    def with_limit(self, n: int) -> Datasource:
        return self._copy(_limit=n if self._limit is None else min(n, self._limit))

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(os.path.getsize(f) for f in self._files) if self._files else 0

    def get_read_tasks(self, parallelism: int) -> list[ReadTask]:
        groups = split_evenly(self._files, resolve_parallelism(parallelism, len(self._files)))
        read_file, include_paths, columns, limit = self.read_file, self._include_paths, self._columns, self._limit
        tasks = []
        for group in groups:
            size = sum(os.path.getsize(f) for f in group)

            def read_fn(group: list[str] = group) -> Iterator[pa.Table]:
                return limit_tables(_read_files(read_file, group, include_paths, columns), limit)

            tasks.append(ReadTask(read_fn, estimate(None, size, None, group)))
        return tasks
