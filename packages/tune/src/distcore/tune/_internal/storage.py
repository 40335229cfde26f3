"""Where an experiment lives: a local directory, or a URI / pyarrow filesystem
(``RunConfig(storage_path="s3://...")``, ``storage_filesystem=``).

A remote experiment runs in a local staging directory on the driver's machine
(trial actors write their files and checkpoints there) and is mirrored to the
remote storage: periodically while it runs, whenever a trial ends or fails, and
at the end or on Ctrl-C. Only new or changed files travel; checkpoints pruned
locally are deleted remotely. ``Tuner.restore(uri)`` downloads the mirror into a
fresh staging directory and resumes from it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from typing import Any

STAGING_ENV = "DISTCORE_TUNE_STAGING_DIR"
STORAGE_ENV = "DISTCORE_STORAGE_PATH"
SYNC_PERIOD_S = 10.0
ATOMIC_FILES = ("experiment_state.json", "tuner.pkl", "searcher-state.pkl", "scheduler-state.pkl")


def _default_root() -> str:
    return os.environ.get(STORAGE_ENV) or os.path.join(os.path.expanduser("~"), "distcore_results")


def is_remote(storage_path: Any, storage_filesystem: Any = None) -> bool:
    if storage_filesystem is not None:
        return True
    text = os.fspath(storage_path) if storage_path is not None else _default_root()
    return "://" in text and not text.startswith("file://")


def local_root(storage_path: Any) -> str:
    text = os.fspath(storage_path) if storage_path is not None else _default_root()
    return os.path.abspath(os.path.expanduser(text.removeprefix("file://")))


def staging_dir(key: str, name: str) -> str:
    root = os.environ.get(STAGING_ENV) or os.path.join(tempfile.gettempdir(), "distcore_tune_staging")
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(root, f"{name}-{digest}")


class ExperimentStorage:
    """An experiment's directory: ``local_path`` always; ``fs``/``remote_path`` when it is mirrored."""

    def __init__(self, local_path: str, fs: Any = None, remote_path: str | None = None,
                 sync_period_s: float = SYNC_PERIOD_S) -> None:
        self.local_path = local_path
        self.fs = fs
        self.remote_path = remote_path
        self.sync_period_s = sync_period_s
        self._uploaded: dict[str, tuple[int, int]] = {}
        self._last_sync = 0.0
        self._period = sync_period_s
        self.display = remote_path or local_path  # how to name it to the user (the URI when there is one)

    @property
    def remote(self) -> bool:
        return self.fs is not None

    @classmethod
    def create(cls, storage_path: Any, storage_filesystem: Any, name: str) -> ExperimentStorage:
        if not is_remote(storage_path, storage_filesystem):
            return cls(os.path.join(local_root(storage_path), name))
        from distcore.train import storage

        text = os.fspath(storage_path) if storage_path is not None else _default_root()
        fs, root = storage.resolve(text, storage_filesystem)
        remote_path = storage.join(root, name)
        out = cls(staging_dir(f"{type(fs).__name__}:{remote_path}", name), fs, remote_path)
        if storage_filesystem is None:
            out.display = f"{text.rstrip('/')}/{name}"
        return out

    def remote_path_for(self, local: str) -> str:
        """The remote path of a file or directory under the local staging directory."""
        from distcore.train import storage

        rel = os.path.relpath(local, self.local_path)
        if rel == ".":
            return self.remote_path or ""
        return storage.join(self.remote_path or "", *rel.split(os.sep))

    # ------------------------------------------------------------------ mirroring
    def sync_up(self, force: bool = False) -> None:
        """Upload what changed since the last sync (at most every ``sync_period_s`` unless ``force``)."""
        if not self.remote:
            return
        now = time.monotonic()
        if not force and now - self._last_sync < self._period:
            return
        self._upload_changes()
        took = time.monotonic() - now
        self._last_sync = time.monotonic()
        self._period = max(self.sync_period_s, 20 * took)  # keep syncing under ~5% of the driver's time

    def _upload_changes(self) -> None:
        from distcore.train import storage

        seen: dict[str, tuple[int, int]] = {}
        later: list[tuple[str, str]] = []
        for root, dirs, files in os.walk(self.local_path):
            dirs[:] = [d for d in dirs if ".tmp" not in d]
            for name in files:
                if ".tmp" in name:
                    continue
                local = os.path.join(root, name)
                try:
                    st = os.stat(local)
                except FileNotFoundError:  # removed while we walked (a pruned checkpoint)
                    continue
                rel = os.path.relpath(local, self.local_path)
                seen[rel] = (st.st_size, st.st_mtime_ns)
                if self._uploaded.get(rel) == seen[rel]:
                    continue
                if name in ATOMIC_FILES and root == self.local_path:
                    later.append((rel, local))  # the state last: it never names files not yet uploaded
                    continue
                self._put(local, rel)
        for rel, local in later:
            try:
                with open(local, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            storage.write_bytes(self.fs, self.remote_path_for(local), data)
            self._uploaded[rel] = seen[rel]
        gone = [rel for rel in self._uploaded if rel not in seen]
        dirs_gone = set()
        for rel in gone:
            del self._uploaded[rel]
            parts = rel.split(os.sep)
            if len(parts) > 2 and parts[1].startswith("checkpoint_"):
                dirs_gone.add(os.path.join(parts[0], parts[1]))
            else:
                try:
                    self.fs.delete_file(self.remote_path_for(os.path.join(self.local_path, rel)))
                except Exception:
                    pass
        for rel in dirs_gone:  # a pruned checkpoint: drop the whole remote directory
            if not os.path.exists(os.path.join(self.local_path, rel)):
                storage.delete_dir(self.fs, self.remote_path_for(os.path.join(self.local_path, rel)))

    def _put(self, local: str, rel: str) -> None:
        from distcore.train import storage

        dest = self.remote_path_for(local)
        try:
            st = os.stat(local)
            with open(local, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        parent = dest.rsplit("/", 1)[0]
        if parent:
            storage.makedirs(self.fs, parent)
        with self.fs.open_output_stream(dest) as out:
            out.write(data)
        self._uploaded[rel] = (st.st_size, st.st_mtime_ns)

    def download(self) -> None:
        """Replace the local staging directory with the remote mirror (for a restore)."""
        if not self.remote:
            return
        from distcore.train import storage

        shutil.rmtree(self.local_path, ignore_errors=True)
        storage.download_dir(self.fs, self.remote_path, self.local_path)
        self._uploaded = {}
        for root, _, files in os.walk(self.local_path):
            for name in files:
                local = os.path.join(root, name)
                st = os.stat(local)
                self._uploaded[os.path.relpath(local, self.local_path)] = (st.st_size, st.st_mtime_ns)

    def remote_has(self, *names: str) -> bool:
        from distcore.train import storage

        return all(storage.exists(self.fs, storage.join(self.remote_path or "", n)) for n in names)


def for_restore(path: Any, storage_filesystem: Any = None) -> ExperimentStorage:
    """The storage of an existing experiment at ``path`` (a local directory, a URI, or a path
    inside ``storage_filesystem``)."""
    if not is_remote(path, storage_filesystem):
        return ExperimentStorage(local_root(path))
    from distcore.train import storage

    fs, remote_path = storage.resolve(os.fspath(path), storage_filesystem)
    remote_path = remote_path.rstrip("/") or remote_path
    name = remote_path.rsplit("/", 1)[-1] or "experiment"
    out = ExperimentStorage(staging_dir(f"{type(fs).__name__}:{remote_path}", name), fs, remote_path)
    if storage_filesystem is None:
        out.display = os.fspath(path)
    return out


__all__ = ["ExperimentStorage", "for_restore", "is_remote"]
