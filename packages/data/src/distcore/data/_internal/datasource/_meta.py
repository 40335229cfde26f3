"""Block metadata and tensor helpers the datasources, sinks and exchanges share.

``BlockMetadata`` is the engine's class (``distcore.data._internal.block``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from distcore.data._internal.block import BlockMetadata


def metadata_of(table: pa.Table, input_files: Sequence[str] = ()) -> BlockMetadata:
    """Exact metadata of a block that is in hand."""
    return BlockMetadata(num_rows=table.num_rows, size_bytes=table.nbytes, schema=table.schema,
                         input_files=list(input_files), exec_stats=None)


def estimate(num_rows: int | None, size_bytes: int | None, schema: pa.Schema | None,
             input_files: Sequence[str] = ()) -> BlockMetadata:
    """Metadata known before a read runs (any field may be None)."""
    return BlockMetadata(num_rows=num_rows, size_bytes=size_bytes, schema=schema,
                         input_files=list(input_files), exec_stats=None)


def tensor_array(values: np.ndarray | Sequence[np.ndarray]) -> pa.Array:
    """An Arrow column for ndarrays: 1-D data stays a plain column, higher ranks use the
    fixed-shape tensor extension type (every element must have the same shape)."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        items = [np.asarray(v) for v in values]
        if not items:
            return pa.array([], type=pa.null())
        shapes = {v.shape for v in items}
        if len(shapes) != 1:
            raise ValueError(f"tensor column needs one element shape; got shapes {sorted(shapes)[:4]}: "
                             "resize the elements to one shape first")
        arr = np.stack(items)
    if arr.ndim <= 1:
        return pa.array(arr)
    if arr.dtype == object:
        raise TypeError("a tensor column cannot hold Python objects (dtype=object)")
    if arr.shape[0] == 0:
        value_type = pa.from_numpy_dtype(arr.dtype)
        ext = pa.fixed_shape_tensor(value_type, list(arr.shape[1:]))
        storage = pa.array([], pa.list_(value_type, int(np.prod(arr.shape[1:]))))
        return pa.ExtensionArray.from_storage(ext, storage)
    arr = np.ascontiguousarray(arr)
    if arr.shape[0] == 1 or 0 in arr.strides:  # size-1 axes may carry any stride: make them canonical
        arr = arr.copy()
    return pa.FixedShapeTensorArray.from_numpy_ndarray(arr)


def table_from_columns(columns: dict[str, Any]) -> pa.Table:
    """A table from a dict of column name -> ndarray/list; ndarrays of rank > 1 become tensor columns."""
    arrays = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray) and col.ndim > 1:
            arrays[name] = tensor_array(col)
        elif isinstance(col, (pa.Array, pa.ChunkedArray)):
            arrays[name] = col
        else:
            arrays[name] = pa.array(col)
    return pa.table(arrays)
