"""Filesystems for readers and writers (``pyarrow.fs`` underneath).

A path may be local, a ``file://`` URI, any URI pyarrow knows (``s3://``, ``gs://``,
``hdfs://``...), or any URI an installed fsspec implementation knows; or the caller
passes ``filesystem=`` (a ``pyarrow.fs.FileSystem`` or an fsspec filesystem) and
paths inside it. Read and write tasks run in other processes, so the filesystem must
be one they can reach: fsspec's ``memory://`` lives in one process and is refused.

Example::

    fs, paths = expand(["s3://bucket/events/"], ["parquet"], None)
    with fs.open_input_file(paths[0]) as f:
        ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

_GLOB_CHARS = set("*?[")


def _wrap(filesystem: Any) -> Any:
    import pyarrow.fs as pafs

    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec is a dependency
        fsspec = None
    if fsspec is not None and isinstance(filesystem, fsspec.AbstractFileSystem):
        if "memory" in _protocols(filesystem):
            raise ValueError("fsspec's memory:// filesystem lives in one process, so the cluster's read and write "
                             "tasks cannot see it: use a local path or a shared filesystem")
        return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
    raise TypeError(f"filesystem must be a pyarrow.fs.FileSystem or an fsspec filesystem, "
                    f"got {type(filesystem).__name__}")


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def is_local(fs: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def resolve(path: str | os.PathLike[str], filesystem: Any = None) -> tuple[Any, str]:
    """``(pyarrow filesystem, path inside it)`` for a path or URI."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    path = os.fspath(path)
    if filesystem is not None:
        fs = _wrap(filesystem)
        if "://" in path and not path.startswith("file://"):
            path = path.split("://", 1)[1]
        elif path.startswith("file://"):
            path = path[len("file://"):]
        return fs, path
    if path.startswith("file://"):
        return pafs.LocalFileSystem(), path[len("file://"):]
    if "://" not in path:
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError):
        pass
    try:
        import fsspec.core
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise ValueError(f"unsupported path {path!r}: pyarrow has no filesystem for it and fsspec is missing") from exc
    try:
        fsspec_fs, inner = fsspec.core.url_to_fs(path)
    except (ValueError, ImportError) as exc:
        raise ValueError(f"unsupported path {path!r}: no pyarrow or fsspec filesystem handles it ({exc})") from exc
    return _wrap(fsspec_fs), inner


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("_")


def _glob(fs: Any, pattern: str) -> list[str]:
    import pyarrow.fs as pafs

    if is_local(fs):
        import glob

        return sorted(glob.glob(pattern, recursive=True))
    handler = getattr(fs, "handler", None)
    if isinstance(fs, pafs.PyFileSystem) and hasattr(getattr(handler, "fs", None), "glob"):
        return sorted(handler.fs.glob(pattern))
    raise ValueError(f"globs are supported on local and fsspec filesystems, not {fs.type_name}: {pattern!r}")


def _walk(fs: Any, directory: str) -> list[str]:
    import pyarrow.fs as pafs

    out = []
    base = directory.rstrip("/")
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base):].lstrip("/") if info.path.startswith(base) else info.base_name
        if any(_hidden(part) for part in rel.split("/")):
            continue
        out.append(info.path)
    return sorted(out)


def expand(paths: Any, file_extensions: Sequence[str] | None, filesystem: Any = None) -> tuple[Any, list[str]]:
    """``(filesystem, files)``: every file named by ``paths`` (files, directories walked recursively
    without hidden or ``_`` entries, globs, or lists of them), in a stable order."""
    import pyarrow.fs as pafs

    from distcore.data._internal.datasource.paths import expand_paths, path_items

    items, keep = path_items(paths, file_extensions)
    if filesystem is None and all(isinstance(i, (str, os.PathLike)) and
                                  ("://" not in os.fspath(i) or os.fspath(i).startswith("file://")) for i in items):
        return pafs.LocalFileSystem(), expand_paths(items, file_extensions)
    fs = None
    files: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths must be str or os.PathLike, got {type(item).__name__}: {item!r}")
        item_fs, path = resolve(item, filesystem)
        if fs is None:
            fs = item_fs
        elif type(item_fs) is not type(fs):
            raise ValueError(f"all paths must be on one filesystem: {item!r} is on {item_fs.type_name}, "
                             f"the first on {fs.type_name}")
        if _GLOB_CHARS & set(path):
            matched = _glob(fs, path)
            if not matched:
                raise FileNotFoundError(f"no file matches the glob {os.fspath(item)!r}")
            for m in matched:
                kind = fs.get_file_info(m).type
                files.extend(f for f in (_walk(fs, m) if kind == pafs.FileType.Directory else [m]) if keep(f))
            continue
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            files.extend(f for f in _walk(fs, path) if keep(f))
        elif kind == pafs.FileType.File:
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {os.fspath(item)!r}")
    return fs, files


def is_dir(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.Directory


def is_file(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.File


def file_size(fs: Any, path: str) -> int:
    if is_local(fs):
        return os.path.getsize(path)
    return int(fs.get_file_info(path).size or 0)
