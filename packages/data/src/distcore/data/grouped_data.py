"""GroupedData: ``ds.groupby(key)`` then an aggregation or ``map_groups`` (mirrors Ray's).

Example::

    ds.groupby("k").sum("v").to_pandas()
    ds.groupby("k").aggregate(Count(), Mean("v"))
    ds.groupby("k").map_groups(lambda df: df.head(1), batch_format="pandas")
"""

from __future__ import annotations

from typing import Any

from distcore.data._internal import all_to_all


class GroupedData:
    def __init__(self, dataset: Any, key: str | list[str] | None) -> None:
        if key is not None and not isinstance(key, str) and not (
                isinstance(key, (list, tuple)) and key and all(isinstance(k, str) for k in key)):
            raise ValueError(f"groupby needs a column name, a list of names or None, got {key!r}")
        self._dataset = dataset
        self._key = list(key) if isinstance(key, tuple) else key

    def __repr__(self) -> str:
        return f"GroupedData(key={self._key!r})"

    def aggregate(self, *aggs: Any) -> Any:
        """One row per group with a column per aggregation (``Count()``, ``Sum("x")``, ``AggregateFn``...)."""
        from distcore.data._internal.exchange.aggregate_fns import check_aggs

        check_aggs(list(aggs))
        return self._dataset._then(all_to_all.aggregate(self._dataset._dag, self._key, list(aggs)))

    def _simple(self, agg_name: str, on: Any, **kwargs: Any) -> Any:
        from distcore.data._internal import exchange

        cls = getattr(exchange, agg_name)
        cols = [on] if isinstance(on, str) or on is None else list(on)
        aggs = [cls(c, **kwargs) if c is not None else cls(**kwargs) for c in cols]
        return self._dataset._then(all_to_all.aggregate(self._dataset._dag, self._key, aggs))

    def count(self) -> Any:
        from distcore.data._internal.exchange import Count

        return self._dataset._then(all_to_all.aggregate(self._dataset._dag, self._key, [Count()]))

    def sum(self, on: str | list[str], ignore_nulls: bool = True) -> Any:
        return self._simple("Sum", on, ignore_nulls=ignore_nulls)

    def min(self, on: str | list[str], ignore_nulls: bool = True) -> Any:
        return self._simple("Min", on, ignore_nulls=ignore_nulls)

    def max(self, on: str | list[str], ignore_nulls: bool = True) -> Any:
        return self._simple("Max", on, ignore_nulls=ignore_nulls)

    def mean(self, on: str | list[str], ignore_nulls: bool = True) -> Any:
        return self._simple("Mean", on, ignore_nulls=ignore_nulls)

    def std(self, on: str | list[str], ddof: int = 1, ignore_nulls: bool = True) -> Any:
        return self._simple("Std", on, ddof=ddof, ignore_nulls=ignore_nulls)

    def map_groups(self, fn: Any, *, batch_format: str | None = "default", fn_args: tuple = (),
                   fn_kwargs: dict | None = None, num_partitions: int | None = None, **_: Any) -> Any:
        """``fn(group batch) -> batch`` for each group."""
        if not callable(fn):
            raise TypeError(f"map_groups needs a callable, got {type(fn).__name__}")
        return self._dataset._then(all_to_all.map_groups(self._dataset._dag, self._key, fn,
                                                         batch_format or "default", tuple(fn_args), fn_kwargs,
                                                         num_partitions))
