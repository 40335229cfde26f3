"""The files of a run directory: result.json, progress.csv, checkpoint state, the trainer for restore."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from distcore.train._internal import storage
from distcore.train._internal.result import (
    CHECKPOINT_STATE_FILE,
    PARAMS_FILE,
    PROGRESS_FILE,
    RESULT_FILE,
)

TRAINER_FILE = "trainer.pkl"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


class RunFiles:
    """Appends one row per report to result.json (JSON lines) and progress.csv."""

    def __init__(self, fs: Any, run_dir: str) -> None:
        self.fs = fs
        self.run_dir = run_dir
        self._columns: list[str] | None = None
        storage.makedirs(fs, run_dir)

    def path(self, name: str) -> str:
        return storage.join(self.run_dir, name)

    def append_row(self, row: dict[str, Any], all_rows: list[dict[str, Any]]) -> None:
        clean = _jsonable(row)
        storage.append_bytes(self.fs, self.path(RESULT_FILE), (json.dumps(clean) + "\n").encode())
        flat = {k: v for k, v in clean.items() if not isinstance(v, dict | list)}
        if self._columns is None or any(k not in self._columns for k in flat):
            self._columns = list(dict.fromkeys(k for r in all_rows for k in _jsonable(r)
                                               if not isinstance(r.get(k), dict | list)))
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self._columns, extrasaction="ignore")
            writer.writeheader()
            for r in all_rows:
                writer.writerow(_jsonable(r))
            storage.write_bytes(self.fs, self.path(PROGRESS_FILE), buf.getvalue().encode())
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=self._columns, extrasaction="ignore").writerow(flat)
        storage.append_bytes(self.fs, self.path(PROGRESS_FILE), buf.getvalue().encode())

    def write_checkpoint_state(self, state: dict[str, Any]) -> None:
        storage.write_bytes(self.fs, self.path(CHECKPOINT_STATE_FILE), json.dumps(_jsonable(state)).encode())

    def write_params(self, config: dict[str, Any] | None) -> None:
        storage.write_bytes(self.fs, self.path(PARAMS_FILE), json.dumps(_jsonable(config or {})).encode())

    def write_trainer(self, data: bytes) -> None:
        storage.write_bytes(self.fs, self.path(TRAINER_FILE), data)
