"""Batch formats: block <-> "numpy" (dict of ndarrays), "pandas", "pyarrow" ("default" = numpy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from distcore.data._internal import block as B

BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


def check_batch_format(batch_format: str | None) -> str:
    fmt = "default" if batch_format is None else batch_format
    if fmt not in BATCH_FORMATS:
        raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, got {batch_format!r}")
    return "numpy" if fmt == "default" else fmt


def to_batch(table: pa.Table, batch_format: str) -> Any:
    fmt = check_batch_format(batch_format)
    if fmt == "numpy":
        return B.to_numpy_dict(table)
    if fmt == "pandas":
        return B.to_pandas(table)
    return table


class Batcher:
    """Re-chunk a stream of blocks into tables of exactly ``batch_size`` rows (the last may be short)."""

    def __init__(self, batch_size: int | None) -> None:
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.batch_size = batch_size
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        if self.batch_size is None:
            if table.num_rows:
                yield table
            return
        if table.num_rows == 0:
            return
        self._pending.append(table)
        self._rows += table.num_rows
        while self._rows >= self.batch_size:
            yield self._take(self.batch_size)

    def _take(self, n: int) -> pa.Table:
        merged = B.concat(self._pending)
        out, rest = merged.slice(0, n), merged.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._rows = rest.num_rows
        return out

    def finish(self) -> Iterator[pa.Table]:
        if self._rows:
            yield self._take(self._rows)
