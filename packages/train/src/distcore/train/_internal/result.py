"""``Result``: what a finished run left behind (metrics, checkpoints, errors, its directory)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from distcore.train._internal import storage
from distcore.train._internal.checkpoint import Checkpoint

if TYPE_CHECKING:
    import pandas as pd

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
CHECKPOINT_STATE_FILE = "checkpoint_state.json"
PARAMS_FILE = "params.json"


@dataclass
class Result:
    """The outcome of ``Trainer.fit()`` (and of each tune trial).

    ``metrics``: the last reported metrics (with or without a checkpoint);
    ``checkpoint``: the latest persisted checkpoint; ``best_checkpoints``:
    ``(checkpoint, metrics)`` pairs kept by ``CheckpointConfig``, best first;
    ``metrics_dataframe``: one row per report; ``error``: why the run failed
    (None when it succeeded); ``path``: the run's directory; ``failures``: the
    failures the run survived by restarting (one line each).
    """

    metrics: dict[str, Any] | None
    checkpoint: Checkpoint | None
    error: BaseException | None = None
    path: str | None = None
    metrics_dataframe: pd.DataFrame | None = None
    best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    filesystem: pafs.FileSystem | None = None
    failures: list[str] = field(default_factory=list)

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint whose reported ``metric`` is best (``mode`` "max" or "min")."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        scored = [(m[metric], c) for c, m in self.best_checkpoints if isinstance(m.get(metric), int | float)]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[0])[1]

    def __repr__(self) -> str:
        shown = {k: v for k, v in (self.metrics or {}).items() if not k.startswith("_")}
        return (f"Result(metrics={shown}, path={self.path!r}, checkpoint={self.checkpoint}"
                + (f", error={self.error!r}" if self.error is not None else "") + ")")

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None) -> Result:
        """Rebuild the Result of a run from its directory (``result.json`` and its checkpoints)."""
        fs, run_dir = storage.resolve(path, filesystem)
        result_file = storage.join(run_dir, RESULT_FILE)
        if not storage.exists(fs, result_file):
            raise FileNotFoundError(f"{os.fspath(path)!r} holds no {RESULT_FILE}: is it a run directory?")
        rows = read_result_rows(fs, run_dir)
        ckpt_state = read_checkpoint_state(fs, run_dir)
        best = [(Checkpoint(storage.join(run_dir, name), fs), metrics) for name, metrics in ckpt_state.get("kept", [])]
        latest = ckpt_state.get("latest")
        config = None
        params = storage.join(run_dir, PARAMS_FILE)
        if storage.exists(fs, params):
            config = json.loads(storage.read_bytes(fs, params).decode())
        return cls(
            metrics=rows[-1] if rows else None,
            checkpoint=Checkpoint(storage.join(run_dir, latest), fs) if latest else None,
            error=None,
            path=run_dir,
            metrics_dataframe=rows_to_dataframe(rows),
            best_checkpoints=best,
            config=config,
            filesystem=fs,
        )


def read_result_rows(fs: pafs.FileSystem, run_dir: str) -> list[dict[str, Any]]:
    path = storage.join(run_dir, RESULT_FILE)
    if not storage.exists(fs, path):
        return []
    rows = []
    for line in storage.read_bytes(fs, path).decode().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def read_checkpoint_state(fs: pafs.FileSystem, run_dir: str) -> dict[str, Any]:
    path = storage.join(run_dir, CHECKPOINT_STATE_FILE)
    if not storage.exists(fs, path):
        return {}
    return json.loads(storage.read_bytes(fs, path).decode())


def rows_to_dataframe(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)
