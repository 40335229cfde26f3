"""Aggregations for ``Dataset.groupby(...).aggregate(...)`` (mirrors ``ray.data.aggregate``).

Example::

    from distcore.data.aggregate import Count, Mean
    ds.groupby("k").aggregate(Count(), Mean("v")).to_pandas()
"""

from __future__ import annotations

from distcore.data._internal.exchange.aggregate_fns import (
    AggregateFn,
    Count,
    Max,
    Mean,
    Min,
    Std,
    Sum,
)

__all__ = ["AggregateFn", "Count", "Max", "Mean", "Min", "Std", "Sum"]
