"""Creation functions used until (or when) the readers module of the sources side is absent.

They build on the shared datasources (``_internal.datasource``): range and in-memory blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from distcore.data._internal import block as B


def _dataset(datasource: Any, parallelism: int) -> Any:
    from distcore.data._internal.logical import LogicalPlan, Read
    from distcore.data.dataset import Dataset

    return Dataset(LogicalPlan(Read(datasource, parallelism)))


def range(n: int, *, override_num_blocks: int | None = None, parallelism: int = -1) -> Any:  # noqa: A001
    from distcore.data._internal.datasource import RangeDatasource

    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"range(n) needs an int n >= 0, got {n!r}")
    return _dataset(RangeDatasource(n), override_num_blocks or parallelism)


def range_tensor(n: int, *, shape: tuple = (1,), override_num_blocks: int | None = None,
                 parallelism: int = -1) -> Any:
    from distcore.data._internal.datasource import RangeDatasource

    return _dataset(RangeDatasource(n, tensor_shape=tuple(shape)), override_num_blocks or parallelism)


def _from_tables(tables: list[pa.Table], override_num_blocks: int | None = None) -> Any:
    from distcore.data._internal.datasource import BlocksDatasource

    return _dataset(BlocksDatasource(tables), override_num_blocks or len(tables) or 1)


def from_items(items: list, *, override_num_blocks: int | None = None, parallelism: int = -1) -> Any:
    if not isinstance(items, list):
        raise TypeError(f"from_items needs a list, got {type(items).__name__}")
    table = B.from_rows(items)
    n = override_num_blocks or (parallelism if parallelism > 0 else min(len(items), 200) or 1)
    from distcore.data._internal.datasource import BlocksDatasource

    return _dataset(BlocksDatasource([table]), n)


def from_pandas(dfs: Any, *, override_num_blocks: int | None = None) -> Any:
    dfs = dfs if isinstance(dfs, list) else [dfs]
    return _from_tables([B.from_pandas(df) for df in dfs], override_num_blocks)


def from_arrow(tables: Any, *, override_num_blocks: int | None = None) -> Any:
    tables = tables if isinstance(tables, list) else [tables]
    for t in tables:
        if not isinstance(t, pa.Table):
            raise TypeError(f"from_arrow needs pyarrow Tables, got {type(t).__name__}")
    return _from_tables(list(tables), override_num_blocks)


def from_numpy(arrays: Any, *, override_num_blocks: int | None = None) -> Any:
    arrays = arrays if isinstance(arrays, list) else [arrays]
    tables = []
    for a in arrays:
        if isinstance(a, dict):
            tables.append(B.from_numpy_dict(a))
        elif isinstance(a, np.ndarray):
            tables.append(B.from_numpy_dict({"data": a}))
        else:
            raise TypeError(f"from_numpy needs ndarrays or dicts of ndarrays, got {type(a).__name__}")
    return _from_tables(tables, override_num_blocks)
