"""Blocks (pyarrow Tables) and their metadata; conversions from whatever a UDF returns.

A block is a ``pyarrow.Table``. Tensor (ndarray) columns use the fixed-shape
tensor extension type; ragged arrays become list columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

Block = pa.Table


@dataclass
class BlockExecStats:
    """How one block was produced: wall and CPU seconds of its task, and the task's peak RSS."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    udf_s: float = 0.0


@dataclass
class BlockMetadata:
    """What the planner knows about a block without fetching it."""

    num_rows: int | None
    size_bytes: int | None
    schema: pa.Schema | None = None
    input_files: list[str] = field(default_factory=list)
    exec_stats: BlockExecStats | None = None


def block_metadata(table: pa.Table, input_files: list[str] | None = None,
                   exec_stats: BlockExecStats | None = None) -> BlockMetadata:
    """The metadata of a materialized block."""
    return BlockMetadata(num_rows=table.num_rows, size_bytes=table_size(table), schema=table.schema,
                         input_files=list(input_files or []), exec_stats=exec_stats)


def table_size(table: pa.Table) -> int:
    try:
        return int(table.nbytes)
    except Exception:  # noqa: BLE001 - some extension arrays cannot report nbytes
        return int(table.get_total_buffer_size())


def compact(table: pa.Table) -> pa.Table:
    """``table`` holding only its own rows' bytes.

    A slice of an Arrow table shares its parent's buffers, and serializing it (into the
    object store) writes those whole buffers: ten rows sliced off a 1 GB block would store
    1 GB. Every block a task hands to the store goes through here; a slice much smaller than
    its buffers is copied (a ``take`` of its rows), anything else is returned as is.
    """
    if table.num_rows == 0 or table.num_columns == 0:
        return table
    try:
        held = int(table.get_total_buffer_size())
        own = int(table.nbytes)
    except Exception:  # noqa: BLE001 - some extension arrays cannot report sizes
        return table
    if held <= 2 * own + (64 << 10):
        return table
    return table.take(pa.array(np.arange(table.num_rows, dtype=np.int64)))


def empty_table(schema: pa.Schema | None = None) -> pa.Table:
    return pa.Table.from_pylist([], schema=schema) if schema is not None else pa.table({})


def concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate blocks, unifying schemas (missing columns become nulls, types promote)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({})
    nonempty = [t for t in tables if t.num_columns > 0 or t.num_rows > 0]
    if not nonempty:
        return tables[0]
    if len(nonempty) == 1:
        return nonempty[0]
    try:
        return pa.concat_tables(nonempty, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.concat_tables(nonempty, promote_options="permissive")


def _column_from_numpy(name: str, value: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        return value
    if not isinstance(value, np.ndarray):
        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            return _column_from_numpy(name, _stack_or_object(value))
        value = np.asarray(value) if not isinstance(value, list) else value
        if isinstance(value, list):
            return _pa_array(name, value)
    if value.ndim > 1:
        arr = np.ascontiguousarray(value)
        if arr.dtype == object:
            return _pa_array(name, list(arr))
        return pa.FixedShapeTensorArray.from_numpy_ndarray(arr)
    if value.dtype == object and len(value) and isinstance(value[0], np.ndarray):
        stacked = _stack_or_object(list(value))
        if isinstance(stacked, np.ndarray) and stacked.dtype != object:
            return _column_from_numpy(name, stacked)
        return _pa_array(name, [v.tolist() for v in value])
    return _pa_array(name, value)


def _stack_or_object(items: list) -> Any:
    shapes = {np.shape(i) for i in items}
    if len(shapes) == 1:
        return np.stack(items)
    out = np.empty(len(items), dtype=object)
    out[:] = [np.asarray(i).tolist() for i in items]
    return out


def _pa_array(name: str, value: Any) -> pa.Array:
    try:
        return pa.array(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise TypeError(f"column {name!r}: cannot convert values of type "
                        f"{type(value[0]).__name__ if len(value) else '?'} to an Arrow column ({exc})") from exc


def from_numpy_dict(batch: Mapping[str, Any]) -> pa.Table:
    """A block from ``{column: ndarray or list}``; all columns must have the same length."""
    columns = {}
    lengths = set()
    for name, value in batch.items():
        if not isinstance(name, str):
            raise TypeError(f"column names must be str, got {name!r}")
        col = _column_from_numpy(name, value)
        columns[name] = col
        lengths.add(len(col))
    if len(lengths) > 1:
        raise ValueError(f"all columns of a batch must have the same length, got "
                         f"{ {k: len(v) for k, v in columns.items()} }")
    return pa.table(columns)


def from_pandas(df: Any) -> pa.Table:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas.DataFrame, got {type(df).__name__}")
    df = df.copy(deep=False)
    df.columns = [str(c) for c in df.columns]
    tensor_cols = {}
    for col in df.columns:
        series = df[col]
        if series.dtype == object and len(series) and isinstance(series.iloc[0], np.ndarray):
            tensor_cols[col] = _column_from_numpy(col, list(series.to_numpy()))
    try:
        table = pa.Table.from_pandas(df.drop(columns=list(tensor_cols)), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TypeError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
    for col, arr in tensor_cols.items():
        table = table.append_column(col, arr)
    if tensor_cols:
        table = table.select([str(c) for c in df.columns])
    return table.replace_schema_metadata(None)


def to_block(value: Any) -> pa.Table:
    """Convert a UDF's output (Table, DataFrame, dict of arrays, list of row dicts) to a block."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, Mapping):
        return from_numpy_dict(value)
    try:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return from_pandas(value)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, list):
        return from_rows(value)
    raise TypeError(f"a batch must be a dict of numpy arrays, a pandas.DataFrame or a pyarrow.Table; "
                    f"got {type(value).__name__}")


def from_rows(rows: Iterable[Any]) -> pa.Table:
    """A block from row dicts (or scalars, stored in the column ``item``)."""
    rows = list(rows)
    if not rows:
        return pa.table({})
    if not isinstance(rows[0], Mapping):
        rows = [{"item": r} for r in rows]
    columns: dict[str, list] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i} is a {type(row).__name__}, expected a dict like the other rows")
        for key in row:
            if key not in columns:
                columns[key] = [None] * i
        for key, col in columns.items():
            col.append(row.get(key))
    out = {}
    for key, values in columns.items():
        if any(isinstance(v, np.ndarray) for v in values) and all(v is not None for v in values):
            out[key] = _column_from_numpy(key, _stack_or_object(values))
        else:
            out[key] = _pa_array(key, values)
    return pa.table(out)


def column_to_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as numpy (tensor columns as an (n, *shape) array; nulls as NaN/None)."""
    if isinstance(col, pa.ChunkedArray):
        if isinstance(col.type, pa.FixedShapeTensorType):
            if col.num_chunks == 0:
                return np.empty((0, *col.type.shape), dtype=col.type.value_type.to_pandas_dtype())
            col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        else:
            return col.to_numpy()
    if isinstance(col.type, pa.FixedShapeTensorType):
        return col.to_numpy_ndarray()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        values = col.to_pylist()
        out = np.empty(len(values), dtype=object)
        out[:] = [np.asarray(v) if v is not None else None for v in values]
        return out
    return col.to_numpy(zero_copy_only=False)


def to_numpy_dict(table: pa.Table) -> dict[str, np.ndarray]:
    return {name: column_to_numpy(table.column(name)) for name in table.column_names}


def to_pandas(table: pa.Table) -> Any:
    import pandas as pd

    tensor = [n for n in table.column_names if isinstance(table.schema.field(n).type, pa.FixedShapeTensorType)]
    if not tensor:
        return table.to_pandas()
    df = table.drop_columns(tensor).to_pandas() if len(tensor) < table.num_columns else pd.DataFrame(
        index=range(table.num_rows))
    for name in tensor:
        df[name] = list(column_to_numpy(table.column(name)))
    return df[table.column_names]


def rows_of(table: pa.Table) -> Iterable[dict[str, Any]]:
    """The rows of a block as dicts (tensor cells as ndarrays)."""
    tensor = [n for n in table.column_names if isinstance(table.schema.field(n).type, pa.FixedShapeTensorType)]
    if not tensor:
        yield from table.to_pylist()
        return
    arrays = {n: column_to_numpy(table.column(n)) for n in tensor}
    plain = table.drop_columns(tensor).to_pylist() if len(tensor) < table.num_columns else [{}] * table.num_rows
    for i, row in enumerate(plain):
        full = dict(row)
        for n in tensor:
            full[n] = arrays[n][i]
        yield {n: full[n] for n in table.column_names}


def split_table(table: pa.Table, max_bytes: int) -> list[pa.Table]:
    """Slice a block into pieces of at most about ``max_bytes`` each."""
    size = table_size(table)
    if size <= max_bytes or table.num_rows <= 1:
        return [table]
    pieces = min(table.num_rows, -(-size // max_bytes))
    step = -(-table.num_rows // pieces)
    return [table.slice(i, step) for i in range(0, table.num_rows, step)]
