"""Storage helpers: a local directory or any pyarrow/fsspec filesystem (public re-exports).

Libraries built on train (tune) keep their experiments where train keeps runs,
through these helpers; importing this module imports pyarrow.

Example::

    from distcore.train import storage

    fs, root = storage.resolve("memory://bucket/experiments")
    storage.write_bytes(fs, storage.join(root, "state.json"), b"{}")
    assert storage.exists(fs, storage.join(root, "state.json"))
"""

from __future__ import annotations

from distcore.train._internal.storage import (
    StorageContext,
    append_bytes,
    default_storage_path,
    delete_dir,
    download_dir,
    exists,
    is_dir,
    is_uri,
    join,
    list_dir,
    makedirs,
    move,
    read_bytes,
    resolve,
    upload_dir,
    write_bytes,
)

__all__ = [
    "StorageContext",
    "append_bytes",
    "default_storage_path",
    "delete_dir",
    "download_dir",
    "exists",
    "is_dir",
    "is_uri",
    "join",
    "list_dir",
    "makedirs",
    "move",
    "read_bytes",
    "resolve",
    "upload_dir",
    "write_bytes",
]
