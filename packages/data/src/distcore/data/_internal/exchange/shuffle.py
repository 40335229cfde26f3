"""Map/reduce exchanges that move rows between blocks: hash partitioning, repartition, random shuffle.

Every exchange here is two rounds of distcore tasks: one map task per input
block splits it into ``n`` parts (``num_returns=n``, the parts stay in the
object store), then one reduce task per output partition combines its parts.
The driver only holds references and small metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

import distcore
from distcore.data._internal.datasource._meta import BlockMetadata
from distcore.data._internal.exchange._blocks import (
    EXCHANGE_TIMEOUT_S,
    as_list,
    check_columns,
    collect,
    concat,
    default_partitions,
    group_inputs,
    maybe_single,
    partition_ids,
    row_counts,
    split_by_ids,
    with_metadata,
)

Refs = list[Any]
Result = list[tuple[Any, BlockMetadata]]


def _keys(keys: str | Sequence[str]) -> list[str]:
    out = [keys] if isinstance(keys, str) else list(keys)
    if not out or not all(isinstance(k, str) for k in out):
        raise ValueError(f"keys must be a column name or a non-empty list of names, got {keys!r}")
    return out


def _check_n(n: int) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of partitions must be a positive int, got {n!r}")
    return int(n)


@distcore.remote
def _hash_map(keys: list[str], n: int, prepare: Callable[[pa.Table], pa.Table] | None, *blocks: pa.Table) -> Any:
    block = concat(blocks)
    check_columns(block, keys, "hash partition")
    if prepare is not None:
        block = prepare(block)
    return maybe_single(split_by_ids(block, partition_ids(block, keys, n), n), n)


@distcore.remote
def _random_map(n: int, seed: int | None, index: int, *blocks: pa.Table) -> Any:
    block = concat(blocks)
    rng = np.random.default_rng(None if seed is None else [seed, index])
    return maybe_single(split_by_ids(block, rng.integers(0, n, block.num_rows), n), n)


@distcore.remote(num_returns=2)
def _concat_reduce(finish: Callable[[pa.Table], pa.Table] | None, *parts: pa.Table) -> Any:
    table = concat(parts)
    if finish is not None:
        table = finish(table)
    return with_metadata(table)


def shuffle_map(groups: list[list[Any]], n: int, map_fn: Any, *args: Any) -> list[list[Any]]:
    """Run ``map_fn(*args, *group)`` per group of input blocks; returns ``parts[m][j]``: map task m's
    part for partition j."""
    return [as_list(map_fn.options(num_returns=n).remote(*args, *group), n) for group in groups]


def shuffle_reduce(parts: list[list[Any]], n: int, reduce_fn: Any, *args: Any,
                   timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """One reduce task per partition j over ``parts[*][j]``; returns ``[(ref, metadata)]``."""
    pairs = []
    for j in range(n):
        block_ref, meta_ref = reduce_fn.remote(*args, *[p[j] for p in parts])
        pairs.append((block_ref, meta_ref))
    parts.clear()  # each map output is now held only by its reduce task: freed as that one finishes
    return collect(pairs, timeout)


def hash_partition(refs: Refs, keys: str | Sequence[str], n: int | None = None, *,
                   metadata: Sequence[BlockMetadata] | None = None,
                   prepare: Callable[[pa.Table], pa.Table] | None = None,
                   finish: Callable[[pa.Table], pa.Table] | None = None,
                   timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """``n`` blocks; rows with equal ``keys`` land in the same block.

    ``prepare`` runs on each input block before the split (map side), ``finish``
    on each combined partition (reduce side): groupby and join plug in there.
    """
    keys = _keys(keys)
    if not refs:
        return []
    n = _check_n(n if n is not None else default_partitions(refs, metadata))
    parts = shuffle_map(group_inputs(refs, metadata), n, _hash_map, keys, n, prepare)
    del refs  # the map tasks hold their inputs; the engine's copy is gone, so each frees as its map ends
    return shuffle_reduce(parts, n, _concat_reduce, finish, timeout=timeout)


def random_shuffle(refs: Refs, seed: int | None = None, num_blocks: int | None = None, *,
                   metadata: Sequence[BlockMetadata] | None = None,
                   timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Rows in a uniformly random order (reproducible with ``seed``), in ``num_blocks`` blocks."""
    if not refs:
        return []
    n = _check_n(num_blocks if num_blocks is not None else default_partitions(refs, metadata))
    parts = [as_list(_random_map.options(num_returns=n).remote(n, seed, i, *group), n)
             for i, group in enumerate(group_inputs(refs, metadata))]
    del refs

    def permute(table: pa.Table, seed: int | None = seed) -> pa.Table:
        rng = np.random.default_rng(None if seed is None else [seed, 1 << 30, table.num_rows])
        return table.take(pa.array(rng.permutation(table.num_rows)))

    return shuffle_reduce(parts, n, _concat_reduce, permute, timeout=timeout)


class Permute:
    """The reduce side of a random shuffle: rows of a partition in a random (seeded) order."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def __call__(self, table: pa.Table) -> pa.Table:
        rng = np.random.default_rng(None if self.seed is None else [self.seed, 1 << 30, table.num_rows])
        return table.take(pa.array(rng.permutation(table.num_rows)))


def random_shuffle_spec(seed: int | None = None, num_blocks: int | None = None) -> Any:
    """The streaming exchange of a random shuffle (ids drawn per input block, so a seed reproduces it)."""
    from distcore.data._internal.exchange.streaming import ExchangeSpec

    n = _check_n(num_blocks) if num_blocks is not None else None
    return ExchangeSpec("random_shuffle", [], n, None, Permute(seed), random=True, seed=seed, sized=True)


@distcore.remote(num_returns=2)
def _slice_concat(spans: list[tuple[int, int]], *blocks: pa.Table) -> Any:
    return with_metadata(concat([b.slice(s, e - s) for b, (s, e) in zip(blocks, spans, strict=True)]))


def repartition(refs: Refs, n: int, shuffle: bool = False, *, metadata: Sequence[BlockMetadata] | None = None,
                seed: int | None = None, timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """``n`` blocks of near-equal row counts.

    Without ``shuffle`` the row order is kept: output block j takes the rows
    ``[j*N/n, (j+1)*N/n)`` from just the input blocks that hold them. With
    ``shuffle`` rows are spread at random (a full random shuffle).
    """
    n = _check_n(n)
    if not refs:
        return []
    if shuffle:
        return random_shuffle(refs, seed, n, metadata=metadata, timeout=timeout)
    counts = row_counts(refs, metadata, timeout)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(starts[-1])
    pairs = []
    for j in range(n):
        lo, hi = total * j // n, total * (j + 1) // n
        chosen, spans = [], []
        for i, ref in enumerate(refs):
            s, e = max(lo, int(starts[i])), min(hi, int(starts[i + 1]))
            if s < e:
                chosen.append(ref)
                spans.append((s - int(starts[i]), e - int(starts[i])))
        if not chosen:  # an empty output block that keeps the schema
            chosen, spans = [refs[0]], [(0, 0)]
        pairs.append(_slice_concat.remote(spans, *chosen))
    return collect(pairs, timeout)
