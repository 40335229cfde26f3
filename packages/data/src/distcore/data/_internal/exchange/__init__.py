"""All-to-all exchanges over block references (the engine plans them; each returns ``[(ref, BlockMetadata)]``)."""

from distcore.data._internal.exchange.aggregate_fns import (
    AggregateFn,
    Count,
    Max,
    Mean,
    Min,
    Std,
    Sum,
)
from distcore.data._internal.exchange.groupby import groupby_aggregate, map_groups, unique
from distcore.data._internal.exchange.join import join, join_spec, zip
from distcore.data._internal.exchange.shuffle import (
    hash_partition,
    random_shuffle,
    random_shuffle_spec,
    repartition,
)
from distcore.data._internal.exchange.sort import sort

__all__ = [
    "AggregateFn", "Count", "Max", "Mean", "Min", "Std", "Sum", "groupby_aggregate", "hash_partition", "join", "join_spec",
    "map_groups", "random_shuffle", "random_shuffle_spec", "repartition", "sort", "unique", "zip",
]
