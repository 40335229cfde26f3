"""Sort: sample the keys, pick range boundaries, range-partition each block, sort each partition.

Nulls (and NaN) sort last in both directions, as in pyarrow. Output block j
holds the rows between boundary j-1 and boundary j, so the blocks in order
form the sorted dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import distcore
from distcore.data._internal.block import compact
from distcore.data._internal.datasource._meta import BlockMetadata
from distcore.data._internal.exchange._blocks import (
    EXCHANGE_TIMEOUT_S,
    check_columns,
    concat,
    default_partitions,
    group_inputs,
    maybe_single,
    with_metadata,
)
from distcore.data._internal.exchange.shuffle import (
    Refs,
    Result,
    _check_n,
    _keys,
    shuffle_map,
    shuffle_reduce,
)

#: sampled rows per input block for the boundaries
SAMPLES_PER_BLOCK = 100


def _orders(keys: list[str], descending: bool | Sequence[bool]) -> list[bool]:
    if isinstance(descending, (bool, np.bool_)):
        return [bool(descending)] * len(keys)
    out = [bool(d) for d in descending]
    if len(out) != len(keys):
        raise ValueError(f"descending has {len(out)} values for {len(keys)} keys")
    return out


def sort_table(table: pa.Table, keys: list[str], desc: list[bool]) -> pa.Table:
    if table.num_rows <= 1:
        return table
    order = [(k, "descending" if d else "ascending") for k, d in zip(keys, desc, strict=True)]
    return table.take(pc.sort_indices(table, sort_keys=order))


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def compare(a: tuple[Any, ...], b: tuple[Any, ...], desc: list[bool]) -> int:
    """-1, 0 or 1: how row ``a`` orders against row ``b`` in the sort (nulls last)."""
    for x, y, d in zip(a, b, desc, strict=True):
        xn, yn = _is_null(x), _is_null(y)
        if xn or yn:
            if xn and yn:
                continue
            return 1 if xn else -1
        if x == y:
            continue
        r = -1 if x < y else 1
        return -r if d else r
    return 0


def _row(table: pa.Table, i: int, keys: list[str]) -> tuple[Any, ...]:
    return tuple(table.column(k)[i].as_py() for k in keys)


def cut_after(table: pa.Table, keys: list[str], desc: list[bool], bound: tuple | None, start: int = 0) -> int:
    """Index of the first row of sorted ``table`` (from ``start``) ordered after ``bound``: rows equal
    to it stay before; all rows when ``bound`` is None."""
    if bound is None:
        return table.num_rows
    lo, hi = start, table.num_rows
    while lo < hi:
        mid = (lo + hi) // 2
        if compare(_row(table, mid, keys), bound, desc) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo


@distcore.remote
def _sample(keys: list[str], k: int, seed: int, *blocks: pa.Table) -> pa.Table:
    block = concat(blocks)
    check_columns(block, keys, "sort")
    if block.num_rows == 0:
        return block.select(keys) if block.num_columns else block
    idx = np.random.default_rng(seed).choice(block.num_rows, size=min(k, block.num_rows), replace=False)
    return block.select(keys).take(pa.array(np.sort(idx)))


@distcore.remote
def _range_map(keys: list[str], desc: list[bool], bounds: list[tuple[Any, ...]], *blocks: pa.Table) -> Any:
    block = concat(blocks)
    n = len(bounds) + 1
    if block.num_rows == 0 or not bounds:
        return maybe_single([block] * n if block.num_rows == 0 else [sort_table(block, keys, desc)], n)
    block = sort_table(block, keys, desc)
    cuts = [0]
    for bound in bounds:
        cuts.append(cut_after(block, keys, desc, bound, start=cuts[-1]))
    cuts.append(block.num_rows)
    return maybe_single([compact(block.slice(cuts[i], cuts[i + 1] - cuts[i])) for i in range(n)], n)


@distcore.remote(num_returns=2)
def _sort_reduce(keys: list[str], desc: list[bool], *parts: pa.Table) -> Any:
    return with_metadata(sort_table(concat(parts), keys, desc))


def boundaries(sample: pa.Table, keys: list[str], desc: list[bool], n: int) -> list[tuple[Any, ...]]:
    """``n-1`` key tuples cutting the sorted ``sample`` into ``n`` near-equal ranges."""
    if sample.num_rows == 0 or n <= 1:
        return []
    ordered = sort_table(sample, keys, desc)
    return [_row(ordered, min(ordered.num_rows - 1, ordered.num_rows * j // n), keys) for j in range(1, n)]


def sort(refs: Refs, keys: str | Sequence[str], descending: bool | Sequence[bool] = False,
         num_blocks: int | None = None, *, metadata: Sequence[BlockMetadata] | None = None,
         timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Blocks in sorted order by ``keys`` (multi-key; ``descending`` per key or for all)."""
    keys = _keys(keys)
    desc = _orders(keys, descending)
    if not refs:
        return []
    n = _check_n(num_blocks if num_blocks is not None else default_partitions(refs, metadata))
    groups = group_inputs(refs, metadata)
    per_group = max(SAMPLES_PER_BLOCK, 20 * n // len(groups) + 1)
    samples = distcore.get([_sample.remote(keys, per_group, i, *g) for i, g in enumerate(groups)], timeout=timeout)
    bounds = boundaries(concat(samples), keys, desc, n)
    n = len(bounds) + 1
    parts = shuffle_map(groups, n, _range_map, keys, desc, bounds)
    del refs, groups
    return shuffle_reduce(parts, n, _sort_reduce, keys, desc, timeout=timeout)
