"""distcore.data: lazy, streaming datasets for ML on distcore (mirrors ray.data).

Installed as the ``distcore-data`` distribution, next to core's ``distcore``;
import it as ``from distcore import data``.

Example::

    import distcore.data as dd

    ds = dd.range(10_000).map_batches(lambda b: {"x": b["id"] * 2})
    print(ds.take(2), ds.count())
"""

from __future__ import annotations

from distcore.data._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-data", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

from distcore.data._internal import read_entry as _read_entry  # noqa: E402
from distcore.data._internal.logical import ActorPoolStrategy, TaskPoolStrategy  # noqa: E402
from distcore.data.context import DataContext, ExecutionOptions, ExecutionResources  # noqa: E402
from distcore.data.dataset import Dataset, MaterializedDataset  # noqa: E402
from distcore.data.exceptions import InsufficientResourcesError, UserCodeException  # noqa: E402
from distcore.data.iterator import DataIterator  # noqa: E402

range = _read_entry.get("range")  # noqa: A001
range_tensor = _read_entry.get("range_tensor")
from_items = _read_entry.get("from_items")
from_pandas = _read_entry.get("from_pandas")
from_numpy = _read_entry.get("from_numpy")
from_arrow = _read_entry.get("from_arrow")
from_torch = _read_entry.get("from_torch")
read_parquet = _read_entry.get("read_parquet")
read_csv = _read_entry.get("read_csv")
read_json = _read_entry.get("read_json")
read_text = _read_entry.get("read_text")
read_numpy = _read_entry.get("read_numpy")
read_binary_files = _read_entry.get("read_binary_files")
read_images = _read_entry.get("read_images")
read_datasource = _read_entry.get("read_datasource")


def __getattr__(name: str):  # aggregations live with the exchanges; import them on first use
    if name in ("AggregateFn", "Count", "Sum", "Min", "Max", "Mean", "Std"):
        from distcore.data import aggregate

        return getattr(aggregate, name)
    raise AttributeError(f"module 'distcore.data' has no attribute {name!r}")


__all__ = [
    "ActorPoolStrategy", "DataContext", "DataIterator", "Dataset", "ExecutionOptions", "ExecutionResources",
    "InsufficientResourcesError", "MaterializedDataset", "TaskPoolStrategy", "UserCodeException", "__version__",
    "from_arrow", "from_items", "from_numpy", "from_pandas", "from_torch", "range", "range_tensor",
    "read_binary_files", "read_csv", "read_datasource", "read_images", "read_json", "read_numpy",
    "read_parquet", "read_text",
]
