"""distcore.data: lazy, streaming datasets for ML on distcore (mirrors ray.data).

Installed as the ``distcore-data`` distribution, next to core's ``distcore``;
import it as ``from distcore import data``.

``import distcore.data`` is cheap: the engine (pyarrow, numpy, the executor) loads
on first use of a name below, e.g. the first ``distcore.data.range``.

Example::

    import distcore.data as dd

    ds = dd.range(10_000).map_batches(lambda b: {"x": b["id"] * 2})
    print(ds.take(2), ds.count())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distcore.data._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-data", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

from distcore.data.context import DataContext, ExecutionOptions, ExecutionResources  # noqa: E402
from distcore.data.exceptions import InsufficientResourcesError, UserCodeException  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover - names resolved lazily by __getattr__ below
    from distcore.data._internal.logical import ActorPoolStrategy, TaskPoolStrategy
    from distcore.data._internal.read_api import (
        from_arrow,
        from_items,
        from_numpy,
        from_pandas,
        from_torch,
        range,  # noqa: A004
        range_tensor,
        read_binary_files,
        read_csv,
        read_datasource,
        read_images,
        read_json,
        read_numpy,
        read_parquet,
        read_text,
    )
    from distcore.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum
    from distcore.data.dataset import Dataset, MaterializedDataset
    from distcore.data.iterator import DataIterator

_READERS = (
    "range", "range_tensor", "from_items", "from_pandas", "from_numpy", "from_arrow", "from_torch", "read_parquet",
    "read_csv", "read_json", "read_text", "read_numpy", "read_binary_files", "read_images", "read_datasource",
)
_LAZY = {
    "ActorPoolStrategy": "distcore.data._internal.logical",
    "TaskPoolStrategy": "distcore.data._internal.logical",
    "Dataset": "distcore.data.dataset",
    "MaterializedDataset": "distcore.data.dataset",
    "DataIterator": "distcore.data.iterator",
    **{name: "distcore.data.aggregate" for name in ("AggregateFn", "Count", "Sum", "Min", "Max", "Mean", "Std")},
}


def __getattr__(name: str) -> Any:
    """Load the engine on first use of one of its names (keeps ``import distcore.data`` fast)."""
    if name in _READERS:
        from distcore.data._internal import read_entry

        value = read_entry.get(name)
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'distcore.data' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ActorPoolStrategy", "AggregateFn", "Count", "DataContext", "DataIterator", "Dataset", "ExecutionOptions",
    "ExecutionResources", "InsufficientResourcesError", "Max", "MaterializedDataset", "Mean", "Min", "Std", "Sum",
    "TaskPoolStrategy", "UserCodeException", "__version__", "from_arrow", "from_items", "from_numpy",
    "from_pandas", "from_torch", "range", "range_tensor", "read_binary_files", "read_csv", "read_datasource",
    "read_images", "read_json", "read_numpy", "read_parquet", "read_text",
]
