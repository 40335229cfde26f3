"""Expanding what a user passes to a reader (files, directories, globs, lists) into files."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from typing import Any

_GLOB_CHARS = set("*?[")


def _strip_scheme(path: str) -> str:
    if path.startswith("file://"):
        return path[len("file://"):]
    if "://" in path:
        raise ValueError(f"unsupported path {path!r}: only local paths (or file://) are supported")
    return path


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("_")


def _walk(directory: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        out.extend(os.path.join(root, f) for f in sorted(files) if not _hidden(f))
    return out


def path_items(paths: Any, file_extensions: Sequence[str] | None) -> tuple[list[Any], Callable[[str], bool]]:
    """``paths`` as a non-empty list, and the filter ``file_extensions`` (e.g. ``["csv"]``) sets
    for what directories and globs yield."""
    if isinstance(paths, (str, os.PathLike)):
        items = [paths]
    elif isinstance(paths, Sequence):
        items = list(paths)
    else:
        raise TypeError(f"paths must be a path or a list of paths, got {type(paths).__name__}")
    if not items:
        raise ValueError("no paths given: pass a file, a directory, a glob or a non-empty list")
    exts = tuple("." + e.lower().lstrip(".") for e in file_extensions) if file_extensions else None

    def keep(path: str) -> bool:
        return exts is None or path.lower().endswith(exts)

    return items, keep


def expand_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 file_extensions: Sequence[str] | None = None) -> list[str]:
    """Every file named by ``paths``, in a stable order.

    Directories are walked recursively (hidden and ``_``-prefixed entries such as
    ``_SUCCESS`` are skipped); globs are expanded. A path that names nothing
    raises :class:`FileNotFoundError`. ``file_extensions`` (e.g. ``["csv"]``)
    filters what directories and globs yield; files named explicitly are kept.
    """
    items, keep = path_items(paths, file_extensions)
    files: list[str] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths must be str or os.PathLike, got {type(item).__name__}: {item!r}")
        path = _strip_scheme(os.fspath(item))
        if _GLOB_CHARS & set(path):
            matched = sorted(glob.glob(path, recursive=True))
            if not matched:
                raise FileNotFoundError(f"no file matches the glob {path!r}")
            for m in matched:
                files.extend(f for f in (_walk(m) if os.path.isdir(m) else [m]) if keep(f))
        elif os.path.isdir(path):
            files.extend(f for f in _walk(path) if keep(f))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path!r}")
    return files
