"""Whole-file formats: CSV, JSON lines, text, NumPy, binary files and images."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from distcore.data._internal.datasource._meta import tensor_array
from distcore.data._internal.datasource.file_based import FileBasedDatasource


class CSVDatasource(FileBasedDatasource):
    """CSV files (header row); ``arrow_csv_args`` go to ``pyarrow.csv`` (parse_options=..., ...)."""

    def __init__(self, paths: Any, *, arrow_csv_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._csv_args = dict(arrow_csv_args or {})

    def read_file(self, path: str) -> pa.Table:
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path, **self._csv_args)


class JSONDatasource(FileBasedDatasource):
    """JSON lines files (one object per line); a file holding one JSON array of objects also works."""

    def __init__(self, paths: Any, *, arrow_json_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._json_args = dict(arrow_json_args or {})

    def read_file(self, path: str) -> pa.Table:
        with open(path, "rb") as f:
            data = f.read()
        if not data.strip():
            return pa.table({})
        if data.lstrip()[:1] == b"[":  # one JSON array of objects, not JSON lines
            import json

            rows = json.loads(data)
            if not all(isinstance(r, dict) for r in rows):
                raise ValueError("a JSON array file must hold objects (one per row)")
            return pa.Table.from_pylist(rows)
        import pyarrow.json as pajson

        return pajson.read_json(io.BytesIO(data), **self._json_args)


class TextDatasource(FileBasedDatasource):
    """Text files: one row per line in column ``text``."""

    def __init__(self, paths: Any, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._encoding = encoding
        self._drop_empty = drop_empty_lines

    def read_file(self, path: str) -> pa.Table:
        with open(path, encoding=self._encoding, newline=None) as f:
            lines = f.read().splitlines()
        if self._drop_empty:
            lines = [line for line in lines if line.strip()]
        return pa.table({"text": pa.array(lines, pa.string())})


class NumpyDatasource(FileBasedDatasource):
    """``.npy`` files (and ``.npz``: their first array): rows along axis 0 in column ``data``."""

    _FILE_EXTENSIONS = ("npy", "npz")

    def read_file(self, path: str) -> pa.Table:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arr = loaded[loaded.files[0]]
        else:
            arr = loaded
        if arr.ndim == 0:
            arr = arr.reshape(1)
        return pa.table({"data": tensor_array(arr)})


class BinaryDatasource(FileBasedDatasource):
    """Each file as one row: its bytes in column ``bytes`` (``include_paths`` adds ``path``)."""

    def read_file(self, path: str) -> pa.Table:
        with open(path, "rb") as f:
            return pa.table({"bytes": pa.array([f.read()], pa.binary())})


class ImageDatasource(FileBasedDatasource):
    """Images read with Pillow into column ``image`` (H, W[, C] uint8 tensors).

    ``size=(height, width)`` resizes every image; ``mode`` ("RGB", "L", ...) converts.
    Images of different shapes in one file group need ``size``.
    """

    _FILE_EXTENSIONS = ("png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp")

    def __init__(self, paths: Any, *, size: Sequence[int] | None = None, mode: str | None = None,
                 **kwargs: Any) -> None:
        try:
            import PIL.Image  # noqa: F401
        except ImportError as exc:
            raise ImportError("read_images needs Pillow: pip install 'distcore-data[images]'") from exc
        if size is not None and (len(size) != 2 or any(int(s) <= 0 for s in size)):
            raise ValueError(f"size must be (height, width) with positive values, got {size!r}")
        super().__init__(paths, **kwargs)
        self._size = tuple(int(s) for s in size) if size is not None else None
        self._mode = mode

    def read_file(self, path: str) -> pa.Table:
        from PIL import Image

        with Image.open(path) as img:
            if self._mode is not None:
                img = img.convert(self._mode)
            if self._size is not None:
                img = img.resize((self._size[1], self._size[0]))
            arr = np.asarray(img)
        return pa.table({"image": tensor_array(arr[np.newaxis])})
