"""Creation and read functions: each builds a lazy ``Dataset`` over one datasource.

Every reader takes files, directories (walked recursively), globs or lists of
them, local or as URIs of any pyarrow or fsspec filesystem (``file://``, ``s3://``...),
or paths inside ``filesystem=`` (a ``pyarrow.fs.FileSystem`` or an fsspec filesystem);
and ``override_num_blocks`` (or the older ``parallelism``) for the number
of read tasks; nothing is read until the dataset executes.

Example::

    ds = read_parquet("/data/events", columns=["user", "ts"], filter=pc.field("ts") > 0)
    ds.count()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distcore.data._internal.datasource import (
    BinaryDatasource,
    BlocksDatasource,
    CSVDatasource,
    Datasource,
    ImageDatasource,
    JSONDatasource,
    NumpyDatasource,
    ParquetDatasource,
    RangeDatasource,
    TextDatasource,
)
from distcore.data._internal.datasource.memory import (
    arrow_tables,
    items_table,
    numpy_tables,
    pandas_tables,
    torch_table,
)

Paths = str | Sequence[str]


def _parallelism(parallelism: int, override_num_blocks: int | None) -> int:
    n = override_num_blocks if override_num_blocks is not None else parallelism
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or (n <= 0 and n != -1):
        raise ValueError(f"override_num_blocks must be a positive int (or -1 for automatic), got {n!r}")
    return int(n)


def read_datasource(datasource: Datasource, *, parallelism: int = -1, override_num_blocks: int | None = None,
                    name: str | None = None) -> Any:
    """A Dataset reading ``datasource`` (any :class:`Datasource` subclass)."""
    from distcore.data._internal.logical import LogicalPlan, Read
    from distcore.data.dataset import Dataset

    if not hasattr(datasource, "get_read_tasks"):
        raise TypeError(f"read_datasource needs a Datasource (with get_read_tasks), got {type(datasource).__name__}")
    return Dataset(LogicalPlan(Read(datasource, _parallelism(parallelism, override_num_blocks), name=name)))


def range(n: int, *, parallelism: int = -1, override_num_blocks: int | None = None) -> Any:  # noqa: A001
    """Rows ``{"id": i}`` for i in ``0..n-1``."""
    return read_datasource(RangeDatasource(n), parallelism=parallelism, override_num_blocks=override_num_blocks,
                           name="ReadRange")


def range_tensor(n: int, *, shape: Sequence[int] = (1,), parallelism: int = -1,
                 override_num_blocks: int | None = None) -> Any:
    """Rows ``{"data": ndarray of shape filled with i}`` for i in ``0..n-1``."""
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"shape must be a tuple of positive ints, got {shape!r}")
    return read_datasource(RangeDatasource(n, tensor_shape=tuple(shape)), parallelism=parallelism,
                           override_num_blocks=override_num_blocks, name="ReadRangeTensor")


def from_items(items: list[Any], *, parallelism: int = -1, override_num_blocks: int | None = None) -> Any:
    """Rows from a list: dicts give columns; other items go to column ``item``."""
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"from_items needs a list, got {type(items).__name__}")
    return read_datasource(BlocksDatasource([items_table(list(items))]), parallelism=parallelism,
                           override_num_blocks=override_num_blocks, name="FromItems")


def _from_tables(tables: list[pa.Table], override_num_blocks: int | None, name: str) -> Any:
    keep = override_num_blocks is None
    return read_datasource(BlocksDatasource(tables, keep_blocks=keep), override_num_blocks=override_num_blocks,
                           name=name)


def from_pandas(dfs: Any, *, override_num_blocks: int | None = None) -> Any:
    """One block per DataFrame (or ``override_num_blocks`` blocks)."""
    return _from_tables(pandas_tables(dfs), override_num_blocks, "FromPandas")


def from_numpy(ndarrays: Any, *, override_num_blocks: int | None = None) -> Any:
    """Rows along axis 0 in column ``data`` (ndarrays of rank > 1 become tensor columns)."""
    return _from_tables(numpy_tables(ndarrays), override_num_blocks, "FromNumpy")


def from_arrow(tables: Any, *, override_num_blocks: int | None = None) -> Any:
    """One block per pyarrow Table (or ``override_num_blocks`` blocks)."""
    return _from_tables(arrow_tables(tables), override_num_blocks, "FromArrow")


def from_torch(dataset: Any, *, override_num_blocks: int | None = None) -> Any:
    """A map-style torch dataset: one row ``{"item": sample}`` per index (tensors become ndarrays)."""
    return read_datasource(BlocksDatasource([torch_table(dataset)]), override_num_blocks=override_num_blocks,
                           name="FromTorch")


def read_parquet(paths: Paths, *, columns: list[str] | None = None, filter: pc.Expression | None = None,
                 partitioning: str | None = "hive", filesystem: Any = None, parallelism: int = -1,
                 override_num_blocks: int | None = None) -> Any:
    """Parquet files; ``columns`` and ``filter`` (a ``pyarrow.compute`` expression) are pushed into the scan.

    Hive directories (``year=2024/``) become columns and prune files through ``filter``.
    """
    return read_datasource(ParquetDatasource(paths, columns=columns, filter=filter, partitioning=partitioning,
                                             filesystem=filesystem),
                           parallelism=parallelism, override_num_blocks=override_num_blocks, name="ReadParquet")


def _file_reader(cls: type, name: str, paths: Paths, parallelism: int, override_num_blocks: int | None,
                 **kwargs: Any) -> Any:
    return read_datasource(cls(paths, **kwargs), parallelism=parallelism, override_num_blocks=override_num_blocks,
                           name=name)


def read_csv(paths: Paths, *, include_paths: bool = False, file_extensions: list[str] | None = None,
             filesystem: Any = None, parallelism: int = -1, override_num_blocks: int | None = None, **arrow_csv_args: Any) -> Any:
    """CSV files with a header row (``arrow_csv_args``: ``parse_options``, ``convert_options``, ...)."""
    return _file_reader(CSVDatasource, "ReadCSV", paths, parallelism, override_num_blocks,
                        include_paths=include_paths, filesystem=filesystem, file_extensions=file_extensions, arrow_csv_args=arrow_csv_args)


def read_json(paths: Paths, *, include_paths: bool = False, file_extensions: list[str] | None = None,
              filesystem: Any = None, parallelism: int = -1, override_num_blocks: int | None = None, **arrow_json_args: Any) -> Any:
    """JSON lines files: one object per line."""
    return _file_reader(JSONDatasource, "ReadJSON", paths, parallelism, override_num_blocks,
                        include_paths=include_paths, filesystem=filesystem, file_extensions=file_extensions,
                        arrow_json_args=arrow_json_args)


def read_text(paths: Paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True, include_paths: bool = False,
              file_extensions: list[str] | None = None, filesystem: Any = None, parallelism: int = -1,
              override_num_blocks: int | None = None) -> Any:
    """Text files: one row ``{"text": line}`` per line."""
    return _file_reader(TextDatasource, "ReadText", paths, parallelism, override_num_blocks, encoding=encoding,
                        drop_empty_lines=drop_empty_lines, include_paths=include_paths,
                        filesystem=filesystem, file_extensions=file_extensions)


def read_numpy(paths: Paths, *, include_paths: bool = False, file_extensions: list[str] | None = None,
               filesystem: Any = None, parallelism: int = -1, override_num_blocks: int | None = None) -> Any:
    """``.npy`` files: rows along axis 0 in column ``data``."""
    return _file_reader(NumpyDatasource, "ReadNumpy", paths, parallelism, override_num_blocks,
                        include_paths=include_paths, filesystem=filesystem, file_extensions=file_extensions)


def read_binary_files(paths: Paths, *, include_paths: bool = False, file_extensions: list[str] | None = None,
                      filesystem: Any = None, parallelism: int = -1, override_num_blocks: int | None = None) -> Any:
    """One row per file: ``{"bytes": ...}`` (plus ``path`` with ``include_paths``)."""
    return _file_reader(BinaryDatasource, "ReadBinary", paths, parallelism, override_num_blocks,
                        include_paths=include_paths, filesystem=filesystem, file_extensions=file_extensions)


def read_images(paths: Paths, *, size: tuple[int, int] | None = None, mode: str | None = None,
                include_paths: bool = False, file_extensions: list[str] | None = None, filesystem: Any = None, parallelism: int = -1,
                override_num_blocks: int | None = None) -> Any:
    """Images (Pillow) as ``{"image": uint8 ndarray}``; ``size=(h, w)`` resizes, ``mode`` converts."""
    return _file_reader(ImageDatasource, "ReadImage", paths, parallelism, override_num_blocks, size=size,
                        mode=mode, include_paths=include_paths, filesystem=filesystem, file_extensions=file_extensions)


__all__ = [
    "from_arrow", "from_items", "from_numpy", "from_pandas", "from_torch", "range", "range_tensor",
    "read_binary_files", "read_csv", "read_datasource", "read_images", "read_json", "read_numpy", "read_parquet",
    "read_text",
]
