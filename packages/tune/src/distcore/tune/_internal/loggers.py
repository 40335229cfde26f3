"""Per-trial files: params.json, result.json (one JSON line per result),
progress.csv, and TensorBoard events only when a writer is installed."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from typing import IO, Any

from distcore.tune._internal.variants import flatten

PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
EXCLUDE_FROM_CSV = ("config",)


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except Exception:
            pass
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _tensorboard_writer_cls() -> Any:
    if importlib.util.find_spec("tensorboardX") is not None:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    if importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("torch") is not None:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    return None


class _TrialFiles:
    def __init__(self, path: str, tb_cls: Any) -> None:
        self.result: IO[str] = open(os.path.join(path, RESULT_FILE), "a")
        self.progress: IO[str] = open(os.path.join(path, PROGRESS_FILE), "a", newline="")
        self.csv: csv.DictWriter[str] | None = None
        self.fresh_csv = os.path.getsize(os.path.join(path, PROGRESS_FILE)) == 0
        self.tb = tb_cls(logdir=path) if tb_cls is not None and _takes_logdir(tb_cls) else (
            tb_cls(log_dir=path) if tb_cls is not None else None)

    def close(self) -> None:
        self.result.close()
        self.progress.close()
        if self.tb is not None:
            self.tb.close()


def _takes_logdir(cls: Any) -> bool:
    import inspect

    try:
        return "logdir" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


class TrialLogger:
    """Writes every trial's files; file handles stay open only while a trial runs."""

    def __init__(self, tensorboard: bool | None = None) -> None:
        self._open: dict[str, _TrialFiles] = {}
        self._tb_cls = _tensorboard_writer_cls() if tensorboard is not False else None

    def on_trial_start(self, trial: Any) -> None:
        os.makedirs(trial.local_path, exist_ok=True)
        with open(os.path.join(trial.local_path, PARAMS_FILE), "w") as f:
            f.write(dumps(trial.config))

    def _files(self, trial: Any) -> _TrialFiles:
        files = self._open.get(trial.trial_id)
        if files is None:
            os.makedirs(trial.local_path, exist_ok=True)
            files = self._open[trial.trial_id] = _TrialFiles(trial.local_path, self._tb_cls)
        return files

    def on_results(self, trial: Any, results: list[dict[str, Any]]) -> None:
        files = self._files(trial)
        lines = []
        for result in results:
            row = dict(result)
            row["config"] = trial.config
            lines.append(dumps(row))
        files.result.write("\n".join(lines) + "\n")
        for result in results:
            flat = flatten({k: v for k, v in result.items() if k not in EXCLUDE_FROM_CSV})
            if files.csv is None:
                fields = list(flat)
                if not files.fresh_csv:
                    with open(os.path.join(trial.local_path, PROGRESS_FILE), newline="") as f:
                        header = next(csv.reader(f), None)
                    fields = header or fields
                files.csv = csv.DictWriter(files.progress, fieldnames=fields, extrasaction="ignore")
                if files.fresh_csv:
                    files.csv.writeheader()
            files.csv.writerow(flat)
            if files.tb is not None:
                step = int(result.get("training_iteration", 0))
                for key, value in flat.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                        files.tb.add_scalar(f"tune/{key}", value, global_step=step)
        files.result.flush()
        files.progress.flush()

    def on_trial_end(self, trial: Any) -> None:
        files = self._open.pop(trial.trial_id, None)
        if files is not None:
            files.close()

    def close(self) -> None:
        for files in self._open.values():
            files.close()
        self._open.clear()


def read_results(path: str) -> list[dict[str, Any]]:
    """The result rows of one trial directory (result.json)."""
    out = []
    file = os.path.join(path, RESULT_FILE)
    if not os.path.exists(file):
        return out
    with open(file) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
    return out
