"""Dataset: a lazy, streaming dataset of Arrow blocks (mirrors ``ray.data.Dataset``).

Transformations build a logical plan; consumption (iteration, take, count,
write...) optimizes it and runs it in the streaming executor.

Example::

    import distcore.data as dd

    ds = dd.range(1000).map_batches(lambda b: {"id": b["id"] * 2})
    for batch in ds.iter_batches(batch_size=100):
        ...
    print(ds.take(3), ds.count())
"""

from __future__ import annotations

import builtins
import collections
import math
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

import distcore
from distcore.data._internal import block as B
from distcore.data._internal.batch import check_batch_format, to_batch
from distcore.data._internal.logical import (
    ActorPoolStrategy,
    InputData,
    Limit,
    LogicalOperator,
    LogicalPlan,
    MapLike,
    TaskPoolStrategy,
    Union,
)
from distcore.data._internal.stats import ExecutionStats
from distcore.data._internal.transforms import (
    AddColumnStage,
    FilterStage,
    FlatMapStage,
    MapBatchesStage,
    MapRowsStage,
    ProjectStage,
    RandomSampleStage,
    callable_name,
)
from distcore.data.context import DataContext
from distcore.data.iterator import DataIterator, DatasetIterator, StreamSplitDataIterator


def _compute(fn: Any, concurrency: Any, compute: Any, name: str) -> TaskPoolStrategy | ActorPoolStrategy:
    is_class = isinstance(fn, type)
    if compute is not None:
        if isinstance(compute, (ActorPoolStrategy, TaskPoolStrategy)):
            if is_class and not isinstance(compute, ActorPoolStrategy):
                raise ValueError(f"{name}: a callable class needs an actor pool (concurrency=n or (min, max))")
            return compute
        if compute == "tasks":
            compute = None
        else:
            raise ValueError(f"{name}: compute must be an ActorPoolStrategy or 'tasks', got {compute!r}")
    if concurrency is None:
        return ActorPoolStrategy(min_size=1, max_size=None) if is_class else TaskPoolStrategy()
    if isinstance(concurrency, tuple):
        if len(concurrency) != 2 or not all(isinstance(c, int) and c >= 1 for c in concurrency) or \
                concurrency[0] > concurrency[1]:
            raise ValueError(f"{name}: concurrency must be an int >= 1 or a (min, max) tuple with "
                             f"1 <= min <= max, got {concurrency!r}")
        if not is_class:
            return TaskPoolStrategy(size=concurrency[1])
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"{name}: concurrency must be an int >= 1 or a (min, max) tuple, got {concurrency!r}")
    return ActorPoolStrategy(size=concurrency) if is_class else TaskPoolStrategy(size=concurrency)


def _check_callable(fn: Any, name: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} needs a function or a callable class, got {type(fn).__name__}")
    if isinstance(fn, type) and not callable(getattr(fn, "__call__", None)):  # noqa: B004
        raise TypeError(f"{name}: class {fn.__name__} must define __call__")


