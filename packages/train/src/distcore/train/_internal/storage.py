"""Where runs keep their files: a local directory or any pyarrow/fsspec filesystem.

Everything train persists (checkpoints, ``result.json``, ``progress.csv``, the
trainer's state for ``restore``) goes through the few helpers here, so a run
can live on a local disk shared by the nodes or on a URI such as ``s3://...``
or ``memory://...`` alike.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

DEFAULT_STORAGE_ENV = "DISTCORE_STORAGE_PATH"


def default_storage_path() -> str:
    """``$DISTCORE_STORAGE_PATH``, else ``~/distcore_results``."""
    return os.environ.get(DEFAULT_STORAGE_ENV) or os.path.join(os.path.expanduser("~"), "distcore_results")


def is_uri(path: str) -> bool:
    return "://" in path


def resolve(path: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI.

    Local paths are made absolute. URIs go to pyarrow first (``file``, ``s3``,
    ``gs``, ``hdfs``...) and to fsspec for the schemes pyarrow lacks
    (``memory``, ``gcs``, ``az``...).
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"storage path must be a str or os.PathLike, got {type(path).__name__}: {path!r}")
    text = os.fspath(path)
    if not text:
        raise ValueError("storage path must not be empty")
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            raise TypeError(f"filesystem must be a pyarrow.fs.FileSystem, got {type(filesystem).__name__}")
        return filesystem, text
    if not is_uri(text):
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))
    scheme = text.split("://", 1)[0]
    if scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(text.split("://", 1)[1])
    try:
        fs, inner = pafs.FileSystem.from_uri(text)
        return fs, inner
    except Exception:  # pyarrow does not know this scheme: try fsspec
        pass
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise ValueError(f"cannot open storage URI {text!r}: pyarrow does not know it and fsspec is missing") from exc
    try:
        fs, inner = fsspec.core.url_to_fs(text)
    except Exception as exc:
        raise ValueError(f"cannot open storage URI {text!r}: {exc}") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), inner


def join(base: str, *parts: str) -> str:
    """Join path parts with '/' (pyarrow paths use '/' on every filesystem)."""
    out = base.rstrip("/") if base != "/" else base
    for part in parts:
        out = f"{out}/{part}" if out != "/" else f"/{part}"
    return out


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.Directory


def list_dir(fs: pafs.FileSystem, path: str) -> list[str]:
    """Names (not paths) directly inside ``path``; [] when it does not exist."""
    if not is_dir(fs, path):
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(info.base_name for info in infos)


def makedirs(fs: pafs.FileSystem, path: str) -> None:
    fs.create_dir(path, recursive=True)


def upload_dir(local_dir: str, fs: pafs.FileSystem, dest: str) -> None:
    """Copy the local directory tree ``local_dir`` to ``dest`` on ``fs`` (merging into it)."""
    makedirs(fs, dest)
    local = pafs.LocalFileSystem()
    for root, dirs, files in os.walk(local_dir):
        rel = os.path.relpath(root, local_dir)
        target = dest if rel == "." else join(dest, *rel.split(os.sep))
        for d in dirs:
            makedirs(fs, join(target, d))
        for name in files:
            pafs.copy_files(os.path.join(root, name), join(target, name),
                            source_filesystem=local, destination_filesystem=fs)


def download_dir(fs: pafs.FileSystem, src: str, local_dir: str) -> None:
    """Copy the tree at ``src`` on ``fs`` into the local directory ``local_dir``."""
    os.makedirs(local_dir, exist_ok=True)
    if not is_dir(fs, src):
        raise FileNotFoundError(f"checkpoint directory {src!r} does not exist on {type(fs).__name__}")
    for info in fs.get_file_info(pafs.FileSelector(src, recursive=True)):
        rel = info.path[len(src.rstrip("/")) + 1:]
        target = os.path.join(local_dir, *rel.split("/"))
        if info.type == pafs.FileType.Directory:
            os.makedirs(target, exist_ok=True)
        elif info.type == pafs.FileType.File:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with fs.open_input_stream(info.path) as f_in, open(target, "wb") as f_out:
                while chunk := f_in.read(1 << 22):
                    f_out.write(chunk)


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    if exists(fs, path):
        fs.delete_dir(path)


def move(fs: pafs.FileSystem, src: str, dest: str) -> None:
    """Rename ``src`` to ``dest`` (atomic on local disks); ``dest`` must not exist."""
    fs.move(src, dest)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one."""
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        makedirs(fs, parent)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    if exists(fs, path):
        fs.delete_file(path)
    fs.move(tmp, path)


def append_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Append to a file (read-modify-write on filesystems without append)."""
    try:
        with fs.open_append_stream(path) as f:
            f.write(data)
        return
    except Exception:
        pass
    old = read_bytes(fs, path) if exists(fs, path) else b""
    write_bytes(fs, path, old + data)


@dataclass(frozen=True)
class StorageContext:
    """Where one run's files live (``train.get_context().get_storage()``).

    ``experiment_fs_path`` is ``storage_path/experiment_dir_name`` inside
    ``storage_filesystem``; a trial of tune adds ``trial_dir_name`` below it.
    """

    storage_path: str
    experiment_dir_name: str
    storage_filesystem: Any
    storage_fs_path: str
    trial_dir_name: str | None = None

    @property
    def experiment_fs_path(self) -> str:
        return join(self.storage_fs_path, self.experiment_dir_name)

    @property
    def trial_fs_path(self) -> str:
        if self.trial_dir_name is None:
            return self.experiment_fs_path
        return join(self.experiment_fs_path, self.trial_dir_name)

    @classmethod
    def create(cls, storage_path: str | os.PathLike[str] | None, experiment_dir_name: str,
               storage_filesystem: pafs.FileSystem | None = None,
               trial_dir_name: str | None = None) -> StorageContext:
        text = os.fspath(storage_path) if storage_path is not None else default_storage_path()
        fs, inner = resolve(text, storage_filesystem)
        return cls(text, experiment_dir_name, fs, inner, trial_dir_name)
