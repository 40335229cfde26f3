"""``Checkpoint``: a directory of files on a local disk or any pyarrow/fsspec filesystem."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from distcore.train._internal import storage

METADATA_FILE = ".metadata.json"


class Checkpoint:
    """A reference to a directory of checkpoint files, local or remote.

    Example::

        with tempfile.TemporaryDirectory() as tmp:
            torch.save(model.state_dict(), os.path.join(tmp, "model.pt"))
            train.report({"loss": loss}, checkpoint=Checkpoint.from_directory(tmp))

        # later, in the training function of a resumed run:
        ckpt = train.get_checkpoint()
        if ckpt:
            with ckpt.as_directory() as d:
                model.load_state_dict(torch.load(os.path.join(d, "model.pt")))

    Small JSON metadata travels with the files (``get_metadata``/``set_metadata``).
    """

    def __init__(self, path: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None) -> None:
        fs, inner = storage.resolve(path, filesystem)
        self.filesystem: pafs.FileSystem = fs
        self.path: str = inner

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint of the files in ``path`` (a local directory or a URI)."""
        ckpt = cls(path)
        if not storage.is_dir(ckpt.filesystem, ckpt.path):
            raise FileNotFoundError(f"Checkpoint.from_directory: {os.fspath(path)!r} is not an existing directory")
        return ckpt

    @property
    def _is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy the checkpoint's files into the local directory ``path`` (a new temp dir if None)."""
        target = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint_")
        if self._is_local:
            if os.path.abspath(target) != os.path.abspath(self.path):
                shutil.copytree(self.path, target, dirs_exist_ok=True)
        else:
            storage.download_dir(self.filesystem, self.path, target)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files for the ``with`` block.

        A local checkpoint yields its own directory (treat it as read-only);
        a remote one is downloaded to a temporary directory removed afterwards.
        """
        if self._is_local:
            if not os.path.isdir(self.path):
                raise FileNotFoundError(f"checkpoint directory {self.path!r} does not exist (was it deleted?)")
            yield self.path
            return
        tmp = tempfile.mkdtemp(prefix="checkpoint_")
        try:
            storage.download_dir(self.filesystem, self.path, tmp)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def get_metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata dict ({} when none was set)."""
        meta_path = storage.join(self.path, METADATA_FILE)
        if not storage.exists(self.filesystem, meta_path):
            return {}
        return json.loads(storage.read_bytes(self.filesystem, meta_path).decode())

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata with ``metadata`` (a JSON-serializable dict with str keys)."""
        if not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        try:
            data = json.dumps(metadata).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"checkpoint metadata must be JSON-serializable: {exc}") from exc
        storage.write_bytes(self.filesystem, storage.join(self.path, METADATA_FILE), data)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the existing metadata."""
        if not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem={self.filesystem.type_name}, path={self.path})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Checkpoint) and other.path == self.path
                and other.filesystem.type_name == self.filesystem.type_name)

    def __hash__(self) -> int:
        return hash((self.path, self.filesystem.type_name))

    def __reduce__(self) -> Any:
        return (_rebuild, (self.path, self.filesystem))


def _rebuild(path: str, filesystem: pafs.FileSystem) -> Checkpoint:
    ckpt = Checkpoint.__new__(Checkpoint)
    ckpt.filesystem = filesystem
    ckpt.path = path
    return ckpt