class Dataset:
    """A lazy dataset: transformations return new Datasets; consumption runs the plan."""

    def __init__(self, plan: LogicalPlan | LogicalOperator) -> None:
        self._plan = plan if isinstance(plan, LogicalPlan) else LogicalPlan(plan)
        self._last_stats: ExecutionStats | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def _dag(self) -> LogicalOperator:
        return self._plan.dag

    def _then(self, op: LogicalOperator) -> Dataset:
        return Dataset(LogicalPlan(op))

    def _map(self, name: str, stage: Any, *, compute: Any = None, num_cpus: float | None = None,
             num_gpus: float | None = None, remote_args: dict | None = None, kind: str = "map",
             min_rows: int | None = None) -> Dataset:
        return self._then(MapLike(name, self._dag, [stage], compute=compute, num_cpus=num_cpus,
                                  num_gpus=num_gpus, remote_args=remote_args, kind=kind,
                                  min_rows_per_bundle=min_rows))

    def _executor(self) -> Any:
        from distcore.data._internal.executor import StreamingExecutor

        return StreamingExecutor(self._plan, DataContext.get_current())

    def _iter_bundles(self, held: int = 0, stop: Any = None) -> Iterator[Any]:
        """Output blocks as they are produced; the last ``held`` count as still held by the consumer.

        ``stop`` (a ``threading.Event``) set by another thread ends the execution early.
        """
        ex = self._executor().run_in_thread()
        self._last_stats = ex.stats
        recent: collections.deque = collections.deque(maxlen=max(1, held))
        try:
            while True:
                try:
                    b = ex.next_bundle(timeout=0.2 if stop is not None else None)
                except TimeoutError:
                    if stop.is_set():
                        return
                    continue
                if b is None:
                    return
                if held:
                    recent.append(b.size)
                    ex.consumer_held = sum(recent)
                yield b
        finally:
            ex.shutdown()

    def _iter_tables(self, prefetch: int = 1, stop: Any = None) -> Iterator[pa.Table]:
        # the consumer holds the current block, the prefetched ones and the batcher's remainder
        for bundle in self._iter_bundles(held=prefetch + 2, stop=stop):
            yield distcore.get(bundle.ref, timeout=600)

    def _bundles(self) -> list[Any]:
        return list(self._iter_bundles())

    def explain(self) -> str:
        """The logical plan before and after optimization."""
        from distcore.data._internal.optimizer import optimize

        return "Logical plan:\n" + self._plan.explain() + "\nOptimized plan:\n" + optimize(self._plan).explain()

    def __repr__(self) -> str:
        return f"Dataset(plan={self._dag.name})"

    # ------------------------------------------------------------------ transforms
    def map(self, fn: Callable[[dict], dict], *, fn_args: tuple = (), fn_kwargs: dict | None = None,
            fn_constructor_args: tuple = (), fn_constructor_kwargs: dict | None = None,
            concurrency: int | tuple[int, int] | None = None, compute: Any = None,
            num_cpus: float | None = None, num_gpus: float | None = None, **remote_args: Any) -> Dataset:
        """Apply ``fn`` to each row (a dict) -> a new row dict."""
        _check_callable(fn, "map")
        name = f"Map({callable_name(fn)})"
        stage = MapRowsStage(fn, fn_args, fn_kwargs, name=name)
        stage.ctor_args, stage.ctor_kwargs = tuple(fn_constructor_args), dict(fn_constructor_kwargs or {})
        return self._map(name, stage, compute=_compute(fn, concurrency, compute, name), num_cpus=num_cpus,
                         num_gpus=num_gpus, remote_args=remote_args)

    def map_batches(self, fn: Any, *, batch_size: int | None | str = None, compute: Any = None,
                    batch_format: str | None = "default", zero_copy_batch: bool = False,
                    fn_args: tuple | None = None, fn_kwargs: dict | None = None,
                    fn_constructor_args: tuple | None = None, fn_constructor_kwargs: dict | None = None,
                    num_cpus: float | None = None, num_gpus: float | None = None,
                    concurrency: int | tuple[int, int] | None = None, **remote_args: Any) -> Dataset:
        """Apply ``fn`` to batches (numpy dict / pandas / pyarrow); a callable class runs on an actor pool.

        ``batch_size``: rows per batch; ``None`` (the default, as in Ray Data 2.x) or ``"auto"`` passes
        whole blocks (at most ``DataContext.target_max_block_size`` bytes each); ``"default"`` is the
        older default of 1024 rows (4096 with GPUs).
        """
        _check_callable(fn, "map_batches")
        fmt = check_batch_format(batch_format)
        if batch_size == "default":
            batch_size = 1024 if (num_gpus or 0) == 0 else 4096
        elif batch_size == "auto":
            batch_size = None
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ValueError(f"map_batches: batch_size must be a positive int or None, got {batch_size!r}")
        if not isinstance(fn, type) and (fn_constructor_args or fn_constructor_kwargs):
            raise ValueError("map_batches: fn_constructor_args/kwargs need a callable class")
        name = f"MapBatches({callable_name(fn)})"
        stage = MapBatchesStage(fn, batch_size=batch_size, batch_format=fmt, fn_args=fn_args or (),
                                fn_kwargs=fn_kwargs, fn_constructor_args=fn_constructor_args or (),
                                fn_constructor_kwargs=fn_constructor_kwargs, name=name,
                                zero_copy_batch=zero_copy_batch)
        return self._map(name, stage, compute=_compute(fn, concurrency, compute, name), num_cpus=num_cpus,
                         num_gpus=num_gpus, remote_args=remote_args, kind="map_batches", min_rows=batch_size)

    def flat_map(self, fn: Callable[[dict], list[dict]], *, fn_args: tuple = (), fn_kwargs: dict | None = None,
                 concurrency: Any = None, compute: Any = None, num_cpus: float | None = None,
                 num_gpus: float | None = None, **remote_args: Any) -> Dataset:
        """Apply ``fn`` to each row -> a list of rows."""
        _check_callable(fn, "flat_map")
        name = f"FlatMap({callable_name(fn)})"
        return self._map(name, FlatMapStage(fn, fn_args, fn_kwargs, name=name),
                         compute=_compute(fn, concurrency, compute, name), num_cpus=num_cpus, num_gpus=num_gpus,
                         remote_args=remote_args)

    def filter(self, fn: Callable[[dict], bool] | None = None, *, expr: Any = None, concurrency: Any = None,
               compute: Any = None, num_cpus: float | None = None, **remote_args: Any) -> Dataset:
        """Keep rows where ``fn(row)`` is true, or where the pyarrow ``expr`` holds (pushed into reads)."""
        if (fn is None) == (expr is None):
            raise ValueError("filter needs exactly one of fn or expr")
        if expr is not None:
            import pyarrow.compute as pc

            if isinstance(expr, str):
                raise TypeError("filter(expr=...) takes a pyarrow.compute.Expression, e.g. pc.field('x') > 3")
            if not isinstance(expr, pc.Expression):
                raise TypeError(f"filter(expr=...) needs a pyarrow.compute.Expression, got {type(expr).__name__}")
            return self._map(f"Filter({expr})", FilterStage(expr=expr, name=f"Filter({expr})"), kind="filter",
                             remote_args=remote_args)
        _check_callable(fn, "filter")
        name = f"Filter({callable_name(fn)})"
        return self._map(name, FilterStage(fn, name=name), compute=_compute(fn, concurrency, compute, name),
                         num_cpus=num_cpus, remote_args=remote_args, kind="filter")

    def add_column(self, col: str, fn: Callable[[Any], Any], *, batch_format: str = "pandas",
                   **remote_args: Any) -> Dataset:
        """Add (or replace) column ``col`` computed by ``fn(batch)``."""
        if not isinstance(col, str):
            raise TypeError(f"add_column: the column name must be a str, got {col!r}")
        _check_callable(fn, "add_column")
        return self._map(f"AddColumn({col})", AddColumnStage(col, fn, batch_format, name=f"AddColumn({col})"),
                         remote_args=remote_args)

    def _names(self, cols: Any, what: str) -> list[str]:
        cols = [cols] if isinstance(cols, str) else list(cols)
        if not all(isinstance(c, str) for c in cols):
            raise TypeError(f"{what} needs column names (str), got {cols!r}")
        if len(set(cols)) != len(cols):
            raise ValueError(f"{what}: duplicate column names in {cols!r}")
        return cols

    def select_columns(self, cols: str | list[str], **remote_args: Any) -> Dataset:
        cols = self._names(cols, "select_columns")
        return self._map(f"Project({cols})", ProjectStage(select=cols, name="SelectColumns"), kind="project",
                         remote_args=remote_args)

    def drop_columns(self, cols: str | list[str], **remote_args: Any) -> Dataset:
        cols = self._names(cols, "drop_columns")
        return self._map(f"DropColumns({cols})", ProjectStage(drop=cols, name="DropColumns"), kind="project",
                         remote_args=remote_args)

    def rename_columns(self, names: dict[str, str] | list[str], **remote_args: Any) -> Dataset:
        if isinstance(names, list):
            raise TypeError("rename_columns needs a dict {old: new}")
        if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in names.items()):
            raise TypeError(f"rename_columns needs a dict of str -> str, got {names!r}")
        if len(set(names.values())) != len(names):
            raise ValueError(f"rename_columns: new names must be unique, got {names!r}")
        return self._map("RenameColumns", ProjectStage(rename=dict(names), name="RenameColumns"), kind="project",
                         remote_args=remote_args)

    def random_sample(self, fraction: float, *, seed: int | None = None) -> Dataset:
        """Keep each row with probability ``fraction``."""
        if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"random_sample: fraction must be in [0, 1], got {fraction!r}")
        return self._map(f"RandomSample({fraction})", RandomSampleStage(float(fraction), seed), kind="sample")

    def limit(self, limit: int) -> Dataset:
        """The first ``limit`` rows."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit needs an int >= 0, got {limit!r}")
        return self._then(Limit(self._dag, limit))

    def union(self, *others: Dataset) -> Dataset:
        """Rows of this dataset, then of each of ``others``."""
        for o in others:
            if not isinstance(o, Dataset):
                raise TypeError(f"union needs Datasets, got {type(o).__name__}")
        return self._then(Union([self._dag] + [o._dag for o in others]))

    # all-to-all (the exchanges live in _internal.exchange; wired by _internal.all_to_all)
    def repartition(self, num_blocks: int | None = None, target_num_rows_per_block: int | None = None, *,
                    shuffle: bool = False, keys: str | list[str] | None = None, sort: bool = False) -> Dataset:
        """The rows in new blocks. Modes (as in Ray Data):

        - ``repartition(n)``: exactly ``n`` near-equal blocks, row order kept; ``shuffle=True`` spreads
          rows at random (a full shuffle) into ``n`` blocks.
        - ``repartition(n, keys=cols)``: a hash exchange (bounded by the memory budget): exactly ``n``
          blocks (some may be empty), every row with the same key values in the same block;
          ``sort=True`` sorts each block by ``keys`` (ascending, nulls last). Without ``n`` the
          exchange picks the number of blocks from the data's size and the budget.
        - ``repartition(target_num_rows_per_block=r)``: as few near-equal blocks of at most ``r`` rows
          as that allows, in row order (not combinable with ``num_blocks``, ``shuffle`` or ``keys``).

        >>> ds = dd.from_items([{"k": i % 3, "v": i} for i in range(9)]).repartition(2, keys="k", sort=True)
        >>> ds.materialize().num_blocks()
        2
        """
        from distcore.data._internal import all_to_all

        return self._then(all_to_all.repartition(self._dag, num_blocks, shuffle,
                                                 target_num_rows_per_block=target_num_rows_per_block,
                                                 keys=keys, sort=sort))

    def random_shuffle(self, *, seed: int | None = None, num_blocks: int | None = None) -> Dataset:
        from distcore.data._internal import all_to_all

        return self._then(all_to_all.random_shuffle(self._dag, seed, num_blocks))

    def sort(self, key: str | list[str], descending: bool | list[bool] = False) -> Dataset:
        from distcore.data._internal import all_to_all

        return self._then(all_to_all.sort(self._dag, key, descending))

    def groupby(self, key: str | list[str] | None) -> Any:
        from distcore.data.grouped_data import GroupedData

        return GroupedData(self, key)

    def unique(self, column: str) -> list[Any]:
        from distcore.data._internal import all_to_all

        ds = self._then(all_to_all.unique(self._dag, column))
        return [row[column] for row in ds.iter_rows()]

    def join(self, other: Dataset, on: str | list[str], how: str = "inner", *,
             num_partitions: int | None = None) -> Dataset:
        from distcore.data._internal import all_to_all

        return self._then(all_to_all.join(self._dag, other._dag, on, how, num_partitions))

    def zip(self, other: Dataset) -> Dataset:
        from distcore.data._internal import all_to_all

        if not isinstance(other, Dataset):
            raise TypeError(f"zip needs a Dataset, got {type(other).__name__}")
        return self._then(all_to_all.zip(self._dag, other._dag))

    # aggregations over the whole dataset
    def _agg(self, name: str, on: str, ignore_nulls: bool = True) -> Any:
        return getattr(self.groupby(None), name)(on, ignore_nulls=ignore_nulls).take_all()[0]

    def sum(self, on: str, ignore_nulls: bool = True) -> Any:
        return next(iter(self._agg("sum", on, ignore_nulls).values()))

    def min(self, on: str, ignore_nulls: bool = True) -> Any:
        return next(iter(self._agg("min", on, ignore_nulls).values()))

    def max(self, on: str, ignore_nulls: bool = True) -> Any:
        return next(iter(self._agg("max", on, ignore_nulls).values()))

    def mean(self, on: str, ignore_nulls: bool = True) -> Any:
        return next(iter(self._agg("mean", on, ignore_nulls).values()))

    def std(self, on: str, ddof: int = 1, ignore_nulls: bool = True) -> Any:
        return next(iter(self.groupby(None).std(on, ddof=ddof, ignore_nulls=ignore_nulls).take_all()[0].values()))

    # ------------------------------------------------------------------ splitting
    def split(self, n: int, *, equal: bool = False, locality_hints: Any = None) -> list[MaterializedDataset]:
        """``n`` materialized datasets (by blocks; ``equal=True`` gives equal row counts)."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"split needs n >= 1, got {n!r}")
        mat = self.materialize()
        if equal:
            total = mat.count()
            per = total // n
            return mat.split_at_indices([per * i for i in builtins.range(1, n)])[:n - 1] + \
                [mat._slice_rows(per * (n - 1), per * n)]
        bundles = mat._bundle_list
        parts: list[list] = [[] for _ in builtins.range(n)]
        rows = [0] * n
        for b in bundles:
            i = min(builtins.range(n), key=lambda j: (rows[j], j))
            parts[i].append(b)
            rows[i] += b.rows
        return [MaterializedDataset(p) for p in parts]

    def split_at_indices(self, indices: list[int]) -> list[MaterializedDataset]:
        """Split at row indices: ``[0, i0), [i0, i1), ..., [ik, n)``."""
        if not isinstance(indices, list) or not all(isinstance(i, int) and i >= 0 for i in indices):
            raise ValueError(f"split_at_indices needs a list of non-negative ints, got {indices!r}")
        if sorted(indices) != indices:
            raise ValueError(f"split_at_indices: indices must be sorted, got {indices!r}")
        mat = self.materialize()
        total = mat.count()
        bounds = [0] + [builtins.min(i, total) for i in indices] + [total]
        return [mat._slice_rows(bounds[i], bounds[i + 1]) for i in builtins.range(len(bounds) - 1)]

    def split_proportionately(self, proportions: list[float]) -> list[MaterializedDataset]:
        if not proportions or any(p <= 0 for p in proportions) or sum(proportions) >= 1:
            raise ValueError(f"proportions must be positive and sum to less than 1, got {proportions!r}")
        total = self.materialize().count()
        idx, acc = [], 0.0
        for p in proportions:
            acc += p
            idx.append(int(math.floor(total * acc)))
        return self.split_at_indices(idx)

    def train_test_split(self, test_size: float | int, *, shuffle: bool = False,
                         seed: int | None = None) -> tuple[MaterializedDataset, MaterializedDataset]:
        """(train, test): ``test_size`` as a fraction in (0, 1) or a row count."""
        ds = self.random_shuffle(seed=seed) if shuffle else self
        mat = ds.materialize()
        total = mat.count()
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"test_size as a float must be in (0, 1), got {test_size}")
            n_test = int(math.ceil(total * test_size))
        elif isinstance(test_size, int) and not isinstance(test_size, bool):
            if not 0 <= test_size <= total:
                raise ValueError(f"test_size {test_size} is larger than the dataset ({total} rows)")
            n_test = test_size
        else:
            raise TypeError(f"test_size must be a float or an int, got {test_size!r}")
        train, test = mat.split_at_indices([total - n_test])
        return train, test

    def streaming_split(self, n: int, *, equal: bool = False,
                        locality_hints: Any = None) -> list[DataIterator]:
        """``n`` picklable iterators fed by one streaming execution (for train workers).

        Each call to ``iter_batches`` on a split starts its next epoch; an epoch starts
        once every split asked for it. ``equal=True`` gives every split the same row count.
        """
        from distcore.data._internal.split import SplitCoordinatorActor

        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"streaming_split needs n >= 1, got {n!r}")
        coord = SplitCoordinatorActor.remote(self._plan, DataContext.get_current(), n, equal)
        return [StreamSplitDataIterator(coord, i, n) for i in builtins.range(n)]

    # ------------------------------------------------------------------ consumption
    def iterator(self) -> DataIterator:
        return DatasetIterator(self)

    def iter_batches(self, **kwargs: Any) -> Iterator[Any]:
        """See :meth:`DataIterator.iter_batches`."""
        return self.iterator().iter_batches(**kwargs)

    def iter_rows(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self.iterator().iter_rows(**kwargs)

    def iter_torch_batches(self, **kwargs: Any) -> Iterator[Any]:
        return self.iterator().iter_torch_batches(**kwargs)

    def take_batch(self, batch_size: int = 20, *, batch_format: str | None = "default") -> Any:
        tables = self.limit(batch_size)._all_tables()
        return to_batch(B.concat(tables) if tables else pa.table({}), batch_format or "default")

    def take(self, limit: int = 20) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for table in self.limit(limit)._all_tables():
            out.extend(B.rows_of(table))
        return out[:limit]

    def take_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in self.iter_rows():
            out.append(row)
            if limit is not None and len(out) > limit:
                raise ValueError(f"the dataset has more than {limit} rows")
        return out

    def show(self, limit: int = 20) -> None:
        for row in self.take(limit):
            print(row)

    def _all_tables(self) -> list[pa.Table]:
        bundles = self._bundles()
        return list(distcore.get([b.ref for b in bundles], timeout=600)) if bundles else []

    def count(self) -> int:
        """Rows (from metadata when the plan knows them without running)."""
        known = self._dag.num_rows()
        if known is not None:
            return known
        return sum(b.rows for b in self._bundles())

    def schema(self, fetch_if_missing: bool = True) -> pa.Schema | None:
        """The schema (runs the plan up to its first block when it is not known)."""
        from distcore.data._internal.logical import Read

        if isinstance(self._dag, Read):
            known = getattr(self._dag.datasource, "schema", None)
            schema = known() if callable(known) else None
            if schema is not None and len(schema):
                return schema
        if not fetch_if_missing:
            return None
        for b in self.limit(1)._bundles():
            if b.meta.schema is not None and len(b.meta.schema):
                return b.meta.schema
        return None

    def columns(self, fetch_if_missing: bool = True) -> list[str]:
        schema = self.schema(fetch_if_missing)
        return list(schema.names) if schema is not None else []

    def num_blocks(self) -> int:
        return len(self._bundles())

    def size_bytes(self) -> int:
        return sum(b.size for b in self._bundles())

    def input_files(self) -> list[str]:
        files: list[str] = []
        for b in self._bundles():
            files.extend(f for f in b.meta.input_files if f not in files)
        return files

    def to_pandas(self, limit: int | None = None) -> Any:
        import pandas as pd

        tables = self._all_tables()
        total = sum(t.num_rows for t in tables)
        if limit is not None and total > limit:
            raise ValueError(f"the dataset has {total} rows, more than limit={limit}")
        nonempty = [t for t in tables if t.num_columns]
        if not nonempty:
            return pd.DataFrame()
        return B.to_pandas(B.concat(nonempty))

    def to_arrow_refs(self) -> list[Any]:
        return [b.ref for b in self._bundles()]

    def to_numpy_refs(self, *, column: str | None = None) -> list[Any]:
        @distcore.remote(num_cpus=0)
        def convert(table: pa.Table) -> Any:
            d = B.to_numpy_dict(table)
            return d[column] if column is not None else d

        return [convert.remote(r) for r in self.to_arrow_refs()]

    def to_pandas_refs(self) -> list[Any]:
        @distcore.remote(num_cpus=0)
        def convert(table: pa.Table) -> Any:
            return B.to_pandas(table)

        return [convert.remote(r) for r in self.to_arrow_refs()]

    def materialize(self) -> MaterializedDataset:
        """Run the plan and keep its blocks in the object store."""
        bundles = self._bundles()
        mat = MaterializedDataset(bundles)
        mat._last_stats = self._last_stats
        return mat

    def stats(self) -> str:
        """Per-operator wall/CPU time, rows, bytes and peak memory of the last execution."""
        if self._last_stats is None:
            return "Dataset has not been executed yet."
        return self._last_stats.to_string(verbose=DataContext.get_current().verbose_stats_logs)

    # ------------------------------------------------------------------ writes
    def _write(self, kind: str, path: str, **kwargs: Any) -> Any:
        from distcore.data._internal import all_to_all

        return all_to_all.write(self, kind, path, **kwargs)

    def write_parquet(self, path: str, **kwargs: Any) -> Any:
        return self._write("parquet", path, **kwargs)

    def write_csv(self, path: str, **kwargs: Any) -> Any:
        return self._write("csv", path, **kwargs)

    def write_json(self, path: str, **kwargs: Any) -> Any:
        return self._write("json", path, **kwargs)

    def write_numpy(self, path: str, *, column: str, **kwargs: Any) -> Any:
        return self._write("numpy", path, column=column, **kwargs)

    def write_datasink(self, datasink: Any) -> Any:
        from distcore.data._internal import all_to_all

        return all_to_all.write_datasink(self, datasink)


class MaterializedDataset(Dataset):
    """A Dataset whose blocks are already in the object store."""

    def __init__(self, bundles: list[Any]) -> None:
        self._bundle_list = list(bundles)
        super().__init__(LogicalPlan(InputData([(b.ref, b.meta) for b in self._bundle_list])))

    def count(self) -> int:
        return sum(b.rows for b in self._bundle_list)

    def num_blocks(self) -> int:
        return len(self._bundle_list)

    def size_bytes(self) -> int:
        return sum(b.size for b in self._bundle_list)

    def schema(self, fetch_if_missing: bool = True) -> pa.Schema | None:
        for b in self._bundle_list:
            if b.meta.schema is not None and len(b.meta.schema):
                return b.meta.schema
        return None

    def materialize(self) -> MaterializedDataset:
        return self

    def _slice_rows(self, start: int, end: int) -> MaterializedDataset:
        from distcore.data._internal.physical import Bundle, _slice_task

        out, pos = [], 0
        for b in self._bundle_list:
            lo, hi = pos, pos + b.rows
            pos = hi
            s, e = builtins.max(lo, start), builtins.min(hi, end)
            if s >= e:
                continue
            if s == lo and e == hi:
                out.append(b)
            else:
                ref, meta_ref = _slice_task.remote(b.ref, s - lo, e - s)
                out.append(Bundle(ref, distcore.get(meta_ref, timeout=600)))
        return MaterializedDataset(out)


def from_blocks(tables: list[pa.Table]) -> MaterializedDataset:
    """A materialized dataset from tables in hand (each put in the object store)."""
    from distcore.data._internal.physical import Bundle

    return MaterializedDataset([Bundle(distcore.put(t), B.block_metadata(t)) for t in tables])


__all__ = ["Dataset", "MaterializedDataset", "from_blocks"]
