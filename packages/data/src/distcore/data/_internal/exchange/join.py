"""Hash join (both sides hash-partitioned on the keys, joined per partition) and zip (row-aligned)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

import distcore
from distcore.data._internal.datasource._meta import BlockMetadata
from distcore.data._internal.exchange._blocks import (
    EXCHANGE_TIMEOUT_S,
    check_columns,
    collect,
    concat,
    default_partitions,
    group_inputs,
    row_counts,
    with_metadata,
)
from distcore.data._internal.exchange.shuffle import (
    Refs,
    Result,
    _check_n,
    _hash_map,
    _keys,
    shuffle_map,
)

_JOIN_TYPES = {"inner": "inner", "left": "left outer", "left_outer": "left outer", "right": "right outer",
               "right_outer": "right outer", "outer": "full outer", "full_outer": "full outer"}


def join_tables(left: pa.Table, right: pa.Table, keys: list[str], right_keys: list[str], how: str,
                suffixes: tuple[str, str]) -> pa.Table:
    """One partition's join (``how``: a pyarrow join type); the left side's key names, left columns first."""
    check_columns(left, keys, "join (left side)")
    check_columns(right, right_keys, "join (right side)")
    try:
        out = left.join(right, keys=keys, right_keys=right_keys, join_type=how, left_suffix=suffixes[0] or None,
                        right_suffix=suffixes[1] or None, coalesce_keys=True, use_threads=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise TypeError(f"cannot join on {keys} = {right_keys}: {exc}") from exc
    if how == "right outer":  # pyarrow names the keys after the right side here: use the left names, left first
        names = dict(builtins.zip(right_keys, keys, strict=True))
        out = out.rename_columns([names.get(c, c) if c not in left.column_names or c in keys else c
                                  for c in out.column_names])
        first = [c for c in left.column_names if c in out.column_names]
        out = out.select(first + [c for c in out.column_names if c not in first])
    return out


@distcore.remote(num_returns=2)
def _join_reduce(keys: list[str], right_keys: list[str], how: str, suffixes: tuple[str, str], n_left: int,
                 *parts: pa.Table) -> Any:
    left, right = concat(parts[:n_left]), concat(parts[n_left:])
    return with_metadata(join_tables(left, right, keys, right_keys, how, suffixes))


class JoinFn:
    """The reduce side of a streaming join (picklable): ``JoinFn(...)(left, right)``."""

    def __init__(self, keys: list[str], right_keys: list[str], how: str, suffixes: tuple[str, str]) -> None:
        self.keys, self.right_keys, self.how, self.suffixes = keys, right_keys, how, suffixes

    def __call__(self, left: pa.Table, right: pa.Table) -> pa.Table:
        return join_tables(left, right, self.keys, self.right_keys, self.how, self.suffixes)


def _join_keys(keys: str | Sequence[str], right_keys: str | Sequence[str] | None,
               how: str) -> tuple[list[str], list[str]]:
    """The left and right key columns of a join, after checking ``how`` and that they pair up."""
    if how not in _JOIN_TYPES:
        raise ValueError(f"join type must be one of {sorted(set(_JOIN_TYPES))}, got {how!r}")
    lkeys = _keys(keys)
    rkeys = _keys(right_keys) if right_keys is not None else list(lkeys)
    if len(lkeys) != len(rkeys):
        raise ValueError(f"join needs as many right keys as left keys: {lkeys} vs {rkeys}")
    return lkeys, rkeys


def join_spec(keys: str | Sequence[str], how: str = "inner", *, right_keys: str | Sequence[str] | None = None,
              num_blocks: int | None = None, left_suffix: str | None = None,
              right_suffix: str | None = None) -> Any:
    """The streaming exchange of a hash join (both inputs partitioned on their keys)."""
    from distcore.data._internal.exchange.streaming import ExchangeSpec

    lkeys, rkeys = _join_keys(keys, right_keys, how)
    return ExchangeSpec("join", lkeys, _check_n(num_blocks) if num_blocks is not None else None,
                        right_keys=rkeys,
                        join=JoinFn(lkeys, rkeys, _JOIN_TYPES[how], (left_suffix or "", right_suffix or "")),
                        sized=True)


def join(left: Refs, right: Refs, keys: str | Sequence[str], how: str = "inner", *,
         right_keys: str | Sequence[str] | None = None, num_blocks: int | None = None,
         left_metadata: Sequence[BlockMetadata] | None = None, right_metadata: Sequence[BlockMetadata] | None = None,
         left_suffix: str | None = None, right_suffix: str | None = None,
         timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Hash join of two block lists on ``keys`` (``right_keys`` when the right side names them otherwise).

    ``how``: "inner", "left" (left outer), "right" (right outer) or "outer" (full outer).
    Null keys match nothing, as in SQL. Non-key columns that exist on both sides get
    ``left_suffix``/``right_suffix`` (required then).
    """
    lkeys, rkeys = _join_keys(keys, right_keys, how)
    if not left and not right:
        return []
    if not left or not right:
        raise ValueError("join needs blocks on both sides (one side has no blocks, so its columns are unknown)")
    n = _check_n(num_blocks if num_blocks is not None else max(default_partitions(left, left_metadata),
                                                                default_partitions(right, right_metadata)))
    lgroups, rgroups = group_inputs(left, left_metadata), group_inputs(right, right_metadata)
    left_parts = shuffle_map(lgroups, n, _hash_map, lkeys, n, None)
    right_parts = shuffle_map(rgroups, n, _hash_map, rkeys, n, None)
    pairs = []
    for j in range(n):
        pairs.append(_join_reduce.remote(lkeys, rkeys, _JOIN_TYPES[how], (left_suffix or "", right_suffix or ""),
                                         len(lgroups), *[p[j] for p in left_parts], *[p[j] for p in right_parts]))
    del left, right, lgroups, rgroups, left_parts, right_parts  # held by the reduce tasks only from here
    return collect(pairs, timeout)


