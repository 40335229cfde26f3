"""Aggregations: ``Count``, ``Sum``, ``Min``, ``Max``, ``Mean``, ``Std`` and a user ``AggregateFn``.

Built-ins run in two vectorized stages on pyarrow's hash aggregation: a partial
state per group in each map task (``map_specs``), combined per group in the
reduce task (``reduce_funcs``) and turned into the result (``finalize``).
A user ``AggregateFn`` runs per group in Python: ``init(key)`` -> accumulate
(rows or whole blocks) -> ``merge`` of partial accumulators -> ``finalize``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class AggregateFn:
    """A user aggregation.

    Example::

        sum_sq = AggregateFn(init=lambda key: 0, name="sum_sq(x)",
                             accumulate_row=lambda acc, row: acc + row["x"] ** 2,
                             merge=lambda a, b: a + b)
        ds.groupby("k").aggregate(sum_sq)
    """

    builtin = False

    def __init__(self, init: Callable[[Any], Any], merge: Callable[[Any, Any], Any], name: str,
                 accumulate_row: Callable[[Any, dict[str, Any]], Any] | None = None,
                 accumulate_block: Callable[[Any, pa.Table], Any] | None = None,
                 finalize: Callable[[Any], Any] | None = None) -> None:
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("AggregateFn needs exactly one of accumulate_row and accumulate_block")
        if not isinstance(name, str) or not name:
            raise ValueError("AggregateFn needs a non-empty name (the output column)")
        self.init, self.merge, self.name = init, merge, name
        self.accumulate_row, self.accumulate_block = accumulate_row, accumulate_block
        self.finalize_fn = finalize if finalize is not None else (lambda acc: acc)

    def columns(self) -> list[str]:
        """Input columns the aggregation reads (None: all)."""
        return []

    def accumulate(self, acc: Any, block: pa.Table) -> Any:
        if self.accumulate_block is not None:
            return self.accumulate_block(acc, block)
        for row in block.to_pylist():
            acc = self.accumulate_row(acc, row)  # type: ignore[misc]
        return acc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _Builtin(AggregateFn):
    """A vectorized aggregation over one column (or rows, for ``Count()``)."""

    builtin = True
    _label = ""

    def __init__(self, on: str | None, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        if on is not None and not isinstance(on, str):
            raise TypeError(f"{type(self).__name__}(on=...) takes one column name, got {on!r}")
        self.on = on
        self.ignore_nulls = ignore_nulls
        self.name = alias_name or f"{self._label}({on or ''})"

    def columns(self) -> list[str]:
        return [self.on] if self.on else []

    def _opts(self) -> pc.ScalarAggregateOptions:
        return pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls, min_count=1)

    def prep(self, table: pa.Table) -> dict[str, pa.ChunkedArray]:
        """Extra input columns the map stage needs (name -> values)."""
        return {}

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        raise NotImplementedError

    def post_map(self, states: list[pa.ChunkedArray]) -> list[pa.ChunkedArray]:
        return states

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def finalize(self, states: list[pa.ChunkedArray]) -> pa.ChunkedArray:
        return states[0]


class Count(_Builtin):
    """Rows per group (``Count()``), or non-null values of ``on`` (``ignore_nulls=False``: all rows)."""

    _label = "count"

    def __init__(self, on: str | None = None, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        if self.on is None:
            return [([], "count_all", None)]
        return [(self.on, "count", pc.CountOptions(mode="only_valid" if self.ignore_nulls else "all"))]

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        return [("sum", None)]


class Sum(_Builtin):
    """Sum of ``on`` per group; null when all values are null (or any is, with ``ignore_nulls=False``)."""

    _label = "sum"

    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        return [(self.on, "sum", self._opts())]

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        return [("sum", self._opts())]


class Min(_Builtin):
    _label = "min"

    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        return [(self.on, self._label, self._opts())]

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        return [(self._label, self._opts())]


class Max(Min):
    _label = "max"


class Mean(_Builtin):
    """Mean of ``on`` per group (float64)."""

    _label = "mean"

    def __init__(self, on: str, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)

    def prep(self, table: pa.Table) -> dict[str, pa.ChunkedArray]:
        return {f"__f_{self.on}": table.column(self.on).cast(pa.float64())}

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        return [(f"__f_{self.on}", "sum", self._opts()), (self.on, "count", pc.CountOptions(mode="only_valid"))]

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        return [("sum", self._opts()), ("sum", None)]

    def finalize(self, states: list[pa.ChunkedArray]) -> pa.ChunkedArray:
        total, count = states
        count = pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.int64()), count)
        return pc.divide(total, count.cast(pa.float64()))


class Std(_Builtin):
    """Standard deviation of ``on`` per group (``ddof`` = 1 by default, like pandas).

    Map tasks keep (n, sum, sum²/n, M2) per group, so the reduce adds within-block
    spreads exactly and only the between-block term is computed from sums.
    """

    _label = "std"

    def __init__(self, on: str, ddof: int = 1, ignore_nulls: bool = True, alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def prep(self, table: pa.Table) -> dict[str, pa.ChunkedArray]:
        return {f"__f_{self.on}": table.column(self.on).cast(pa.float64())}

    def map_specs(self) -> list[tuple[Any, str, Any]]:
        col = f"__f_{self.on}"
        return [(self.on, "count", pc.CountOptions(mode="only_valid")), (col, "sum", self._opts()),
                (col, "variance", pc.VarianceOptions(ddof=0, skip_nulls=self.ignore_nulls, min_count=1))]

    def post_map(self, states: list[pa.ChunkedArray]) -> list[pa.ChunkedArray]:
        n, total, var = states
        nf = pc.if_else(pc.equal(n, 0), pa.scalar(None, pa.float64()), n.cast(pa.float64()))
        sq_over_n = pc.divide(pc.multiply(total, total), nf)
        m2 = pc.multiply(var, n.cast(pa.float64()))
        return [n, total, pc.fill_null(sq_over_n, 0.0) if self.ignore_nulls else sq_over_n, m2]

    def reduce_funcs(self) -> list[tuple[str, Any]]:
        return [("sum", None), ("sum", self._opts()), ("sum", self._opts()), ("sum", self._opts())]

    def finalize(self, states: list[pa.ChunkedArray]) -> pa.ChunkedArray:
        n, total, sq_over_n, m2 = states
        nf = n.cast(pa.float64())
        between = pc.subtract(sq_over_n, pc.divide(pc.multiply(total, total),
                                                   pc.if_else(pc.equal(n, 0), pa.scalar(None, pa.float64()), nf)))
        m2_all = pc.add(m2, pc.max_element_wise(between, pa.scalar(0.0)))
        denom = pc.subtract(nf, float(self.ddof))
        denom = pc.if_else(pc.less_equal(denom, 0.0), pa.scalar(None, pa.float64()), denom)
        return pc.sqrt(pc.max_element_wise(pc.divide(m2_all, denom), pa.scalar(0.0)))


def check_aggs(aggs: Any) -> list[AggregateFn]:
    items = list(aggs) if isinstance(aggs, (list, tuple)) else [aggs]
    if not items:
        raise ValueError("aggregate needs at least one aggregation (Count(), Sum('x'), ...)")
    names = set()
    for agg in items:
        if not isinstance(agg, AggregateFn):
            raise TypeError(f"aggregations must be AggregateFn instances (Count(), Sum('x'), ...), got {agg!r}")
        if agg.name in names:
            raise ValueError(f"two aggregations would both write the column {agg.name!r}: give one an alias_name")
        names.add(agg.name)
    return items


__all__ = ["AggregateFn", "Count", "Max", "Mean", "Min", "Std", "Sum"]
