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
import time
from typing import Any

from distcore.tune._internal.nested import flatten

logger = logging.getLogger("distcore.tune")

BATCH_S = 0.05
# held writes (a trial actor's) start this long after their release: the reply being sent then
# gets the GIL first
RELEASE_SETTLE_S = 0.0003
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


def make_dir(path: str) -> None:
    """``mkdir -p`` in one system call when the parent exists."""
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
        self.result_path = os.path.join(path, RESULT_FILE)
        self.result = os.open(self.result_path, _APPEND | os.O_CREAT, 0o644)
        self.progress_path = os.path.join(path, PROGRESS_FILE)
        try:
            self.progress = os.open(self.progress_path, _APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            self.fresh_csv = True
        except FileExistsError:  # a resumed trial appends under the header it has
            self.progress = os.open(self.progress_path, _APPEND)
            self.fresh_csv = os.fstat(self.progress).st_size == 0
        self.fields: list[str] | None = None
        self.tb = tb_cls(path) if tb_cls is not None else None

    def ends(self) -> tuple[int, int, int]:
        """Where each file ends now: result.json, progress.csv, the event file (its pending
        records included)."""
        return (os.fstat(self.result).st_size, os.fstat(self.progress).st_size,
                self.tb.position() if self.tb is not None else 0)

    def paths(self) -> tuple[str, str, str | None]:
        return self.result_path, self.progress_path, self.tb.path if self.tb is not None else None

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
    holds up the driver loop; file handles stay open only while a trial runs.

    The driver has one; so has each trial actor on the driver's node, which writes its own
    trials' files (``track=True``: it remembers where each result of the current run ends in
    each file, so that :meth:`trim` can cut the results the driver did not accept)."""

    def __init__(self, tensorboard: bool | None = None, track: bool = False, hold: bool = False) -> None:
        self._open: dict[str, _TrialFiles] = {}
        # track: trial id -> [index of the first mark, marks]; mark k = the files' ends after
        # the run's k-th result (mark 0: where the run began)
        self._marks: dict[str, list[Any]] | None = {} if track else None
        self._paths: dict[str, tuple[str, str, str | None]] = {}
        self._tb_cls = _tensorboard_writer_cls() if tensorboard is not False else None
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._wake = threading.Event()  # cuts the writer's batching pause short (close, flush)
        self._errors = 0
        # hold: writes wait in ``_held`` until :meth:`release` (a trial actor releases them as a
        # reply leaves, so the writer thread never takes the GIL from a call being answered)
        self._held: list[tuple[str, tuple[Any, ...]]] | None = [] if hold else None
        self._held_lock = threading.Lock()

    @property
    def tensorboard(self) -> bool:
        """Whether event files are written."""
        return self._tb_cls is not None

    def _submit(self, op: str, *args: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tune-trial-files", daemon=True)
            self._thread.start()
        if self._held is not None:
            with self._held_lock:
                self._held.append((op, args))
            return
        self._queue.put((op, args))

    def release(self) -> None:
        """Hand the held writes to the writer thread (``hold=True``)."""
        if not self._held:
            return
        with self._held_lock:  # (held while queueing: two releases never interleave)
            held, self._held = self._held, []
            for item in held:
                self._queue.put(item)

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            if self._held is not None:
                time.sleep(RELEASE_SETTLE_S)  # (GIL released): the reply that released them leaves first
            while True:  # take everything queued: one wake-up per batch, not per write
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in _coalesce(items):
                if item is None:
                    return
                op, args = item
                try:
                    getattr(self, f"_do_{op}")(*args)
                except Exception:  # a full disk must not kill the experiment: count and go on
                    self._errors += 1
                    logger.exception("tune: writing trial files failed (%s)", op)
            # let writes pile up a little so this thread does not contend with the driver loop per
            # trial (held writes come in batches already: no pause)
            if self._held is None and self._wake.wait(BATCH_S):
                self._wake.clear()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every queued write is on disk; False if that took over ``timeout``."""
        if self._thread is None:
            return True
        self.release()
        done = threading.Event()
        self._queue.put(("marker", (done,)))
        self._wake.set()
        return done.wait(timeout)

    def _do_marker(self, event: threading.Event) -> None:
        event.set()

    def on_trial_start(self, trial: Any) -> None:
        self._submit("start", trial.local_path, trial.config)  # configs are replaced, never mutated

    def _do_start(self, path: str, config: dict[str, Any]) -> None:
        make_dir(path)
        write_file(os.path.join(path, PARAMS_FILE), dumps(config))

    def _files(self, trial_id: str, path: str) -> _TrialFiles:
        files = self._open.get(trial_id)
        if files is None:
            try:
                files = _TrialFiles(path, self._tb_cls)
            except FileNotFoundError:  # results before any start (e.g. restored trials)
                make_dir(path)
                files = _TrialFiles(path, self._tb_cls)
            self._open[trial_id] = files
        return files

    def on_results(self, trial: Any, results: list[dict[str, Any]]) -> None:
        self.write_results(trial.trial_id, trial.local_path, trial.config, [dict(r) for r in results])

    def write_results(self, trial_id: str, path: str, config: dict[str, Any], results: list[dict[str, Any]]) -> None:
        """Queue ``results`` (a list the writer may keep: not changed afterwards) for the files."""
        self._submit("results", trial_id, path, config, results)

    def _do_results(self, trial_id: str, path: str, config: dict[str, Any], results: list[dict[str, Any]]) -> None:
        files = self._files(trial_id, path)
        marks = self._marks.get(trial_id) if self._marks is not None else None
        lines = []
        for result in results:
            row = dict(result)
            row["config"] = config
            lines.append((dumps(row) + "\n").encode())
        out = io.StringIO()
        rows: list[int] = []  # where each result's CSV row ends (characters)
        writer: csv.DictWriter[str] | None = None
        tb_ends: list[int] = []
        for result in results:
            flat = flatten({k: v for k, v in result.items() if k not in EXCLUDE_FROM_CSV})
            if writer is None:
                fields, header = files.csv_fields(flat)
                writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
                if header:
                    writer.writeheader()
            writer.writerow(flat)
            rows.append(out.tell())
            if files.tb is not None:
                step = int(result.get("training_iteration", 0))
                files.tb.add_scalars({f"tune/{key}": value for key, value in flat.items()
                                      if isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value)}, step)
                tb_ends.append(files.tb.position())
        text = out.getvalue()
        if marks is not None:
            result_end, progress_end, _ = marks[1][-1]
            start = 0
            for i, line in enumerate(lines):
                result_end += len(line)
                progress_end += len(text[start:rows[i]].encode())
                start = rows[i]
                marks[1].append((result_end, progress_end, tb_ends[i] if tb_ends else 0))
        _write_all(files.result, b"".join(lines))
        _write_all(files.progress, text.encode())
        if files.tb is not None:
            files.tb.flush()

    # ------------------------------------------------------------ runs (track=True)
    def begin_run(self, trial_id: str, path: str, config: dict[str, Any] | None) -> None:
        """A run of ``trial_id`` starts here: its files open (``params.json`` written when
        ``config`` is given) and the marks of earlier runs are forgotten."""
        self._submit("begin", trial_id, path, config)

    def _do_begin(self, trial_id: str, path: str, config: dict[str, Any] | None) -> None:
        assert self._marks is not None
        for other in [t for t in self._marks if t != trial_id]:
            del self._marks[other]
            self._paths.pop(other, None)
        if config is not None:
            self._do_start(path, config)
        files = self._files(trial_id, path)
        self._marks[trial_id] = [0, [files.ends()]]
        self._paths[trial_id] = files.paths()

    def ack(self, trial_id: str, accepted: int) -> None:
        """The driver accepted the run's first ``accepted`` results: their marks can go."""
        self._submit("ack", trial_id, accepted)

    def _do_ack(self, trial_id: str, accepted: int) -> None:
        entry = self._marks.get(trial_id) if self._marks is not None else None
        if entry is not None and accepted > entry[0]:
            drop = min(accepted - entry[0], len(entry[1]) - 1)
            del entry[1][:drop]
            entry[0] += drop

    def trim(self, trial_id: str, accepted: int) -> None:
        """Cut the run's results after its first ``accepted`` from the files (the driver
        dropped them: they ran ahead of a stop decision)."""
        self._submit("trim", trial_id, accepted)

    def _do_trim(self, trial_id: str, accepted: int) -> None:
        entry = self._marks.get(trial_id) if self._marks is not None else None
        if entry is None:
            return
        first, marks = entry
        keep = accepted - first
        if keep < 0 or keep + 1 >= len(marks):
            return
        files = self._open.get(trial_id)
        result_path, progress_path, tb_path = self._paths[trial_id]
        result_end, progress_end, tb_end = marks[keep]
        os.truncate(result_path, result_end)
        os.truncate(progress_path, progress_end)
        if files is not None and files.tb is not None:
            files.tb.truncate(tb_end)
        elif tb_path is not None:
            os.truncate(tb_path, tb_end)
        del marks[keep + 1:]

    def on_trial_end(self, trial: Any) -> None:
        self.end_run(trial.trial_id)

    def end_run(self, trial_id: str) -> None:
        """Close the trial's files (they open again if more results come)."""
        self._submit("end", trial_id)

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


def _coalesce(items: list[Any]) -> list[Any]:
    """Consecutive ``results`` ops of one trial merged into one (one write per file)."""
    out: list[Any] = []
    for item in items:
        if item is not None and item[0] == "results" and out and out[-1] is not None \
                and out[-1][0] == "results" and out[-1][1][0] == item[1][0]:
            out[-1][1][3].extend(item[1][3])  # (each op's list is its own copy)
        else:
            out.append(item)
    return out


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
