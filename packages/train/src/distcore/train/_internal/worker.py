"""The training worker actor and the session it installs around the training function.

Each worker runs the user's function on its own thread (so the trainer can
poll it meanwhile) with a :class:`WorkerSession` installed. ``report`` queues
metrics for the trainer and returns once the trainer's poll has taken them (a
rank killed after ``report`` returned has delivered it); a checkpoint is first
copied into the run's staging area on storage, so the function may delete its
directory right after.
"""

from __future__ import annotations

import inspect
import os
import socket
import threading
import time
import traceback
from typing import Any

import distcore
from distcore.train import session as session_mod
from distcore.train._internal import storage
from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.context import TrainContext

STAGING_DIR = ".staging"
# report() returns once the trainer has taken the report (so a rank killed right after cannot take it
# down with it); a trainer that does not poll within this long does not hold the loop up further.
REPORT_HANDOFF_TIMEOUT_S = 30.0

_TIMEOUT_MARKERS = ("timed out", "timeout", "deadline exceeded")
_COLLECTIVE_MARKERS = ("gloo", "nccl", "collective", "allreduce", "all_reduce", "barrier", "broadcast",
                       "c10d", "process group", "processgroup", "store", "distbackenderror", "diststoreerror")


def is_collective_timeout(exc: BaseException) -> bool:
    """True for the errors torch.distributed raises when a collective waits past its timeout."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(m in text for m in _TIMEOUT_MARKERS) and any(m in text for m in _COLLECTIVE_MARKERS)


def staging_name(attempt: int, seq: int) -> str:
    return f"attempt{attempt:03d}_report{seq:06d}"


class WorkerSession:
    """The Session a training worker installs: reports go to a queue the trainer polls."""

    def __init__(self, context: TrainContext, checkpoint: Checkpoint | None, shards: dict[str, Any],
                 fs: Any, run_dir: str, attempt: int, on_report: Any) -> None:
        self._context = context
        self._checkpoint = checkpoint
        self._shards = shards
        self._fs = fs
        self._run_dir = run_dir
        self._attempt = attempt
        self._on_report = on_report
        self._seq = 0

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None = None) -> None:
        seq = self._seq
        self._seq += 1
        staged = False
        if checkpoint is not None:
            dest = storage.join(self._run_dir, STAGING_DIR, staging_name(self._attempt, seq))
            with checkpoint.as_directory() as local:
                storage.upload_dir(local, self._fs, dest)
            staged = True
        self._on_report({"seq": seq, "metrics": metrics, "staged": staged, "time": time.time()})

    def get_checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def get_context(self) -> TrainContext:
        return self._context

    def get_dataset_shard(self, name: str) -> Any:
        if name not in self._shards:
            if not self._shards:
                return None
            raise KeyError(f"train.get_dataset_shard({name!r}): no dataset named {name!r}; "
                           f"the trainer was given datasets {sorted(self._shards)}")
        return self._shards[name]


class TrainWorker:
    """One member of the gang (created as an actor by the worker group)."""

    def __init__(self, env: dict[str, str] | None = None, preload: tuple[str, ...] = (),
                 default_env: dict[str, str] | None = None) -> None:
        os.environ.update(env or {})
        for key, value in (default_env or {}).items():
            os.environ.setdefault(key, value)
        if preload:  # start importing the framework while the gang is still being set up
            threading.Thread(target=_preload, args=(preload,), name="preload", daemon=True).start()
        self._cond = threading.Condition()
        self._reports: list[dict[str, Any]] = []
        self._pushed = 0  # reports queued so far
        self._taken = 0  # reports handed to the trainer's polls so far
        self._done = False
        self._error: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    def metadata(self) -> dict[str, Any]:
        ctx = distcore.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "node_ip": ctx.get_node_ip_address(), "pid": os.getpid(),
                "gpu_ids": [str(g) for g in distcore.get_gpu_ids()], "hostname": socket.gethostname()}

    def execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def start_training(self, fn: Any, config: dict[str, Any] | None, context: TrainContext,
                       checkpoint: Checkpoint | None, shards: dict[str, Any], fs: Any, run_dir: str,
                       attempt: int) -> None:
        if self._thread is not None:
            raise RuntimeError("this worker already runs a training function")
        sess = WorkerSession(context, checkpoint, shards, fs, run_dir, attempt, self._push)
        takes_config = _takes_config(fn)

        def run() -> None:
            session_mod.set_session(sess)
            try:
                fn(config or {}) if takes_config else fn()
            except BaseException as exc:  # noqa: BLE001 - everything the user raised goes back
                self._finish({"type": type(exc).__name__, "message": str(exc),
                              "traceback": traceback.format_exc(),
                              "collective_timeout": is_collective_timeout(exc),
                              "exception": _portable(exc)})
                return
            finally:
                session_mod.set_session(None)
            self._finish(None)

        self._started_at = time.time()
        self._thread = threading.Thread(target=run, name="train-loop", daemon=True)
        self._thread.start()

    def _push(self, report: dict[str, Any]) -> None:
        with self._cond:
            self._reports.append(report)
            self._pushed += 1
            index = self._pushed
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._taken >= index, timeout=REPORT_HANDOFF_TIMEOUT_S)

    def _finish(self, error: dict[str, Any] | None) -> None:
        with self._cond:
            self._done = True
            self._error = error
            self._cond.notify_all()

    def poll(self, timeout: float) -> dict[str, Any]:
        """New reports, and whether the function finished (with its error, if it raised)."""
        with self._cond:
            self._cond.wait_for(lambda: self._reports or self._done, timeout=timeout)
            reports, self._reports = self._reports, []
            self._taken += len(reports)
            self._cond.notify_all()
            return {"reports": reports, "done": self._done and not self._reports, "error": self._error}


def _portable(exc: BaseException) -> BaseException | None:
    """``exc`` when it survives pickling (so the driver's callbacks get it as raised), else None."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - unpicklable: the driver rebuilds it from type and message
        return None
    return exc.with_traceback(None)


def _preload(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the real import reports the problem
            return


def _takes_config(fn: Any) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        return True
    if len(params) > 1 and all(p.default is p.empty for p in params[1:]):
        raise ValueError(f"train_loop_per_worker must take zero arguments or one (the config dict); "
                         f"{getattr(fn, '__name__', fn)} takes {len(params)}")
    return bool(params)
