"""Per-trial files: params.json, result.json (one JSON line per result),
progress.csv, and TensorBoard events only when a writer is installed."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import queue
import threading
from typing import Any

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


_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _make_dir(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def write_file(path: str, text: str) -> None:
    """Replace ``path``'s contents with ``text`` (three system calls)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, text.encode())
    finally:
        os.close(fd)


class _TrialFiles:
    """A running trial's result.json and progress.csv (raw descriptors in append mode: one
    ``write`` per batch of results, no buffers to flush) and its event file."""

    def __init__(self, path: str, tb_cls: Any) -> None:
        self.path = path
        self.result = os.open(os.path.join(path, RESULT_FILE), _APPEND | os.O_CREAT, 0o644)
        csv_path = os.path.join(path, PROGRESS_FILE)
        try:
            self.progress = os.open(csv_path, _APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            self.fresh_csv = True
        except FileExistsError:  # a resumed trial appends under the header it has
            self.progress = os.open(csv_path, _APPEND)
            self.fresh_csv = os.fstat(self.progress).st_size == 0
        self.fields: list[str] | None = None
        self.tb = tb_cls(path) if tb_cls is not None else None

    def csv_fields(self, first_row: dict[str, Any]) -> tuple[list[str], bool]:
        """The columns (from the file's header when it has one) and whether to write a header."""
        if self.fields is None:
            if self.fresh_csv:
                self.fields = list(first_row)
                return self.fields, True
            with open(os.path.join(self.path, PROGRESS_FILE), newline="") as f:
                header = next(csv.reader(f), None)
            self.fields = header or list(first_row)
            return self.fields, not header
        return self.fields, False

    def close(self) -> None:
        os.close(self.result)
        os.close(self.progress)
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
        _make_dir(path)
        write_file(os.path.join(path, PARAMS_FILE), dumps(config))

    def _files(self, trial_id: str, path: str) -> _TrialFiles:
        files = self._open.get(trial_id)
        if files is None:
            try:
                files = _TrialFiles(path, self._tb_cls)
            except FileNotFoundError:  # results before any start (e.g. restored trials)
                _make_dir(path)
                files = _TrialFiles(path, self._tb_cls)
            self._open[trial_id] = files
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
        _write_all(files.result, ("\n".join(lines) + "\n").encode())
        out = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for result in results:
            flat = flatten({k: v for k, v in result.items() if k not in EXCLUDE_FROM_CSV})
            if writer is None:
                fields, header = files.csv_fields(flat)
                writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
                if header:
                    writer.writeheader()
            writer.writerow(flat)
            if files.tb is not None:
                step = int(result.get("training_iteration", 0))
                files.tb.add_scalars({f"tune/{key}": value for key, value in flat.items()
                                      if isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value)}, step)
        _write_all(files.progress, out.getvalue().encode())
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
