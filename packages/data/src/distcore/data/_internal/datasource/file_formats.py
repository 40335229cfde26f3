"""File formats: CSV and JSON lines (split into byte ranges when big), text, NumPy, binary files, images.

Each reads from a pyarrow input stream (so any filesystem works); CSV and JSON lines
files are read in several tasks by ranges of whole records: a CSV file's cuts are moved to
record boundaries by a quote-aware scan (``csv_split``), so quoted values may hold newlines;
a JSON array file is read whole.
"""

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

    _DECOMPRESS = True

    def __init__(self, paths: Any, *, arrow_csv_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._csv_args = dict(arrow_csv_args or {})
        #: per split file, from the planning scan: where its header ends, whether values hold newlines
        self._layouts: dict[str, Any] = {}

    def read_stream(self, f: Any, path: str) -> pa.Table:
        import pyarrow.csv as pacsv

        data = f.read()
        try:
            return pacsv.read_csv(pa.BufferReader(data), **self._csv_args)
        except pa.ArrowInvalid as exc:
            # pyarrow's chunker splits at every newline unless told that values may hold some
            if "newlines_in_values" not in str(exc) or self._newlines_allowed():
                raise
            return pacsv.read_csv(pa.BufferReader(data), **self._args(quoted_newlines=True))

    def _newlines_allowed(self) -> bool:
        po = self._csv_args.get("parse_options")
        return bool(po is not None and po.newlines_in_values)

    def _args(self, quoted_newlines: bool) -> dict[str, Any]:
        if not quoted_newlines or self._newlines_allowed():
            return self._csv_args
        import pyarrow.csv as pacsv

        po = self._csv_args.get("parse_options") or pacsv.ParseOptions()
        po = pacsv.ParseOptions(delimiter=po.delimiter, quote_char=po.quote_char, double_quote=po.double_quote,
                                escape_char=po.escape_char, newlines_in_values=True,
                                ignore_empty_lines=po.ignore_empty_lines, invalid_row_handler=po.invalid_row_handler)
        return {**self._csv_args, "parse_options": po}

    def splittable(self, path: str) -> bool:
        ro, po = self._csv_args.get("read_options"), self._csv_args.get("parse_options")
        if ro is not None and (ro.skip_rows or ro.skip_rows_after_names or ro.column_names or
                               ro.autogenerate_column_names):
            return False
        if po is not None and po.escape_char:
            return False  # an escaped quote does not toggle quoting: the quote count cannot place records
        return not _compressed(path)

    def range_bounds(self, path: str, bounds: list[int]) -> list[int]:
        from distcore.data._internal.datasource.csv_split import record_layout

        po = self._csv_args.get("parse_options")
        quote = po.quote_char if po is not None else '"'
        if not quote:  # no quoting: every newline ends a record
            return bounds
        with self._fs.open_input_file(path) as f:
            layout = record_layout(f, f.size(), bounds, quote.encode())
        self._layouts[path] = layout
        return layout.bounds

    def header(self, f: Any, size: int, path: str) -> bytes:
        layout = self._layouts.get(path)
        return super().header(f, size, path) if layout is None else f.read_at(layout.header_end, 0)

    def read_lines(self, data: bytes, header: bytes, path: str) -> pa.Table:
        import pyarrow.csv as pacsv

        layout = self._layouts.get(path)
        args = self._args(quoted_newlines=layout is not None and layout.quoted_newlines)
        return pacsv.read_csv(io.BytesIO(header + data), **args)


class JSONDatasource(FileBasedDatasource):
    """JSON lines files (one object per line); a file holding one JSON array of objects also works."""

    _DECOMPRESS = True

    def __init__(self, paths: Any, *, arrow_json_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._json_args = dict(arrow_json_args or {})

    def read_stream(self, f: Any, path: str) -> pa.Table:
        return self._parse(f.read())

    def splittable(self, path: str) -> bool:
        if _compressed(path):
            return False
        with self._fs.open_input_file(path) as f:  # a JSON array file cannot be split by lines
            head = f.read_at(min(4096, f.size()), 0)
        return head.lstrip()[:1] != b"["

    def read_lines(self, data: bytes, header: bytes, path: str) -> pa.Table:
        return self._parse(data)

    def _parse(self, data: bytes) -> pa.Table:
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

    _DECOMPRESS = True

    def __init__(self, paths: Any, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(paths, **kwargs)
        self._encoding = encoding
        self._drop_empty = drop_empty_lines

    def read_stream(self, f: Any, path: str) -> pa.Table:
        lines = f.read().decode(self._encoding).splitlines()
        if self._drop_empty:
            lines = [line for line in lines if line.strip()]
        return pa.table({"text": pa.array(lines, pa.string())})


class NumpyDatasource(FileBasedDatasource):
    """``.npy`` files (and ``.npz``: their first array): rows along axis 0 in column ``data``."""

    _FILE_EXTENSIONS = ("npy", "npz")

    def read_stream(self, f: Any, path: str) -> pa.Table:
        loaded = np.load(io.BytesIO(f.read()), allow_pickle=False)
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

    def read_stream(self, f: Any, path: str) -> pa.Table:
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

    def read_stream(self, f: Any, path: str) -> pa.Table:
        from PIL import Image

        with Image.open(io.BytesIO(f.read())) as img:
            if self._mode is not None:
                img = img.convert(self._mode)
            if self._size is not None:
                img = img.resize((self._size[1], self._size[0]))
            arr = np.asarray(img)
        return pa.table({"image": tensor_array(arr[np.newaxis])})


def _compressed(path: str) -> bool:
    return path.lower().endswith((".gz", ".bz2", ".zst", ".lz4", ".br", ".zip", ".xz", ".snappy"))