@distcore.remote(num_returns=2)
def _zip_block(left: pa.Table, spans: list[tuple[int, int]], *rights: pa.Table) -> Any:
    right = concat([r.slice(s, e - s) for r, (s, e) in builtins.zip(rights, spans, strict=True)])
    out = left
    for name in right.column_names:
        new = name
        i = 1
        while new in out.column_names:
            new = f"{name}_{i}"
            i += 1
        out = out.append_column(new, right.column(name))
    return with_metadata(out)


def zip(left: Refs, right: Refs, *, left_metadata: Sequence[BlockMetadata] | None = None,
        right_metadata: Sequence[BlockMetadata] | None = None,
        timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Rows side by side (same row count needed); output blocks follow the left side's blocks.

    A right column whose name the left side already has is renamed ``name_1`` (``_2``, ...).
    """
    lc = row_counts(left, left_metadata, timeout)
    rc = row_counts(right, right_metadata, timeout)
    if sum(lc) != sum(rc):
        raise ValueError(f"zip needs datasets with the same number of rows: {sum(lc)} vs {sum(rc)}")
    if not left:
        return []
    rstarts = np.concatenate([[0], np.cumsum(rc)]).astype(np.int64)
    pairs, lo = [], 0
    for ref, count in builtins.zip(left, lc, strict=True):
        hi = lo + count
        chosen, spans = [], []
        for i, rref in enumerate(right):
            s, e = max(lo, int(rstarts[i])), min(hi, int(rstarts[i + 1]))
            if s < e:
                chosen.append(rref)
                spans.append((s - int(rstarts[i]), e - int(rstarts[i])))
        if not chosen and right:
            chosen, spans = [right[0]], [(0, 0)]
        pairs.append(_zip_block.remote(ref, spans, *chosen))
        lo = hi
    return collect(pairs, timeout)

