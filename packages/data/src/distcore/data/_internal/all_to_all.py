"""Plans all-to-all operators (sort, shuffle, groupby, join, zip, ...) over the exchange functions.

Each builds an ``AllToAll`` logical operator whose ``fn`` gets each input's
``[(ref, BlockMetadata)]`` once those inputs are complete and calls the matching
function of ``_internal.exchange`` (map tasks partition, reduce tasks merge).
"""

from __future__ import annotations

from typing import Any

from distcore.data._internal.logical import AllToAll, LogicalOperator


def _refs(part: list) -> tuple[list, list]:
    return [r for r, _ in part], [m for _, m in part]


def _take(parts: list, i: int) -> list:
    """``[refs, metadata]`` of input ``i``, emptied out of ``parts`` (the engine keeps no reference,
    so the exchange can free each input block once its map task ran)."""
    refs, metas = _refs(parts[i])
    parts[i] = []
    return [refs, metas]


def _exchange() -> Any:
    from distcore.data._internal import exchange

    return exchange


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"repartition needs {name} >= 1, got {value!r}")
    return value


def repartition(op: LogicalOperator, num_blocks: int | None, shuffle: bool, *,
                target_num_rows_per_block: int | None = None, keys: Any = None, sort: bool = False) -> AllToAll:
    """Supported: ``num_blocks`` (+ ``shuffle``), ``keys`` (+ ``num_blocks``, ``sort``), or
    ``target_num_rows_per_block`` alone."""
    num_blocks = _positive("num_blocks", num_blocks)
    target = _positive("target_num_rows_per_block", target_num_rows_per_block)
    from distcore.data._internal.exchange import repartition_keys as rk

    key_list = rk.key_list(keys) if keys is not None else None
    if target is not None:
        if num_blocks is not None or shuffle or key_list is not None or sort:
            raise ValueError("repartition: target_num_rows_per_block cannot be combined with num_blocks, shuffle, "
                             "keys or sort; supported: repartition(num_blocks[, shuffle=True]), "
                             "repartition([num_blocks, ]keys=...[, sort=True]) or "
                             "repartition(target_num_rows_per_block=...)")

        def by_rows(parts: list) -> list:
            args = _take(parts, 0)
            return rk.repartition_by_rows(args.pop(0), target, metadata=args.pop(0))

        return AllToAll(f"Repartition[rows<={target}]", [op], by_rows, "repartition", row_preserving=True)
    if key_list is not None:
        if shuffle:
            raise ValueError("repartition: shuffle=True cannot be combined with keys (rows are placed by the "
                             "hash of their keys); use repartition(num_blocks, keys=...)")

        def by_keys(parts: list) -> list:
            args = _take(parts, 0)
            return rk.repartition_by_keys(args.pop(0), key_list, num_blocks, sort, metadata=args.pop(0))

        return AllToAll(f"Repartition[{num_blocks or 'auto'}, keys={key_list}]", [op], by_keys, "repartition",
                        row_preserving=True, exchange=rk.keyed_spec(key_list, num_blocks, sort))
    if sort:
        raise ValueError("repartition: sort=True needs keys (it sorts each output block by the keys)")
    if num_blocks is None:
        raise ValueError("repartition needs num_blocks, keys or target_num_rows_per_block")
    n = num_blocks

    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().repartition(args.pop(0), n, shuffle, metadata=args.pop(0))

    spec = _exchange().random_shuffle_spec(None, n) if shuffle else None
    return AllToAll(f"Repartition[{n}]", [op], fn, "repartition", {"n": n}, row_preserving=True,
                    exchange=spec)


def random_shuffle(op: LogicalOperator, seed: int | None, num_blocks: int | None) -> AllToAll:
    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().random_shuffle(args.pop(0), seed, num_blocks, metadata=args.pop(0))

    return AllToAll("RandomShuffle", [op], fn, "random_shuffle", row_preserving=True,
                    exchange=_exchange().random_shuffle_spec(seed, num_blocks))


