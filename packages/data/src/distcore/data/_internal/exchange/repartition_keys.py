"""Repartition by key (a hash exchange) and by a target row count per block.

``keyed_spec`` plans ``Dataset.repartition(keys=...)`` on the streaming hash
exchange: map tasks hash-split their blocks by the key columns, each reduce
concatenates one partition (sorted by the keys with ``sort=True``). Every
partition becomes one output block, empty ones included, so a repartition into
``n`` blocks gives exactly ``n`` blocks and rows with equal keys share a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from distcore.data._internal.datasource._meta import BlockMetadata
from distcore.data._internal.exchange._blocks import EXCHANGE_TIMEOUT_S, row_counts
from distcore.data._internal.exchange.shuffle import Refs, Result, hash_partition, repartition
from distcore.data._internal.exchange.sort import sort_table
from distcore.data._internal.exchange.streaming import ExchangeSpec


class SortByKeys:
    """The reduce side of ``repartition(keys=..., sort=True)``: a partition's rows in ascending key order
    (nulls last)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def __call__(self, table: pa.Table) -> pa.Table:
        if table.num_rows == 0 or table.num_columns == 0:
            return table
        return sort_table(table, self.keys, [False] * len(self.keys))


def key_list(keys: Any) -> list[str]:
    """``keys`` (a column name or a list of names) as a non-empty list of names."""
    if isinstance(keys, str):
        return [keys]
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"repartition: keys must be a column name or a list of column names, got {keys!r}")
    if not keys:
        raise ValueError("repartition: keys is an empty list; pass at least one column name")
    return list(keys)


def keyed_spec(keys: list[str], num_blocks: int | None, sort: bool) -> ExchangeSpec:
    """The streaming exchange of a keyed repartition (``num_blocks=None``: sized to the memory budget)."""
    return ExchangeSpec("repartition", keys, num_blocks, None, SortByKeys(keys) if sort else None, sized=True)


def repartition_by_keys(refs: Refs, keys: list[str], num_blocks: int | None, sort: bool, *,
                        metadata: Sequence[BlockMetadata] | None = None,
                        timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """The same result without the streaming operator (all inputs at once)."""
    return hash_partition(refs, keys, num_blocks, metadata=metadata, finish=SortByKeys(keys) if sort else None,
                          timeout=timeout)


def repartition_by_rows(refs: Refs, target: int, *, metadata: Sequence[BlockMetadata] | None = None,
                        timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Blocks of at most ``target`` rows (near-equal, in row order; as few blocks as that allows)."""
    if not refs:
        return []
    total = sum(row_counts(refs, metadata, timeout))
    return repartition(refs, max(1, -(-total // target)), metadata=metadata, timeout=timeout)
