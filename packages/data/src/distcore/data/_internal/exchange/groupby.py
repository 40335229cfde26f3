"""Group-wise exchanges on the hash partitioner: aggregate, map_groups and unique.

``groupby_aggregate`` combines on the map side: each map task reduces its block
to one row of partial state per group before the shuffle, so the exchange moves
groups, not rows. Output blocks are sorted by the keys within each block.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from distcore.data._internal.datasource._meta import BlockMetadata
from distcore.data._internal.exchange._blocks import (
    EXCHANGE_TIMEOUT_S,
    check_columns,
    concat,
    default_partitions,
    from_batch,
    group_inputs,
    to_batch,
)
from distcore.data._internal.exchange._blocks import (
    _cluster_cpus as _cpus,
)
from distcore.data._internal.exchange.aggregate_fns import AggregateFn, _Builtin, check_aggs
from distcore.data._internal.exchange.shuffle import Refs, Result, _check_n, hash_partition
from distcore.data._internal.exchange.sort import sort_table
from distcore.data._internal.exchange.streaming import ExchangeSpec

_ROW = "__dc_row"


def _key_list(keys: str | Sequence[str] | None) -> list[str]:
    if keys is None:
        return []
    out = [keys] if isinstance(keys, str) else list(keys)
    if not all(isinstance(k, str) for k in out):
        raise ValueError(f"group keys must be column names, got {keys!r}")
    return out


def _key_value(row: tuple[Any, ...]) -> Any:
    return row[0] if len(row) == 1 else row


def _grouped(table: pa.Table, keys: list[str], specs: list[tuple[Any, str, Any]],
             with_rows: bool = True) -> tuple[pa.Table, list[str]]:
    """``table.group_by(keys)`` with ``specs`` (plus, ``with_rows``, each group's row indices in
    column ``__dc_row_list``).

    Every spec reads its own copy of the input column, so output names never clash;
    returns the grouped table and the output column name of each spec.
    """
    work = table.append_column(_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64))) if with_rows else table
    aggs, names = [], []
    for i, (col, func, opts) in enumerate(specs):
        if col == []:
            aggs.append(([], func, opts) if opts is not None else ([], func))
            names.append(func)
            continue
        alias = f"__dc_in{i}"
        work = work.append_column(alias, table.column(col) if isinstance(col, str) else col)
        aggs.append((alias, func, opts) if opts is not None else (alias, func))
        names.append(f"{alias}_{func}")
    if with_rows:
        aggs.append((_ROW, "list"))
    if keys:
        return work.group_by(keys, use_threads=False).aggregate(aggs), names
    # no keys: one group of every row (pyarrow has hash_list but no scalar list aggregation)
    work = work.append_column("__dc_all", pa.array(np.zeros(table.num_rows, dtype=np.int8)))
    grouped = work.group_by(["__dc_all"], use_threads=False).aggregate(aggs)
    return grouped.drop_columns(["__dc_all"]), names


def _partial(table: pa.Table, keys: list[str], aggs: list[AggregateFn]) -> pa.Table:
    """One row per group: the keys, each built-in's states, each user aggregation's pickled accumulator."""
    check_columns(table, keys + [c for a in aggs for c in a.columns()], "groupby")
    if table.num_columns == 0:
        return table
    extra: dict[str, pa.ChunkedArray] = {}
    for agg in aggs:
        if isinstance(agg, _Builtin):
            extra.update(agg.prep(table))
    source = table
    for name, values in extra.items():
        source = source.append_column(name, values)
    specs, owners = [], []
    for i, agg in enumerate(aggs):
        if isinstance(agg, _Builtin):
            for spec in agg.map_specs():
                specs.append(spec)
                owners.append(i)
    custom = any(not isinstance(a, _Builtin) for a in aggs)
    grouped, names = _grouped(source, keys, specs, with_rows=custom)
    out = {k: grouped.column(k) for k in keys}
    for i, agg in enumerate(aggs):
        if isinstance(agg, _Builtin):
            states = agg.post_map([grouped.column(n) for n, o in zip(names, owners, strict=True) if o == i])
            for j, state in enumerate(states):
                out[f"__dc_s{i}_{j}"] = state
        else:
            out[f"__dc_s{i}_0"] = pa.array(_accumulate(agg, table, keys, grouped), pa.binary())
    return pa.table(out)


def _accumulate(agg: AggregateFn, table: pa.Table, keys: list[str], grouped: pa.Table) -> list[bytes]:
    key_rows = list(zip(*[grouped.column(k).to_pylist() for k in keys], strict=True)) if keys \
        else [()] * grouped.num_rows
    out = []
    for key, rows in zip(key_rows, grouped.column(f"{_ROW}_list").to_pylist(), strict=True):
        acc = agg.init(_key_value(key) if keys else None)
        acc = agg.accumulate(acc, table.take(pa.array(rows, pa.int64())))
        out.append(pickle.dumps(acc))
    return out


def _combine(partials: pa.Table, keys: list[str], aggs: list[AggregateFn]) -> pa.Table:
    """Merge the partial rows of each group and finalize every aggregation."""
    if partials.num_columns == 0:
        return partials
    specs, owners = [], []
    for i, agg in enumerate(aggs):
        if isinstance(agg, _Builtin):
            for j, (func, opts) in enumerate(agg.reduce_funcs()):
                specs.append((f"__dc_s{i}_{j}", func, opts))
                owners.append(i)
    custom = any(not isinstance(a, _Builtin) for a in aggs)
    grouped, names = _grouped(partials, keys, specs, with_rows=custom)
    out: dict[str, Any] = {k: grouped.column(k) for k in keys}
    row_lists = grouped.column(f"{_ROW}_list").to_pylist() if custom else []
    for i, agg in enumerate(aggs):
        if isinstance(agg, _Builtin):
            out[agg.name] = agg.finalize([grouped.column(n) for n, o in zip(names, owners, strict=True) if o == i])
        else:
            accs = partials.column(f"__dc_s{i}_0").to_pylist()
            values = []
            for rows in row_lists:
                merged = pickle.loads(accs[rows[0]])
                for r in rows[1:]:
                    merged = agg.merge(merged, pickle.loads(accs[r]))
                values.append(agg.finalize_fn(merged))
            try:
                out[agg.name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise TypeError(f"aggregation {agg.name!r} returned values of mixed types: {exc}") from exc
    result = pa.table(out)
    return sort_table(result, keys, [False] * len(keys)) if keys else result


def aggregate_spec(keys: str | Sequence[str] | None, aggs: AggregateFn | Sequence[AggregateFn],
                   num_blocks: int | None = None) -> ExchangeSpec | None:
    """The streaming exchange of a keyed aggregation (None without keys: one global group)."""
    key_list = _key_list(keys)
    agg_list = check_aggs(aggs)
    if not key_list:
        return None

    def prepare(table: pa.Table) -> pa.Table:
        return _partial(table, key_list, agg_list)

    def finish(table: pa.Table) -> pa.Table:
        return _combine(table, key_list, agg_list)

    n = _check_n(num_blocks) if num_blocks is not None else None
    return ExchangeSpec("groupby", key_list, n, prepare, finish)


def groupby_aggregate(refs: Refs, keys: str | Sequence[str] | None, aggs: AggregateFn | Sequence[AggregateFn],
                      num_blocks: int | None = None, *, metadata: Sequence[BlockMetadata] | None = None,
                      timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """One row per distinct ``keys`` (one row in all for ``keys=None``) with a column per aggregation."""
    key_list = _key_list(keys)
    agg_list = check_aggs(aggs)
    if not refs:
        return []
    n = 1 if not key_list else _check_n(num_blocks if num_blocks is not None
                                        else default_partitions(refs, metadata))

    def prepare(table: pa.Table) -> pa.Table:
        return _partial(table, key_list, agg_list)

    def finish(table: pa.Table) -> pa.Table:
        return _combine(table, key_list, agg_list)

    if not key_list:
        return _global(refs, metadata, prepare, finish, timeout)
    return hash_partition(refs, key_list, n, metadata=metadata, prepare=prepare, finish=finish, timeout=timeout)


def _global(refs: Refs, metadata: Sequence[BlockMetadata] | None, prepare: Callable[[pa.Table], pa.Table],
            finish: Callable[[pa.Table], pa.Table], timeout: float | None) -> Result:
    from distcore.data._internal.exchange.shuffle import _concat_reduce, shuffle_reduce
    from distcore.data._internal.exchange.transform import map_blocks

    partials = map_blocks(group_inputs(refs, metadata), prepare)
    return shuffle_reduce([[p] for p in partials], 1, _concat_reduce, finish, timeout=timeout)


def map_groups_spec(keys: str | Sequence[str] | None, fn: Callable[[Any], Any], batch_format: str = "default",
                    num_blocks: int | None = None, *, fn_args: Sequence[Any] = (),
                    fn_kwargs: dict[str, Any] | None = None) -> ExchangeSpec | None:
    """The streaming exchange of a keyed map_groups (None without keys: one group of every row)."""
    key_list = _key_list(keys)
    to_batch(pa.table({}), batch_format)
    if not callable(fn):
        raise TypeError(f"map_groups needs a callable, got {fn!r}")
    if not key_list:
        return None
    n = _check_n(num_blocks) if num_blocks is not None else None
    return ExchangeSpec("map_groups", key_list, n, None, _group_runner(key_list, fn, batch_format, fn_args,
                                                                        dict(fn_kwargs or {})), sized=True)


def _group_runner(key_list: list[str], fn: Callable[[Any], Any], batch_format: str, fn_args: Sequence[Any],
                  kwargs: dict[str, Any]) -> Callable[[pa.Table], pa.Table]:
    def finish(table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return table.slice(0, 0)
        check_columns(table, key_list, "map_groups")
        if key_list:
            table = sort_table(table, key_list, [False] * len(key_list))
            grouped, _ = _grouped(table, key_list, [])
            spans = [(rows[0], len(rows)) for rows in grouped.column(f"{_ROW}_list").to_pylist()]
            spans.sort()
        else:
            spans = [(0, table.num_rows)]
        outs = [from_batch(fn(to_batch(table.slice(s, n), batch_format), *fn_args, **kwargs)) for s, n in spans]
        return concat(outs)

    return finish


def unique_spec(column: str, num_blocks: int | None = None) -> ExchangeSpec:
    if not isinstance(column, str):
        raise ValueError(f"unique takes one column name, got {column!r}")
    distinct, finish = _unique_fns(column)
    return ExchangeSpec("unique", [column], _check_n(num_blocks) if num_blocks is not None else None,
                        distinct, finish)


def _unique_fns(column: str) -> tuple[Callable[[pa.Table], pa.Table], Callable[[pa.Table], pa.Table]]:
    def distinct(table: pa.Table) -> pa.Table:
        check_columns(table, [column], "unique")
        if table.num_columns == 0:
            return table
        return table.select([column]).group_by([column], use_threads=False).aggregate([])

    def finish(table: pa.Table) -> pa.Table:
        table = distinct(table)
        return sort_table(table, [column], [False]) if table.num_columns else table

    return distinct, finish


def map_groups(refs: Refs, keys: str | Sequence[str] | None, fn: Callable[[Any], Any], batch_format: str = "default",
               num_blocks: int | None = None, *, fn_args: Sequence[Any] = (), fn_kwargs: dict[str, Any] | None = None,
               metadata: Sequence[BlockMetadata] | None = None,
               timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """``fn(group_batch)`` for each group; the outputs, groups in key order within each block."""
    key_list = _key_list(keys)
    to_batch(pa.table({}), batch_format)  # validates the format before any task runs
    if not callable(fn):
        raise TypeError(f"map_groups needs a callable, got {fn!r}")
    if not refs:
        return []
    finish = _group_runner(key_list, fn, batch_format, fn_args, dict(fn_kwargs or {}))

    if not key_list:
        from distcore.data._internal.exchange.shuffle import _concat_reduce, shuffle_reduce

        return shuffle_reduce([[r] for r in refs], 1, _concat_reduce, finish, timeout=timeout)
    n = _check_n(num_blocks) if num_blocks is not None else None
    return hash_partition(refs, key_list, n, metadata=metadata, finish=finish, timeout=timeout)


def unique(refs: Refs, column: str, num_blocks: int | None = None, *,
           metadata: Sequence[BlockMetadata] | None = None, timeout: float | None = EXCHANGE_TIMEOUT_S) -> Result:
    """Blocks of the distinct values of ``column`` (one column), sorted within each block."""
    if not isinstance(column, str):
        raise ValueError(f"unique takes one column name, got {column!r}")
    if not refs:
        return []

    distinct, finish = _unique_fns(column)
    n = _check_n(num_blocks) if num_blocks is not None else min(len(refs), 2 * _cpus())
    return hash_partition(refs, [column], n, metadata=metadata, prepare=distinct, finish=finish, timeout=timeout)
