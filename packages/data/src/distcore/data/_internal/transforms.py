"""Stages: picklable steps a map task (or pool actor) applies to a stream of blocks.

A fused physical map operator runs a list of stages one after another inside
one task, so blocks never go back to the object store between them.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distcore.data._internal import block as B
from distcore.data._internal.batch import Batcher, check_batch_format, to_batch
from distcore.data.exceptions import UserCodeException


def callable_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class Stage:
    """One step of a fused map: ``stage(blocks) -> blocks``; ``init()`` runs once per worker."""

    name = "Stage"
    row_preserving = False

    def init(self) -> None:
        pass

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:  # pragma: no cover
        raise NotImplementedError

    def _udf_error(self, fn: Any, exc: BaseException) -> UserCodeException:
        return UserCodeException(
            f"the UDF {callable_name(fn)!r} of operator {self.name} raised {type(exc).__name__}: {exc}")


def _outputs(result: Any) -> Iterator[Any]:
    """A UDF returns one batch or an iterator (generator) of batches."""
    if inspect.isgenerator(result) or (isinstance(result, Iterator) and not isinstance(result, (dict, list))):
        yield from result
    else:
        yield result


class MapBatchesStage(Stage):
    def __init__(self, fn: Any, *, batch_size: int | None, batch_format: str, fn_args: tuple = (),
                 fn_kwargs: dict | None = None, fn_constructor_args: tuple = (),
                 fn_constructor_kwargs: dict | None = None, name: str = "MapBatches",
                 zero_copy_batch: bool = False) -> None:
        self.fn = fn
        self.batch_size = batch_size
        self.batch_format = check_batch_format(batch_format)
        self.fn_args = tuple(fn_args or ())
        self.fn_kwargs = dict(fn_kwargs or {})
        self.ctor_args = tuple(fn_constructor_args or ())
        self.ctor_kwargs = dict(fn_constructor_kwargs or {})
        self.name = name
        self.is_class = isinstance(fn, type)
        self._callable: Any = None if self.is_class else fn

    def init(self) -> None:
        if self.is_class and self._callable is None:
            try:
                self._callable = self.fn(*self.ctor_args, **self.ctor_kwargs)
            except Exception as exc:
                raise self._udf_error(self.fn, exc) from exc

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.is_class:
            state["_callable"] = None
        return state

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        self.init()
        batcher = Batcher(self.batch_size)
        for table in blocks:
            for batch in batcher.add(table):
                yield from self._apply(batch)
        for batch in batcher.finish():
            yield from self._apply(batch)

    def _apply(self, table: pa.Table) -> Iterator[pa.Table]:
        batch = to_batch(table, self.batch_format)
        try:
            outs = list(_outputs(self._callable(batch, *self.fn_args, **self.fn_kwargs)))
        except UserCodeException:
            raise
        except Exception as exc:
            raise self._udf_error(self.fn, exc) from exc
        for out in outs:
            try:
                yield B.to_block(out)
            except (TypeError, ValueError) as exc:
                raise UserCodeException(f"operator {self.name}: the UDF {callable_name(self.fn)!r} returned "
                                        f"an invalid batch: {exc}") from exc


class MapRowsStage(Stage):
    row_preserving = True

    def __init__(self, fn: Callable, fn_args: tuple = (), fn_kwargs: dict | None = None,
                 name: str = "Map") -> None:
        self.fn, self.fn_args, self.fn_kwargs, self.name = fn, tuple(fn_args), dict(fn_kwargs or {}), name
        self.is_class = isinstance(fn, type)
        self.ctor_args: tuple = ()
        self.ctor_kwargs: dict = {}
        self._callable = None if self.is_class else fn

    init = MapBatchesStage.init
    __getstate__ = MapBatchesStage.__getstate__

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        self.init()
        for table in blocks:
            out = []
            for row in B.rows_of(table):
                try:
                    new = self._callable(row, *self.fn_args, **self.fn_kwargs)
                except Exception as exc:
                    raise self._udf_error(self.fn, exc) from exc
                if not isinstance(new, dict):
                    raise UserCodeException(f"operator {self.name}: {callable_name(self.fn)!r} must return a "
                                            f"dict per row, got {type(new).__name__}")
                out.append(new)
            if out:
                yield B.from_rows(out)


class FlatMapStage(MapRowsStage):
    row_preserving = False

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        self.init()
        for table in blocks:
            out = []
            for row in B.rows_of(table):
                try:
                    out.extend(self._callable(row, *self.fn_args, **self.fn_kwargs))
                except Exception as exc:
                    raise self._udf_error(self.fn, exc) from exc
            if out:
                yield B.from_rows(out)


class FilterStage(Stage):
    def __init__(self, fn: Callable | None = None, expr: pc.Expression | None = None,
                 name: str = "Filter") -> None:
        self.fn, self.expr, self.name = fn, expr, name
        self.is_class = isinstance(fn, type)
        self.fn_args: tuple = ()
        self.fn_kwargs: dict = {}
        self.ctor_args: tuple = ()
        self.ctor_kwargs: dict = {}
        self._callable = None if self.is_class else fn

    init = MapBatchesStage.init
    __getstate__ = MapBatchesStage.__getstate__

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        self.init()
        for table in blocks:
            if self.expr is not None:
                try:
                    yield table.filter(self.expr)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(f"operator {self.name}: cannot evaluate {self.expr}: {exc}") from exc
                continue
            keep = []
            for row in B.rows_of(table):
                try:
                    keep.append(bool(self._callable(row)))
                except Exception as exc:
                    raise self._udf_error(self.fn, exc) from exc
            yield table.filter(pa.array(keep, type=pa.bool_())) if keep else table


class ProjectStage(Stage):
    """select / drop / rename columns (missing columns raise ``KeyError`` naming them)."""

    row_preserving = True

    def __init__(self, select: list[str] | None = None, drop: list[str] | None = None,
                 rename: dict[str, str] | None = None, name: str = "Project") -> None:
        self.select, self.drop, self.rename, self.name = select, drop, rename, name

    def _check(self, table: pa.Table, cols: Iterable[str]) -> None:
        missing = [c for c in cols if c not in table.column_names]
        if missing and (table.num_columns or table.num_rows):
            raise KeyError(f"operator {self.name}: no column(s) {missing}; the block has {table.column_names}")

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for table in blocks:
            if self.select is not None:
                self._check(table, self.select)
                table = table.select(self.select) if table.num_columns else table
            if self.drop:
                self._check(table, self.drop)
                table = table.drop_columns(self.drop) if table.num_columns else table
            if self.rename:
                self._check(table, self.rename)
                table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
            yield table


class AddColumnStage(Stage):
    row_preserving = True

    def __init__(self, col: str, fn: Callable, batch_format: str, name: str = "AddColumn") -> None:
        self.col, self.fn, self.batch_format, self.name = col, fn, check_batch_format(batch_format), name

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for table in blocks:
            if table.num_rows == 0:
                yield table
                continue
            try:
                values = self.fn(to_batch(table, self.batch_format))
            except Exception as exc:
                raise self._udf_error(self.fn, exc) from exc
            if hasattr(values, "to_numpy") and not isinstance(values, (pa.Array, pa.ChunkedArray)):
                values = values.to_numpy()
            column = B.from_numpy_dict({self.col: values}).column(0)
            if len(column) != table.num_rows:
                raise UserCodeException(f"operator {self.name}: the new column has {len(column)} values for "
                                        f"{table.num_rows} rows")
            if self.col in table.column_names:
                table = table.set_column(table.column_names.index(self.col), self.col, column)
            else:
                table = table.append_column(self.col, column)
            yield table


class RandomSampleStage(Stage):
    def __init__(self, fraction: float, seed: int | None, name: str = "RandomSample") -> None:
        self.fraction, self.seed, self.name = fraction, seed, name

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for i, table in enumerate(blocks):
            seed = None if self.seed is None else hash((self.seed, i, table.num_rows)) & 0xFFFFFFFF
            rng = np.random.default_rng(seed if seed is not None else random.getrandbits(32))
            yield table.filter(pa.array(rng.random(table.num_rows) < self.fraction))


class SliceStage(Stage):
    """Keep at most ``n`` rows of the stream (used by a limit fused into a map)."""

    row_preserving = False

    def __init__(self, n: int, name: str = "Limit") -> None:
        self.n, self.name = n, name

    def __call__(self, blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
        left = self.n
        for table in blocks:
            if left <= 0:
                return
            out = table.slice(0, left)
            left -= out.num_rows
            yield out


def run_stages(stages: list[Stage], blocks: Iterable[pa.Table]) -> Iterator[pa.Table]:
    stream: Iterable[pa.Table] = blocks
    for stage in stages:
        stream = stage(stream)
    return iter(stream)
