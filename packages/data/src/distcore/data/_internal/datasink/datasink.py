"""The datasink interface and the file sinks: one file per block, written to a temp name then renamed.

Call order: ``on_write_start()`` on the driver; ``write(blocks, ctx)`` in a task
per block (its result comes back to the driver); ``on_write_complete(results)``
on the driver when every write succeeded, ``on_write_failed(error)`` otherwise.
A reader never sees a partial file: temp files start with ``.`` (readers skip
them) and are renamed into place only once complete.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class WriteContext:
    task_index: int
    dataset_uuid: str


@dataclass
class WriteResult:
    num_rows: int
    size_bytes: int
    paths: list[str]


class Datasink:
    def on_write_start(self) -> None:
        pass

    def write(self, blocks: Iterable[pa.Table], ctx: WriteContext) -> Any:
        raise NotImplementedError

    def on_write_complete(self, results: list[Any]) -> None:
        pass

    def on_write_failed(self, error: Exception) -> None:
        pass

    def get_name(self) -> str:
        return type(self).__name__.removesuffix("Datasink") or "Datasink"


class FileDatasink(Datasink):
    """Writes each non-empty block to ``{path}/{dataset_uuid}_{task:06}_{i:06}.{ext}``."""

    extension = "bin"

    def __init__(self, path: str | os.PathLike[str], *, filename_prefix: str | None = None,
                 mode: str = "append", filesystem: Any = None) -> None:
        from distcore.data._internal.datasource import fs as F

        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"write needs a directory path, got {path!r}")
        self.fs, path = F.resolve(path, filesystem)
        self.local = F.is_local(self.fs)
        if (os.path.isfile(path) if self.local else F.is_file(self.fs, path)):
            raise FileExistsError(f"write needs a directory, but {path!r} is a file")
        if mode not in ("append", "overwrite", "error"):
            raise ValueError(f"mode must be 'append', 'overwrite' or 'error', got {mode!r}")
        self.path = path
        self.filename_prefix = filename_prefix
        self.mode = mode

    def on_write_start(self) -> None:
        if not self.local:
            self._remote_start()
            return
        if os.path.isdir(self.path) and os.listdir(self.path):
            if self.mode == "error":
                raise FileExistsError(f"{self.path!r} is not empty (mode='error')")
            if self.mode == "overwrite":
                for name in os.listdir(self.path):
                    full = os.path.join(self.path, name)
                    if os.path.isfile(full) and name.endswith("." + self.extension):
                        os.remove(full)
        os.makedirs(self.path, exist_ok=True)

    def write_block(self, block: pa.Table, path: str) -> None:
        raise NotImplementedError

    def _remote_start(self) -> None:
        import pyarrow.fs as pafs

        self.fs.create_dir(self.path, recursive=True)
        names = [i for i in self.fs.get_file_info(pafs.FileSelector(self.path)) if i.type == pafs.FileType.File]
        if names and self.mode == "error":
            raise FileExistsError(f"{self.path!r} is not empty (mode='error')")
        if self.mode == "overwrite":
            for info in names:
                if info.base_name.endswith("." + self.extension):
                    self.fs.delete_file(info.path)

    def _remote_write(self, block: pa.Table, final: str, tmp: str) -> int:
        """Write locally, copy to ``tmp`` on the filesystem, then move it to ``final``."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="distcore-data-write-") as local_dir:
            local = os.path.join(local_dir, "block." + self.extension)
            self.write_block(block, local)
            try:
                with open(local, "rb") as src, self.fs.open_output_stream(tmp) as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                self.fs.move(tmp, final)
            except BaseException:
                try:
                    self.fs.delete_file(tmp)
                except OSError:
                    pass
                raise
            return os.path.getsize(local)

    def write(self, blocks: Iterable[pa.Table], ctx: WriteContext) -> WriteResult:
        if not self.local:
            return self._write_remote(blocks, ctx)
        os.makedirs(self.path, exist_ok=True)
        result = WriteResult(0, 0, [])
        prefix = self.filename_prefix or ctx.dataset_uuid
        for i, block in enumerate(blocks):
            if block.num_rows == 0:
                continue
            name = f"{prefix}_{ctx.task_index:06d}_{i:06d}.{self.extension}"
            final = os.path.join(self.path, name)
            tmp = os.path.join(self.path, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                self.write_block(block, tmp)
                os.replace(tmp, final)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
            result.num_rows += block.num_rows
            result.size_bytes += os.path.getsize(final)
            result.paths.append(final)
        return result

    def _write_remote(self, blocks: Iterable[pa.Table], ctx: WriteContext) -> WriteResult:
        result = WriteResult(0, 0, [])
        prefix = self.filename_prefix or ctx.dataset_uuid
        for i, block in enumerate(blocks):
            if block.num_rows == 0:
                continue
            name = f"{prefix}_{ctx.task_index:06d}_{i:06d}.{self.extension}"
            final = f"{self.path.rstrip('/')}/{name}"
            tmp = f"{self.path.rstrip('/')}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            result.size_bytes += self._remote_write(block, final, tmp)
            result.num_rows += block.num_rows
            result.paths.append(final)
        return result


class ParquetDatasink(FileDatasink):
    extension = "parquet"

    def __init__(self, path: str, *, arrow_parquet_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.args = dict(arrow_parquet_args or {})

    def write_block(self, block: pa.Table, path: str) -> None:
        import pyarrow.parquet as pq

        pq.write_table(block, path, **self.args)


def _check_flat(block: pa.Table, fmt: str) -> None:
    for field in block.schema:
        if isinstance(field.type, pa.BaseExtensionType) or pa.types.is_nested(field.type):
            raise TypeError(f"column {field.name!r} ({field.type}) cannot be written as {fmt}: "
                            "drop it or write parquet/numpy instead")


class CSVDatasink(FileDatasink):
    extension = "csv"

    def __init__(self, path: str, *, arrow_csv_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.args = dict(arrow_csv_args or {})

    def write_block(self, block: pa.Table, path: str) -> None:
        import pyarrow.csv as pacsv

        _check_flat(block, "CSV")
        pacsv.write_csv(block, path, **self.args)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class JSONDatasink(FileDatasink):
    """JSON lines: one object per row (tensors become nested lists)."""

    extension = "json"

    def write_block(self, block: pa.Table, path: str) -> None:
        columns = {}
        for name in block.column_names:
            col = block.column(name)
            if isinstance(col.type, pa.FixedShapeTensorType):
                columns[name] = list(col.combine_chunks().to_numpy_ndarray())
            else:
                columns[name] = col.to_pylist()
        with open(path, "w", encoding="utf-8") as f:
            for i in range(block.num_rows):
                f.write(json.dumps({k: v[i] for k, v in columns.items()}, default=_json_default))
                f.write("\n")


class NumpyDatasink(FileDatasink):
    """One ``.npy`` per block holding ``column`` stacked along axis 0."""

    extension = "npy"

    def __init__(self, path: str, *, column: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if not isinstance(column, str):
            raise ValueError(f"write_numpy needs one column name, got {column!r}")
        self.column = column

    def write_block(self, block: pa.Table, path: str) -> None:
        if self.column not in block.column_names:
            raise KeyError(f"write_numpy: column {self.column!r} not found; the data has {block.column_names}")
        col = block.column(self.column)
        arr = col.combine_chunks().to_numpy_ndarray() if isinstance(col.type, pa.FixedShapeTensorType) \
            else col.to_numpy()
        with open(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)
