"""Sources over data in hand or generated: range, range_tensor, items, pandas, numpy, arrow, torch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from distcore.data._internal.datasource._meta import (
    estimate,
    metadata_of,
    table_from_columns,
    tensor_array,
)
from distcore.data._internal.datasource.datasource import Datasource, ReadTask, limit_tables

#: blocks a creation source makes when the engine asks for "auto" parallelism
DEFAULT_CREATE_BLOCKS = 8


def _num_blocks(parallelism: int | None, rows: int) -> int:
    n = parallelism if parallelism is not None and parallelism > 0 else DEFAULT_CREATE_BLOCKS
    return max(1, min(n, rows)) if rows > 0 else 1


def _bounds(rows: int, n: int) -> list[tuple[int, int]]:
    edges = [rows * i // n for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


class RangeDatasource(Datasource):
    """Integers ``0..n-1`` in column ``id``; with ``tensor_shape``, column ``data`` of that shape filled with i."""

    supports_limit = True

    def __init__(self, n: int, tensor_shape: Sequence[int] | None = None, column: str | None = None) -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"range needs a non-negative int, got {n!r}")
        self._n = int(n)
        self._shape = tuple(int(s) for s in tensor_shape) if tensor_shape is not None else None
        self._column = column or ("data" if self._shape is not None else "id")

    def with_limit(self, n: int) -> Datasource:
        return RangeDatasource(min(self._n, n), self._shape, self._column)

    def _row_bytes(self) -> int:
        return 8 * (int(np.prod(self._shape)) if self._shape else 1)

    def estimate_inmemory_data_size(self) -> int:
        return self._n * self._row_bytes()

    def schema(self) -> pa.Schema:
        return self._make(0, 0).schema

    def _make(self, start: int, end: int) -> pa.Table:
        ids = np.arange(start, end, dtype=np.int64)
        if self._shape is None:
            return pa.table({self._column: ids})
        data = np.broadcast_to(ids.reshape((-1,) + (1,) * len(self._shape)), (len(ids),) + self._shape)
        return pa.table({self._column: tensor_array(np.ascontiguousarray(data))})

    def get_read_tasks(self, parallelism: int) -> list[ReadTask]:
        n = _num_blocks(parallelism, self._n)
        schema = self.schema()
        tasks = []
        for start, end in _bounds(self._n, n):
            def read_fn(start: int = start, end: int = end) -> Iterator[pa.Table]:
                yield self._make(start, end)

            tasks.append(ReadTask(read_fn, estimate(end - start, (end - start) * self._row_bytes(), schema)))
        return tasks


class BlocksDatasource(Datasource):
    """Tables in hand, re-cut into ``parallelism`` blocks (or kept one block per table)."""

    supports_limit = True

    def __init__(self, tables: Sequence[pa.Table], keep_blocks: bool = False) -> None:
        self._tables = [t for t in tables]
        self._keep_blocks = keep_blocks
        self._limit: int | None = None

    def with_limit(self, n: int) -> Datasource:
        new = BlocksDatasource(self._tables, self._keep_blocks)
        new._limit = n if self._limit is None else min(n, self._limit)
        return new

    def estimate_inmemory_data_size(self) -> int:
        return sum(t.nbytes for t in self._tables)

    def schema(self) -> pa.Schema | None:
        return self._tables[0].schema if self._tables else None

    def get_read_tasks(self, parallelism: int) -> list[ReadTask]:
        limit = self._limit
        if self._keep_blocks or not self._tables:
            pieces = list(self._tables)
        else:
            whole = pa.concat_tables(self._tables, promote_options="default") if len(self._tables) > 1 \
                else self._tables[0]
            pieces = [whole.slice(s, e - s) for s, e in _bounds(whole.num_rows, _num_blocks(parallelism,
                                                                                           whole.num_rows))]
        tasks = []
        for piece in pieces:
            def read_fn(piece: pa.Table = piece) -> Iterator[pa.Table]:
                return limit_tables([piece], limit)

            tasks.append(ReadTask(read_fn, metadata_of(piece)))
        return tasks


def items_table(items: Sequence[Any]) -> pa.Table:
    """Rows from a list: dicts become columns; anything else goes to column ``item``."""
    if not items:
        return pa.table({})
    if all(isinstance(x, dict) for x in items):
        keys: dict[str, None] = {}
        for row in items:
            keys.update(dict.fromkeys(row))
        columns = {k: [row.get(k) for row in items] for k in keys}
    elif any(isinstance(x, dict) for x in items):
        raise TypeError("from_items needs all items to be dicts, or none of them")
    else:
        columns = {"item": list(items)}
    out = {}
    for name, values in columns.items():
        if values and all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in values):
            out[name] = tensor_array(values)
        else:
            try:
                out[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise TypeError(f"from_items: column {name!r} mixes types Arrow cannot hold in one "
                                f"column ({exc}); convert the values to one type") from exc
    return pa.table(out)


def pandas_tables(dfs: Any) -> list[pa.Table]:
    import pandas as pd

    frames = [dfs] if isinstance(dfs, pd.DataFrame) else list(dfs)
    for df in frames:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_pandas needs pandas DataFrames, got {type(df).__name__}")
    return [pa.Table.from_pandas(df, preserve_index=False) for df in frames]


def numpy_tables(arrays: Any) -> list[pa.Table]:
    arrs = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
    out = []
    for arr in arrs:
        if isinstance(arr, dict):
            out.append(table_from_columns({k: np.asarray(v) for k, v in arr.items()}))
            continue
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"from_numpy needs ndarrays (or dicts of them), got {type(arr).__name__}")
        out.append(pa.table({"data": tensor_array(arr if arr.ndim else arr.reshape(1))}))
    return out


def arrow_tables(tables: Any) -> list[pa.Table]:
    items = [tables] if isinstance(tables, (pa.Table, pa.RecordBatch)) else list(tables)
    out = []
    for t in items:
        if isinstance(t, pa.RecordBatch):
            t = pa.Table.from_batches([t])
        if not isinstance(t, pa.Table):
            raise TypeError(f"from_arrow needs pyarrow Tables, got {type(t).__name__}")
        out.append(t)
    return out


def torch_table(dataset: Any) -> pa.Table:
    """A map-style torch dataset's samples in column ``item`` (tensors as ndarrays)."""
    import torch

    def convert(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        if isinstance(x, (tuple, list)):
            return type(x)(convert(v) for v in x)
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        return x

    try:
        samples = [convert(dataset[i]) for i in range(len(dataset))]
    except TypeError as exc:
        raise TypeError(f"from_torch needs a map-style dataset with __len__ and __getitem__: {exc}") from exc
    return items_table([{"item": s} for s in samples]) if samples else pa.table({})