def sort(op: LogicalOperator, key: Any, descending: Any) -> AllToAll:
    keys = [key] if isinstance(key, str) else list(key) if isinstance(key, (list, tuple)) else None
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"sort needs a column name or a list of names, got {key!r}")
    if isinstance(descending, (list, tuple)) and len(descending) != len(keys):
        raise ValueError(f"sort: descending has {len(descending)} values for {len(keys)} keys")

    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().sort(args.pop(0), keys, descending, metadata=args.pop(0))

    from distcore.data._internal.exchange.sort import _orders
    from distcore.data._internal.physical_sort import SortSpec

    spec = SortSpec(keys, _orders(keys, descending))
    return AllToAll(f"Sort({keys})", [op], fn, "sort", row_preserving=True, exchange=spec)


def aggregate(op: LogicalOperator, keys: Any, aggs: list, num_blocks: int | None = None) -> AllToAll:
    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().groupby_aggregate(args.pop(0), keys, aggs, num_blocks, metadata=args.pop(0))

    spec = _exchange().groupby.aggregate_spec(keys, aggs, num_blocks)
    return AllToAll(f"Aggregate({keys})", [op], fn, "aggregate", exchange=spec)


def map_groups(op: LogicalOperator, keys: Any, udf: Any, batch_format: str, fn_args: tuple,
               fn_kwargs: dict | None, num_blocks: int | None = None) -> AllToAll:
    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().map_groups(args.pop(0), keys, udf, batch_format, num_blocks, fn_args=fn_args,
                                      fn_kwargs=fn_kwargs, metadata=args.pop(0))

    spec = _exchange().groupby.map_groups_spec(keys, udf, batch_format, num_blocks, fn_args=fn_args,
                                               fn_kwargs=fn_kwargs)
    return AllToAll(f"MapGroups({getattr(udf, '__name__', 'fn')})", [op], fn, "map_groups", exchange=spec)


def unique(op: LogicalOperator, column: str) -> AllToAll:
    if not isinstance(column, str):
        raise ValueError(f"unique takes one column name, got {column!r}")

    def fn(parts: list) -> list:
        args = _take(parts, 0)
        return _exchange().unique(args.pop(0), column, metadata=args.pop(0))

    return AllToAll(f"Unique({column})", [op], fn, "unique", exchange=_exchange().groupby.unique_spec(column))


def join(left: LogicalOperator, right: LogicalOperator, on: Any, how: str, num_partitions: int | None) -> AllToAll:
    if how not in ("inner", "left", "right", "outer", "left_outer", "right_outer", "full_outer"):
        raise ValueError(f"join: how must be inner, left, right or outer, got {how!r}")
    how = {"left_outer": "left", "right_outer": "right", "full_outer": "outer"}.get(how, how)

    def fn(parts: list) -> list:
        left, right = _take(parts, 0), _take(parts, 1)
        return _exchange().join(left.pop(0), right.pop(0), on, how, num_blocks=num_partitions,
                                left_metadata=left.pop(0), right_metadata=right.pop(0))

    spec = _exchange().join_spec(on, how, num_blocks=num_partitions)
    return AllToAll(f"Join({on}, {how})", [left, right], fn, "join", exchange=spec)


def zip(left: LogicalOperator, right: LogicalOperator) -> AllToAll:  # noqa: A001
    def fn(parts: list) -> list:
        lrefs, lmeta = _refs(parts[0])
        rrefs, rmeta = _refs(parts[1])
        return _exchange().zip(lrefs, rrefs, left_metadata=lmeta, right_metadata=rmeta)

    return AllToAll("Zip", [left, right], fn, "zip", row_preserving=True)


def write(ds: Any, kind: str, path: str, **kwargs: Any) -> Any:
    from distcore.data._internal.datasink import sink_for, write_dataset

    return write_dataset(ds, sink_for(kind, path, **kwargs))


def write_datasink(ds: Any, datasink: Any) -> Any:
    from distcore.data._internal.datasink import write_dataset

    return write_dataset(ds, datasink)
