"""The trial actor: runs one trial at a time (function or class trainable), buffers
its reports and hands them to the driver in batches (long-poll).

Two pacing modes: ``sync`` (a report waits until the driver has processed it, so a
scheduler decides before the next step) and batch (reports run ahead up to
``window`` unconsumed results; the driver trims what follows a stop decision).

Where a trial runs: in a thread of its own, which ``start`` and ``poll`` drain; or,
for a function trainable in batch mode, ``inline`` in the ``start`` call itself,
whose reply then carries every result not yet polled and the final status (a
trivial trial costs one call and no thread hand-offs). A long inline trial's
results stream through ``poll`` calls that run beside it (the actor is threaded).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import traceback
from typing import Any

from distcore.tune._internal.loggers import TrialLogger, make_dir
from distcore.tune._internal.trainable import Trainable, standard_fields

CHECKPOINT_META = ".tune_checkpoint.json"
LINGER_S = 0.02


class _StopTrial(BaseException):
    """Raised inside ``report`` when the driver stopped the trial."""


def checkpoint_dir_name(index: int) -> str:
    return f"checkpoint_{index:06d}"


def write_checkpoint_meta(directory: str, iteration: int, time_total: float,
                          metrics: dict[str, Any] | None = None) -> None:
    from distcore.tune._internal.loggers import dumps

    with open(os.path.join(directory, CHECKPOINT_META), "w") as f:
        f.write(dumps({"training_iteration": iteration, "time_total_s": time_total, "metrics": metrics or {}}))


def persist_checkpoint(source: str, trial_dir: str, index: int, iteration: int, time_total: float,
                       metrics: dict[str, Any] | None = None) -> str:
    """Copy ``source`` into ``trial_dir/checkpoint_<index>`` atomically (tmp dir + rename)."""
    dest = os.path.join(trial_dir, checkpoint_dir_name(index))
    if os.path.abspath(source) == os.path.abspath(dest):
        write_checkpoint_meta(dest, iteration, time_total, metrics)
        return dest
    tmp = dest + f".tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(trial_dir, exist_ok=True)
    shutil.copytree(source, tmp)
    write_checkpoint_meta(tmp, iteration, time_total, metrics)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


class _Run:
    """One trial's execution inside the actor."""

    def __init__(self, spec: dict[str, Any], trainable: Any, worker: TrialWorker, inline: bool = False,
                 files: TrialLogger | None = None) -> None:
        self.spec = spec
        self.files = files  # this actor writes the run's files (it shares the driver's node)
        self.trainable = trainable
        self.worker = worker
        self.cond = threading.Condition()
        self.buffer: list[tuple[dict[str, Any], str | None]] = []
        self.seq = 0
        self.acked = 0
        self.stop_requested = False
        self.save_on_stop = False
        self.done = False
        self.status = "running"
        self.error: str | None = None
        self.exc: bytes | None = None
        self.final_checkpoint: str | None = None
        self.iteration = int(spec.get("start_iteration", 0))
        self.time_total = float(spec.get("start_time_total", 0.0))
        self.ckpt_index = int(spec.get("checkpoint_index", 0))
        self.started = time.monotonic()
        self.last = self.started
        self.since_restore = 0
        self.thread = None if inline else threading.Thread(target=self._main, name=f"trial-{spec['trial_id']}",
                                                           daemon=True)

    # --------------------------------------------------------------- reporting
    def _persist(self, directory: str, metrics: dict[str, Any]) -> str:
        path = persist_checkpoint(directory, self.spec["trial_dir"], self.ckpt_index, self.iteration,
                                  self.time_total, metrics)
        self.ckpt_index += 1
        return path

    def emit(self, metrics: dict[str, Any], checkpoint_dir: str | None, enrich: bool,
             persisted: bool = False) -> None:
        with self.cond:
            if self.stop_requested:
                raise _StopTrial
        if enrich:
            now = time.monotonic()
            this = now - self.last
            self.last = now
            self.iteration += 1
            self.since_restore += 1
            self.time_total += this
            result = dict(metrics)
            result.update(standard_fields(self.spec["trial_id"], self.iteration, this, self.time_total,
                                          self.since_restore, now - self.started))
            result.setdefault("done", False)
            for key in ("time_this_iter_s", "done", "training_iteration"):
                if key in metrics:
                    result[key] = metrics[key]
            self.iteration = int(result["training_iteration"])
        else:
            result = metrics
            self.iteration = int(result.get("training_iteration", self.iteration))
            self.time_total = float(result.get("time_total_s", self.time_total))
        path = self._persist(checkpoint_dir, result) if checkpoint_dir is not None and not persisted \
            else checkpoint_dir
        with self.cond:
            self.buffer.append((result, path))
            self.seq += 1
            my_seq = self.seq
            if self.files is not None:  # (under the lock: the writer gets results in their order)
                self.files.write_results(self.spec["trial_id"], self.spec["trial_dir"], self.spec["config"], [result])
            # wake a waiting poll only when it has something new to decide on: the first
            # result of a batch, or a full window (not on every report: each wake costs a GIL handoff)
            if len(self.buffer) == 1 or len(self.buffer) >= int(self.spec.get("window", 256)):
                self.cond.notify_all()
            if self.spec.get("sync"):
                while self.acked < my_seq and not self.stop_requested:
                    self.cond.wait(1.0)
            else:
                window = int(self.spec.get("window", 256))
                while len(self.buffer) >= window and not self.stop_requested:
                    self.cond.wait(1.0)
            if self.stop_requested:
                raise _StopTrial

    # --------------------------------------------------------------- execution
    def _main(self) -> None:
        try:
            if isinstance(self.trainable, type) and issubclass(self.trainable, Trainable):
                self._run_class()
            else:
                self._run_function()
            status = "done"
        except _StopTrial:
            status = "stopped"
        except BaseException as error:  # the user's error travels to the driver
            status = "error"
            self.error = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            try:
                import cloudpickle

                self.exc = cloudpickle.dumps(error)
            except Exception:
                self.exc = None
        with self.cond:
            self.status = status
            self.done = True
            if self.files is not None:
                self.files.end_run(self.spec["trial_id"])
            self.cond.notify_all()

    def _run_function(self) -> None:
        from distcore.tune._internal import session as tune_session

        tune_session.set_session(_TrialSession(self))
        try:
            returned = self.trainable(dict(self.spec["config"]))
            if isinstance(returned, dict):
                self.emit(returned, None, enrich=True)
        finally:
            tune_session.set_session(None)

    def _run_class(self) -> None:
        spec = self.spec
        cls = self.trainable
        os.makedirs(spec["trial_dir"], exist_ok=True)  # the Trainable's logdir
        instance = self.worker.take_cached(cls, spec)
        if instance is None:
            instance = cls(dict(spec["config"]), trial_id=spec["trial_id"], trial_name=spec["trial_name"],
                           logdir=spec["trial_dir"])
        path = spec.get("checkpoint_path")
        if path:
            instance.restore(path)
        freq = int(spec.get("checkpoint_frequency") or 0)
        try:
            while True:
                with self.cond:
                    if self.stop_requested:
                        break
                result = instance.train()
                result.pop("config", None)
                ckpt = None
                if freq and result["training_iteration"] % freq == 0:
                    ckpt = self._save_class(instance, result)
                self.iteration = result["training_iteration"]
                self.time_total = result["time_total_s"]
                try:
                    self.emit(result, ckpt, enrich=False, persisted=True)
                except _StopTrial:
                    break
                if result.get("done"):
                    break
            with self.cond:
                save = self.save_on_stop or (spec.get("checkpoint_at_end") and not self.stop_requested)
            if save and instance.implements_checkpointing():
                self.final_checkpoint = self._save_class(instance)
            if self.stop_requested:
                raise _StopTrial
        finally:
            if not self.worker.keep_cached(instance, spec):
                instance.stop()

    def _save_class(self, instance: Trainable, result: dict[str, Any] | None = None) -> str:
        dest = os.path.join(self.spec["trial_dir"], checkpoint_dir_name(self.ckpt_index))
        tmp = dest + f".tmp-{os.getpid()}"
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        instance.save(tmp)
        write_checkpoint_meta(tmp, instance.iteration, self.time_total, result)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        self.ckpt_index += 1
        return dest

    # --------------------------------------------------------------- driver side
    def drain(self, ack: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            if ack > self.acked:
                self.acked = ack
                if self.files is not None:
                    self.files.ack(self.spec["trial_id"], ack)
                self.cond.notify_all()
            while not self.buffer and not self.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            if self.buffer and not self.done and not self.spec.get("sync"):
                # batch mode: linger a moment so a burst of reports (or the end) travels in one reply
                linger_until = time.monotonic() + LINGER_S
                while not self.done and len(self.buffer) < int(self.spec.get("window", 256)):
                    left = linger_until - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
            out, self.buffer = self.buffer, []
            self.cond.notify_all()
            if self.files is not None:  # the run's writes go to the writer as this reply leaves
                self.files.release()
            return {"results": out, "status": self.status if self.done else "running", "error": self.error,
                    "exc": self.exc, "final_checkpoint": self.final_checkpoint, "seq": self.seq,
                    "files": self.files is not None}


class _TrialSession:
    """train's Session protocol for a function trainable running in a trial."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        directory = None
        if checkpoint is not None:
            directory = checkpoint.to_directory() if not hasattr(checkpoint, "path") or "://" in str(
                checkpoint.path) else str(checkpoint.path)
        self._run.emit(metrics, directory, enrich=True)

    def get_checkpoint(self) -> Any:
        path = self._run.spec.get("checkpoint_path")
        if not path:
            return None
        from distcore.tune._internal.compat import Checkpoint

        return Checkpoint.from_directory(path)

    def get_context(self) -> Any:
        from distcore.train import TrainContext

        spec = self._run.spec
        return TrainContext(experiment_name=spec.get("experiment_name"), trial_name=spec["trial_name"],
                            trial_id=spec["trial_id"], trial_dir=spec["trial_dir"],
                            trial_resources=spec.get("resources"))

    def get_dataset_shard(self, name: str) -> Any:
        return None


class TrialWorker:
    """Actor body: ``start`` a trial, ``poll`` its results, ``stop`` it; reusable across trials."""

    def __init__(self) -> None:
        self._run: _Run | None = None
        self._cached: Trainable | None = None
        self._trainable: Any = None
        # calls of a threaded actor may run in any order: a poll or stop naming a trial waits
        # here until that trial's start has installed its run
        self._started = threading.Condition()
        self._files: TrialLogger | None = None
        self._node_id: str | None = None

    def _files_for(self, spec: dict[str, Any]) -> TrialLogger | None:
        """This actor's writer of trial files, when the driver asks for one and this actor
        runs on the driver's node (the experiment directory is local there); else None (the
        driver writes the files). ``spec["files"]``: {"node", "params", "tb", "trim"}."""
        want = spec.get("files")
        if not want:
            return None
        if self._node_id is None:
            import distcore

            self._node_id = distcore.get_runtime_context().get_node_id()
        if want["node"] != self._node_id:
            return None
        if self._files is None:
            self._files = TrialLogger(tensorboard=None if want.get("tb") else False, track=True, hold=True)
        trim = want.get("trim")
        if trim:  # the previous run's results the driver dropped after it had ended
            self._files.trim(*trim)
        self._files.begin_run(spec["trial_id"], spec["trial_dir"], spec["config"] if want.get("params") else None)
        return self._files

    def flush_files(self, trim: list[Any] | None = None, timeout: float = 30.0) -> bool:
        """Write what is queued (after cutting ``trim = [trial_id, accepted]``, if given);
        the driver calls this before it kills the actor and at the experiment's end."""
        if self._files is None:
            return False
        if trim:
            self._files.trim(*trim)
        return self._files.flush(timeout)

    def _run_of(self, trial_id: str | None, timeout: float) -> _Run | None:
        """The current run, once it is ``trial_id``'s (None if it is not within ``timeout``)."""
        with self._started:
            if trial_id is not None:
                self._started.wait_for(lambda: self._run is not None and self._run.spec["trial_id"] == trial_id,
                                       timeout)
            run = self._run
        if trial_id is not None and (run is None or run.spec["trial_id"] != trial_id):
            return None
        return run

    def ping(self) -> int:
        return os.getpid()

    def prepare(self, trainable: Any) -> None:
        """Take the trainable ahead of the first trial (the driver sends it while it sets up;
        the first ``start`` gets this call's result, None, as its trainable)."""
        self._trainable = trainable

    def start(self, spec: dict[str, Any], trainable: Any, poll_timeout: float = 0.0,
              inline: bool = False) -> dict[str, Any]:
        """Start a trial; ``inline`` runs it to its end in this call (function trainables in
        batch mode) and returns what ``poll`` has not taken, else returns its first results."""
        if self._run is not None and not self._run.done:
            raise RuntimeError(f"trial actor is still running trial {self._run.spec['trial_id']}")
        if trainable is not None:  # sent once per actor; later trials reuse it
            self._trainable = trainable
        elif self._trainable is None:
            raise RuntimeError("trial actor has no trainable: the driver must send it with the first trial")
        inline = inline and not spec.get("sync") and not (
            isinstance(self._trainable, type) and issubclass(self._trainable, Trainable))
        try:  # the trainable may write there from its first line (the trial's files come later)
            make_dir(spec["trial_dir"])
        except OSError:  # (not writable on this node: the trainable finds out if it writes there)
            pass
        run = _Run(spec, self._trainable, self, inline=inline, files=self._files_for(spec))
        with self._started:
            self._run = run
            self._started.notify_all()
        if run.thread is None:
            run._main()
            return run.drain(0, 0.0)
        run.thread.start()
        return run.drain(0, poll_timeout)

    def poll(self, ack: int, timeout: float, trial_id: str | None = None) -> dict[str, Any]:
        """New results of the current trial (``trial_id``'s: waits for its start if it has not
        run yet; "running" with no results if it does not start within ``timeout``)."""
        deadline = time.monotonic() + timeout
        run = self._run_of(trial_id, timeout)
        if run is None:
            status = "running" if trial_id is not None else "idle"
            return {"results": [], "status": status, "error": None, "exc": None, "final_checkpoint": None,
                    "seq": ack}
        return run.drain(ack, max(0.0, deadline - time.monotonic()))

    def stop(self, save: bool = False, timeout: float = 30.0, trial_id: str | None = None,
             accepted: int | None = None) -> dict[str, Any]:
        """Stop the current run (``trial_id``'s); ``accepted``: how many of its results the
        driver took, the rest are cut from the files this actor wrote, which are complete
        on disk when this returns."""
        deadline = time.monotonic() + timeout
        run = self._run_of(trial_id, timeout)
        if run is None:  # its start never ran here: "stuck" has the driver replace this actor
            status = "stuck" if trial_id is not None else "idle"
            return {"results": [], "status": status, "error": None, "exc": None, "final_checkpoint": None, "seq": 0}
        with run.cond:
            run.stop_requested = True
            run.save_on_stop = save
            run.cond.notify_all()
            while not run.done:  # an inline trial ends in its start call, a threaded one in its thread
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                run.cond.wait(left)
        if run.thread is not None:
            run.thread.join(max(0.0, deadline - time.monotonic()))
        out = run.drain(0, 0)
        if not run.done or (run.thread is not None and run.thread.is_alive()):
            out["status"] = "stuck"
        elif run.files is not None:
            if accepted is not None:
                run.files.trim(run.spec["trial_id"], accepted)
            run.files.flush(max(0.0, deadline - time.monotonic()))
        return out

    # class trainables with reset_config keep their instance for the next trial
    def take_cached(self, cls: type, spec: dict[str, Any]) -> Trainable | None:
        instance, self._cached = self._cached, None
        if instance is None or type(instance) is not cls or not spec.get("reuse"):
            if instance is not None:
                instance.stop()
            return None
        if instance.reset(dict(spec["config"]), trial_id=spec["trial_id"], trial_name=spec["trial_name"],
                          logdir=spec["trial_dir"]):
            return instance
        instance.stop()
        return None

    def keep_cached(self, instance: Trainable, spec: dict[str, Any]) -> bool:
        if spec.get("reuse") and type(instance).supports_reset():
            self._cached = instance
            return True
        return False
