"""Per-trial files: params.json, result.json (one JSON line per result),
progress.csv, and TensorBoard events only when a writer is installed."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import queue
import threading
from typing import IO, Any

from distcore.tune._internal.variants import flatten

logger = logging.getLogger("distcore.tune")

BATCH_S = 0.05
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
    """The event-file writer, when a TensorBoard library is installed to read its files (else None)."""
    from distcore.tune._internal.tb_events import EventFileWriter, writer_available

    return EventFileWriter if writer_available() else None


class _TrialFiles:
    def __init__(self, path: str, tb_cls: Any) -> None:
        self.result: IO[str] = open(os.path.join(path, RESULT_FILE), "a")
        self.progress: IO[str] = open(os.path.join(path, PROGRESS_FILE), "a", newline="")
        self.csv: csv.DictWriter[str] | None = None
        self.fresh_csv = os.path.getsize(os.path.join(path, PROGRESS_FILE)) == 0
        self.tb = tb_cls(path) if tb_cls is not None else None

    def close(self) -> None:
        self.result.close()
        self.progress.close()
        if self.tb is not None:
            self.tb.close()


class TrialLogger:
    """Writes every trial's files from a background thread, so file latency never
    holds up the driver loop; file handles stay open only while a trial runs."""

    def __init__(self, tensorboard: bool | None = None) -> None:
        self._open: dict[str, _TrialFiles] = {}
        self._tb_cls = _tensorboard_writer_cls() if tensorboard is not False else None
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._wake = threading.Event()  # cuts the writer's batching pause short (close, flush)
        self._errors = 0

    def _submit(self, op: str, *args: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tune-trial-files", daemon=True)
            self._thread.start()
        self._queue.put((op, args))

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:  # take everything queued: one wake-up per batch, not per write
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if item is None:
                    return
                op, args = item
                try:
                    getattr(self, f"_do_{op}")(*args)
                except Exception:  # a full disk must not kill the experiment: count and go on
                    self._errors += 1
                    logger.exception("tune: writing trial files failed (%s)", op)
            # let writes pile up a little so this thread does not contend with the driver loop per trial
            if self._wake.wait(BATCH_S):
                self._wake.clear()

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued write is on disk."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(("marker", (done,)))
        self._wake.set()
        done.wait(timeout)

    def _do_marker(self, event: threading.Event) -> None:
        event.set()

    def on_trial_start(self, trial: Any) -> None:
        self._submit("start", trial.local_path, trial.config)  # configs are replaced, never mutated

    def _do_start(self, path: str, config: dict[str, Any]) -> None:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, PARAMS_FILE), "w") as f:
            f.write(dumps(config))

    def _files(self, trial_id: str, path: str) -> _TrialFiles:
        files = self._open.get(trial_id)
        if files is None:
            os.makedirs(path, exist_ok=True)
            files = self._open[trial_id] = _TrialFiles(path, self._tb_cls)
        return files

    def on_results(self, trial: Any, results: list[dict[str, Any]]) -> None:
        self._submit("results", trial.trial_id, trial.local_path, trial.config, [dict(r) for r in results])

    def _do_results(self, trial_id: str, path: str, config: dict[str, Any], results: list[dict[str, Any]]) -> None:
        files = self._files(trial_id, path)
        lines = []
        for result in results:
            row = dict(result)
            row["config"] = config
            lines.append(dumps(row))
        files.result.write("\n".join(lines) + "\n")
        for result in results:
            flat = flatten({k: v for k, v in result.items() if k not in EXCLUDE_FROM_CSV})
            if files.csv is None:
                fields = list(flat)
                if not files.fresh_csv:
                    with open(os.path.join(path, PROGRESS_FILE), newline="") as f:
                        header = next(csv.reader(f), None)
                    fields = header or fields
                files.csv = csv.DictWriter(files.progress, fieldnames=fields, extrasaction="ignore")
                if files.fresh_csv:
                    files.csv.writeheader()
            files.csv.writerow(flat)
            if files.tb is not None:
                step = int(result.get("training_iteration", 0))
                files.tb.add_scalars({f"tune/{key}": value for key, value in flat.items()
                                      if isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value)}, step)
        files.result.flush()
        files.progress.flush()
        if files.tb is not None:
            files.tb.flush()

    def on_trial_end(self, trial: Any) -> None:
        self._submit("end", trial.trial_id)

    def _do_end(self, trial_id: str) -> None:
        files = self._open.pop(trial_id, None)
        if files is not None:
            files.close()

    def close(self, wait: bool = True) -> None:
        """Write what is queued, close every file, stop the writer thread. ``wait=False`` only
        asks the writer to finish (it writes the rest meanwhile); a later ``close()`` waits."""
        if self._thread is not None and not self._closing:
            self._closing = True
            self._queue.put(None)
            self._wake.set()
        if not wait:
            return
        if self._thread is not None:
            self._thread.join(120)
            self._thread = None
        self._closing = False
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
