"""The trainer's control loop: start the gang, drive it, persist reports, survive failures.

It runs in the process that calls ``fit()``. Each attempt places the gang,
runs the backend's setup, starts the training function on every worker and
polls them. Reports are taken in rounds (report number k of every rank):
rank 0's metrics become a row of ``result.json``/``progress.csv``; a
checkpoint staged by any rank in that round is renamed into
``checkpoint_XXXXXX`` (atomic), ranked by the checkpoint manager and old ones
deleted. A worker that dies or raises ends the attempt; the gang is torn down
and, within ``FailureConfig.max_failures``, started again from the latest
checkpoint.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import distcore
from distcore.exceptions import DistcoreError
from distcore.train import session as session_mod
from distcore.train._internal import storage
from distcore.train._internal.callbacks import (
    CallbackError,
    CallbackRunner,
    RunTrial,
    TrainRunContext,
)
from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.checkpoint_manager import CheckpointManager, checkpoint_dir_name
from distcore.train._internal.config import RunConfig, ScalingConfig, should_stop
from distcore.train._internal.context import TrainContext
from distcore.train._internal.errors import (
    CollectiveTimeoutError,
    InsufficientResourcesError,
    TrainingFailedError,
    WorkerGroupError,
)
from distcore.train._internal.result import (
    Result,
    read_checkpoint_state,
    read_result_rows,
    rows_to_dataframe,
)
from distcore.train._internal.run_files import RunFiles
from distcore.train._internal.storage import StorageContext
from distcore.train._internal.worker import STAGING_DIR, staging_name
from distcore.train._internal.worker_group import WorkerGroup, leave_room_for_data

logger = logging.getLogger("distcore.train")

POLL_S = 5.0  # a long poll: it returns at once on a report or the end, so this only bounds idle wake-ups
ERROR_GRACE_S = 3.0
PROGRESS_EVERY_S = 1.0


@dataclass
class RunSpec:
    """Everything a run needs (what ``restore`` re-reads from ``trainer.pkl``, datasets aside)."""

    train_fn: Any
    train_loop_config: dict[str, Any] | None
    scaling_config: ScalingConfig
    run_config: RunConfig
    backend_config: Any
    datasets: dict[str, Any] = field(default_factory=dict)
    dataset_config: Any = None
    resume_from_checkpoint: Checkpoint | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    trainer_name: str = "DataParallelTrainer"


class _AttemptFailed(Exception):
    def __init__(self, error: BaseException, worker_exceptions: dict[int, BaseException] | None = None,
                 dropped: str = "") -> None:
        super().__init__(str(error))
        self.error = error
        # world rank -> what it raised (or the error its death gave), for after_exception callbacks
        self.worker_exceptions = worker_exceptions if worker_exceptions is not None else {}
        # the reports of the failed attempt that could not be delivered (the resumed run redoes them)
        self.dropped = dropped


class Controller:
    def __init__(self, spec: RunSpec, storage_ctx: StorageContext, restoring: bool) -> None:
        self.spec = spec
        self.storage_ctx = storage_ctx
        self.fs = storage_ctx.storage_filesystem
        self.run_dir = storage_ctx.experiment_fs_path
        self.files = RunFiles(self.fs, self.run_dir)
        cfg = spec.run_config.checkpoint_config
        assert cfg is not None
        self.rows: list[dict[str, Any]] = []
        self.manager = CheckpointManager(cfg)
        self.verbose = spec.run_config.verbose or 0
        if restoring:
            self.rows = read_result_rows(self.fs, self.run_dir)
            state = read_checkpoint_state(self.fs, self.run_dir)
            if state:
                self.manager = CheckpointManager.from_state(cfg, state)
            latest = self.manager.latest.dir_name if self.manager.latest else "no checkpoint"
            self._say(f"continuing the run in {self.run_dir} after {len(self.rows)} iteration(s) from {latest}")
        self.failures: list[str] = []
        self._last_print = 0.0
        self._start = time.time()
        self._time_offset = float(self.rows[-1].get("time_total_s", 0.0)) if self.rows else 0.0
        self.outer = session_mod.get_session()
        name = storage_ctx.experiment_dir_name
        self.callbacks = CallbackRunner(
            spec.run_config.callbacks,
            TrainRunContext(run_config=spec.run_config, train_loop_config=spec.train_loop_config,
                            scaling_config=spec.scaling_config, backend_config=spec.backend_config,
                            name=name, path=self.run_dir),
            RunTrial(trial_id=name, trial_name=name, config=dict(spec.train_loop_config or {}), path=self.run_dir),
        )

    # --- output -------------------------------------------------------------------

    def _say(self, line: str, level: int = 1) -> None:
        logger.info(line)
        if self.verbose >= level:
            print(f"[train] {line}", file=sys.stdout, flush=True)

    # --- the run ------------------------------------------------------------------

    def latest_checkpoint(self) -> Checkpoint | None:
        if self.manager.latest is not None:
            return Checkpoint(storage.join(self.run_dir, self.manager.latest.dir_name), self.fs)
        return self.spec.resume_from_checkpoint

    def run(self) -> Result:
        max_failures = self.spec.run_config.failure_config.max_failures  # type: ignore[union-attr]
        attempt = 0
        error: BaseException | None = None
        try:
            self.callbacks.start(self.spec.run_config.stop)
            while True:
                try:
                    self._attempt(attempt)
                    break
                except _AttemptFailed as failed:
                    first_line = str(failed.error).splitlines()[0]
                    self.failures.append(first_line)
                    n = len(self.failures)
                    retry = max_failures == -1 or n <= max_failures
                    self.callbacks.attempt_failed(failed.worker_exceptions, will_retry=retry)
                    if not retry:
                        error = failed.error
                        self._say(f"run failed after {n} failure(s) (max_failures={max_failures}): {first_line}",
                                  level=0)
                        break
                    ckpt = self.latest_checkpoint()
                    self._say(f"worker group failed (failure {n} of max "
                              f"{'inf' if max_failures == -1 else max_failures}): {first_line}; restarting from "
                              f"{ckpt.path.rsplit('/', 1)[-1] if ckpt else 'the start'}"
                              + (f" ({failed.dropped}, which the resumed run redoes)" if failed.dropped else ""),
                              level=0)
                    attempt += 1
        except CallbackError as exc:
            error = exc
            self._say(f"run ended: {exc}", level=0)
        self._cleanup_staging()
        result = self._result(error)
        if error is not None:
            self.callbacks.error(error)
            raise TrainingFailedError(
                f"{self.spec.trainer_name} failed: {error}\n(run directory: {self.run_dir}; continue it "
                f"with {self.spec.trainer_name}.restore({self.run_dir!r}))", result) from error
        try:
            self.callbacks.complete()
        except CallbackError as exc:
            self.callbacks.error(exc)
            raise TrainingFailedError(f"{self.spec.trainer_name} failed: {exc}", result) from exc
        return result

    def _result(self, error: BaseException | None) -> Result:
        best = [(Checkpoint(storage.join(self.run_dir, t.dir_name), self.fs), dict(t.metrics))
                for t in self.manager.best_first()]
        return Result(
            metrics=dict(self.rows[-1]) if self.rows else None,
            checkpoint=self.latest_checkpoint() if self.manager.latest is not None else None,
            error=error,
            path=self.run_dir,
            metrics_dataframe=rows_to_dataframe(self.rows),
            best_checkpoints=best,
            config=self.spec.train_loop_config,
            filesystem=self.fs,
            failures=list(self.failures),
        )

    def _attempt(self, attempt: int) -> None:
        spec = self.spec
        group: WorkerGroup | None = None
        finished = False
        t0 = time.monotonic()
        backend = spec.backend_config.backend_cls()
        scaling = spec.scaling_config
        if spec.datasets:
            scaling, note = leave_room_for_data(scaling)
            if note and attempt == 0:
                self._say(note)
        try:
            try:
                group = WorkerGroup(scaling, preload=getattr(backend, "preload_modules", ()))
            except InsufficientResourcesError:
                raise
            except DistcoreError as exc:
                raise _AttemptFailed(WorkerGroupError(f"starting the worker group failed: {exc}")) from exc
            n = len(group)
            t_placed = time.monotonic()
            if attempt == 0:
                nodes = len({w.node_id for w in group.workers})
                self._say(f"started {n} workers on {nodes} node(s); run directory {self.run_dir}")
            try:
                backend.on_start(group, spec.backend_config)
                t_backend = time.monotonic()
                shards = self._dataset_shards(n)
                backend.on_training_start(group, spec.backend_config)
                ckpt = self.latest_checkpoint()
                refs = []
                for w in group.workers:
                    ctx = TrainContext(
                        world_rank=w.world_rank, local_rank=w.local_rank, node_rank=w.node_rank,
                        world_size=n, local_world_size=w.local_world_size,
                        experiment_name=self.storage_ctx.experiment_dir_name,
                        trial_name=self.storage_ctx.experiment_dir_name, trial_id=None,
                        trial_dir=self.run_dir, storage=self.storage_ctx, metadata=dict(spec.metadata),
                    )
                    refs.append(w.actor.start_training.remote(
                        spec.train_fn, spec.train_loop_config, ctx, ckpt, shards[w.world_rank],
                        self.fs, self.run_dir, attempt))
                distcore.get(refs, timeout=120)
            except (DistcoreError, TimeoutError) as exc:
                raise _AttemptFailed(self._describe_start_failure(group, exc)) from exc
            t_started = time.monotonic()
            # where start-up time goes (tools/bench/train_bench.py reads this line)
            self._say(f"start-up of attempt {attempt}: workers placed and up {t_placed - t0:.2f} s, "
                      f"{type(backend).__name__} set up {t_backend - t_placed:.2f} s, "
                      f"training function running {t_started - t_backend:.2f} s", level=2)
            self._drive(group, attempt)
            finished = True
        finally:
            if group is not None:
                try:
                    # after a failure the workers are ended outright: a rank stuck in a
                    # collective would hold a graceful shutdown until its timeout
                    if group.workers and finished:
                        backend.on_shutdown(group, spec.backend_config)
                except Exception:  # noqa: BLE001 - teardown is best effort
                    pass
                group.shutdown()

    def _describe_start_failure(self, group: WorkerGroup, exc: BaseException) -> BaseException:
        return WorkerGroupError(f"setting up the worker group failed: {type(exc).__name__}: {exc}")

    def _dataset_shards(self, n: int) -> list[dict[str, Any]]:
        per_rank: list[dict[str, Any]] = [{} for _ in range(n)]
        cfg = self.spec.dataset_config
        for name, ds in self.spec.datasets.items():
            if cfg is None or cfg.should_split(name):
                iterators = ds.streaming_split(n, equal=True)
                for r in range(n):
                    per_rank[r][name] = iterators[r]
            else:
                for r in range(n):
                    per_rank[r][name] = ds.iterator()
        return per_rank

    # --- polling ------------------------------------------------------------------

    def _drive(self, group: WorkerGroup, attempt: int) -> None:
        n = len(group)
        pending: dict[Any, int] = {}
        buffers: list[deque[dict[str, Any]]] = [deque() for _ in range(n)]
        finished = [False] * n
        errors: dict[int, dict[str, Any]] = {}
        dead: dict[int, BaseException] = {}
        received = [0] * n  # reports taken from each rank in this attempt

        def submit(rank: int) -> None:
            pending[group.workers[rank].actor.poll.remote(POLL_S)] = rank

        def take(refs: list[Any]) -> None:
            for ref in refs:
                rank = pending.pop(ref)
                try:
                    out = distcore.get(ref, timeout=60)
                except DistcoreError as exc:
                    dead[rank] = exc  # what it reported before is kept; see _drain
                    continue
                buffers[rank].extend(out["reports"])
                received[rank] += len(out["reports"])
                if out["error"] is not None:
                    errors[rank] = out["error"]
                    finished[rank] = True
                elif out["done"]:
                    finished[rank] = True
                else:
                    submit(rank)

        for r in range(n):
            submit(r)
        while True:
            ready, _ = distcore.wait(list(pending), num_returns=1, timeout=POLL_S * 4 + 10) if pending else ([], [])
            if len(pending) > 1 and ready:
                more, _ = distcore.wait([p for p in pending if p not in ready],
                                        num_returns=len(pending) - len(ready), timeout=0)
                ready = list(ready) + list(more)
            take(ready)
            if self._process_rounds(group, buffers, finished, attempt, failed=errors):
                return
            if errors or dead:
                self._drain(pending, take, errors, dead, received, finished)
                self._process_rounds(group, buffers, finished, attempt, failed=errors)
                raise self._attempt_error(group, errors, dead, finished, buffers)
            if all(finished):
                self._process_rounds(group, buffers, finished, attempt, final=True)
                return

    def _drain(self, pending: dict[Any, int], take: Any, errors: dict[int, dict[str, Any]],
               dead: dict[int, BaseException], received: list[int], finished: list[bool]) -> None:
        """After a failure, collect what the live ranks reported so that every round that can still be
        complete is delivered. A dead rank's reports end at what it handed over: rounds past that can never
        be complete, so a death alone waits only until each live rank has reported that far (at most
        ERROR_GRACE_S). A rank that raised waits the whole grace, for the other ranks' errors (collective
        timeouts name the ranks that waited)."""

        def more_can_complete() -> bool:
            if errors:
                return True
            limit = min(received[d] for d in dead)
            return any(r not in dead and not finished[r] and received[r] < limit for r in range(len(received)))

        deadline = time.monotonic() + ERROR_GRACE_S
        while pending and time.monotonic() < deadline and more_can_complete():
            ready, _ = distcore.wait(list(pending), num_returns=len(pending),
                                     timeout=max(0.0, deadline - time.monotonic()))
            take(ready)

    def _attempt_error(self, group: WorkerGroup, errors: dict[int, dict[str, Any]], dead: dict[int, BaseException],
                       finished: list[bool], buffers: list[deque[dict[str, Any]]]) -> _AttemptFailed:
        exceptions: dict[int, BaseException] = {r: _as_exception(e) for r, e in errors.items()}
        exceptions.update(dead)
        user_raised = any(not e["collective_timeout"] for e in errors.values())
        if dead and not user_raised:
            rank = min(dead)
            w = group.workers[rank]
            exc = dead[rank]
            error: BaseException = WorkerGroupError(
                f"training worker rank {rank} (pid {w.pid} on node {w.node_id[:12]}) died: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", rank)
        else:
            error = self._worker_error(group, errors, finished)
        left = sorted({rep["seq"] for b in buffers for rep in b})
        dropped = ""
        if left:
            staged = sum(1 for b in buffers for rep in b if rep["staged"])
            dropped = (f"report{'s' if len(left) > 1 else ''} {', '.join(f'#{s + 1}' for s in left)} of the failed "
                       f"attempt {'were' if len(left) > 1 else 'was'} not made by every rank and not recorded"
                       + (f" ({staged} staged checkpoint part(s) discarded)" if staged else ""))
            for b in buffers:
                b.clear()
        return _AttemptFailed(error, exceptions, dropped)

    def _process_rounds(self, group: WorkerGroup, buffers: list[deque[dict[str, Any]]], finished: list[bool],
                        attempt: int, final: bool = False, failed: Any = ()) -> bool:
        """Handle every complete round of reports; True when a stop criterion was met.

        A round is complete when every rank made that report or returned from its training
        function; a rank in ``failed`` (it raised) makes no more reports, so rounds it did not
        reach are not complete (as with a rank that died)."""
        while any(buffers):
            complete = all(b or (finished[r] and r not in failed) for r, b in enumerate(buffers))
            if not complete and not final:
                return False
            heads = {r: b.popleft() for r, b in enumerate(buffers) if b}
            if self._handle_round(heads, attempt):
                return True
        return False

    def _handle_round(self, heads: dict[int, dict[str, Any]], attempt: int) -> bool:
        first = heads[min(heads)]
        seq = first["seq"]
        metrics = dict(first["metrics"])
        ckpt: Checkpoint | None = None
        if any(rep["staged"] for rep in heads.values()):
            src = storage.join(self.run_dir, STAGING_DIR, staging_name(attempt, seq))
            index = self.manager.next_index
            dest = storage.join(self.run_dir, checkpoint_dir_name(index))
            storage.delete_dir(self.fs, dest)  # a leftover of a run killed mid-rename
            storage.move(self.fs, src, dest)
            for name in self.manager.register(index, metrics):
                storage.delete_dir(self.fs, storage.join(self.run_dir, name))
            self.files.write_checkpoint_state(self.manager.to_state())
            ckpt = Checkpoint(dest, self.fs)
        now = time.time()
        row = dict(metrics)
        row.update({
            "training_iteration": len(self.rows) + 1,
            "time_total_s": round(self._time_offset + now - self._start, 4),
            "timestamp": int(now),
            "checkpoint_dir_name": ckpt.path.rsplit("/", 1)[-1] if ckpt else None,
        })
        self.rows.append(row)
        self.files.append_row(row, self.rows)
        if ckpt is not None or now - self._last_print >= PROGRESS_EVERY_S:
            self._last_print = now
            shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in list(metrics.items())[:6])
            self._say(f"iter {row['training_iteration']} ({row['time_total_s']:.1f}s) {shown}"
                      + (f" -> {row['checkpoint_dir_name']}" if ckpt else ""))
        self.callbacks.report(row, [heads[r]["metrics"] for r in sorted(heads)], ckpt)
        if self.outer is not None:
            self.outer.report(metrics, ckpt)
        if should_stop(self.spec.run_config.stop, row):
            self._say(f"stop criterion {self.spec.run_config.stop!r} met at iteration {row['training_iteration']}")
            return True
        return False

    def _worker_error(self, group: WorkerGroup, errors: dict[int, dict[str, Any]],
                      finished: list[bool]) -> BaseException:
        n = len(group)
        user = sorted(r for r, e in errors.items() if not e["collective_timeout"])
        waiting = sorted(r for r, e in errors.items() if e["collective_timeout"])
        if user:
            r = user[0]
            e = errors[r]
            w = group.workers[r]
            others = f" (ranks {user[1:]} raised too)" if len(user) > 1 else ""
            return WorkerGroupError(
                f"the training function raised on rank {r} (pid {w.pid}, node {w.node_id[:12]}){others}: "
                f"{e['type']}: {e['message']}\n\nTraceback of rank {r}:\n{e['traceback']}", r)
        absent = [r for r in range(n) if r not in waiting]
        why = ", ".join(f"rank {r} {'had returned from its training function' if finished[r] else 'was still running'}"
                        for r in absent)
        e = errors[waiting[0]]
        return CollectiveTimeoutError(
            f"a collective timed out: ranks {waiting} were waiting in a collective that "
            f"{'ranks ' + str(absent) if absent else 'no other rank'} did not join ({why or 'all ranks waited'}). "
            f"Raise the timeout (TorchConfig(timeout_s=...)) if a rank is just slow.\n\n"
            f"Error of rank {waiting[0]}: {e['type']}: {e['message']}\n{e['traceback']}", waiting[0])

    def _cleanup_staging(self) -> None:
        try:
            storage.delete_dir(self.fs, storage.join(self.run_dir, STAGING_DIR))
        except Exception:  # noqa: BLE001
            pass


def _as_exception(error: dict[str, Any]) -> BaseException:
    """The exception a rank raised (as it was, when it could travel; else a WorkerGroupError like it)."""
    exc = error.get("exception")
    if isinstance(exc, BaseException):
        return exc
    return WorkerGroupError(f"{error['type']}: {error['message']}")


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    return text if len(text) <= 40 else text[:37] + "..."
