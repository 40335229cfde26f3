"""The driver loop: creates trials from the searcher, runs them on trial actors that
pack the cluster, pulls their results in batches, applies stoppers and the
scheduler, retries failures from checkpoints and checkpoints the experiment."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from typing import Any

import numpy as np

import distcore
from distcore.tune._internal import experiment_state, variants
from distcore.tune._internal.loggers import TrialLogger
from distcore.tune._internal.progress import ProgressReporter
from distcore.tune._internal.resources import PlacementGroupFactory, resources_for
from distcore.tune._internal.scheduler_base import TrialScheduler
from distcore.tune._internal.searcher import Searcher
from distcore.tune._internal.stopper import Stopper
from distcore.tune._internal.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from distcore.tune._internal.trial_actor import TrialWorker, checkpoint_dir_name
from distcore.tune._internal.trial_checkpoints import (
    latest_checkpoint_on_disk,
    prune_checkpoints,
    record_checkpoint,
)
from distcore.tune._internal.trial_files import FLUSH_TIMEOUT_S, TrialFiles, TrialSlot

logger = logging.getLogger("distcore.tune")

POLL_TIMEOUT_S = 5.0
# an inline trial (run to its end inside its start call) that has not replied after this long
# gets a poll beside it, so a long trial's results stream to the driver as they come
LAZY_POLL_S = 0.02
STOP_TIMEOUT_S = 30.0
STATE_PERIOD_S = 1.0
# on Ctrl-C, how long the trial actors get (together) to write what they hold before they are killed
INTERRUPT_FLUSH_S = 2.0


class TrialFailed(RuntimeError):
    """A trial's error (raised by ``fit`` when ``fail_fast="raise"``)."""


class TuneController:
    def __init__(self, *, trainable: Any, trainable_name: str, param_space: dict[str, Any],
                 searcher: Searcher, scheduler: TrialScheduler, stopper: Stopper, experiment_path: str,
                 experiment_name: str, num_samples: int, metric: Any, mode: Any,
                 max_concurrent_trials: int | None, time_budget_s: float | None, reuse_actors: bool,
                 max_failures: int, fail_fast: Any, checkpoint_config: Any, callbacks: list[Any],
                 verbose: int, trial_name_creator: Any = None, trial_dirname_creator: Any = None,
                 trials: list[Trial] | None = None, num_suggested: int = 0, searcher_finished: bool = False,
                 seed: int | None = None, state_period_s: float = STATE_PERIOD_S, storage: Any = None) -> None:
        self.trainable = trainable
        self.trainable_name = trainable_name
        self.param_space = param_space
        self.searcher = searcher
        self.scheduler = scheduler
        self.stopper = stopper
        self.experiment_path = experiment_path
        self.experiment_name = experiment_name
        self.num_samples = num_samples
        self.metric, self.mode = metric, mode
        self.max_concurrent = max_concurrent_trials or 0
        self.time_budget_s = time_budget_s
        self.reuse_actors = reuse_actors
        self.max_failures = max_failures
        self.fail_fast = fail_fast
        self.checkpoint_config = checkpoint_config
        self.callbacks = callbacks
        self.trial_name_creator = trial_name_creator
        self.trial_dirname_creator = trial_dirname_creator
        self.trials: list[Trial] = list(trials or [])
        self._by_id = {t.trial_id: t for t in self.trials}
        self.num_suggested = num_suggested
        self.searcher_finished = searcher_finished
        self.rng = np.random.default_rng(seed)
        self.state_period_s = state_period_s
        self.storage = storage  # an ExperimentStorage: mirrors the experiment to remote storage, if any
        self.exp_id = uuid.uuid4().hex[:5]
        self.logger = TrialLogger()
        self.files = TrialFiles(self.logger)
        self.reporter = ProgressReporter(metric if isinstance(metric, str) else None,
                                         mode if isinstance(mode, str) else None, verbose)
        self.sync = bool(scheduler.needs_sync)
        self.iteration = 0
        self._slots: list[TrialSlot] = []
        self._inflight: dict[Any, tuple[TrialSlot, str]] = {}
        self._acks: dict[str, int] = {}
        self._stopping: set[str] = set()
        self._total: dict[str, float] = {}
        self._last_state = 0.0
        self._state_period = state_period_s
        self._warned_no_checkpoint = False
        self._prefetched: tuple[Any, Any] | None = None
        # replies already handled: dropped right after the next submission, so that the two
        # ref releases and the submission reach the io loop in one wake-up, not one each
        self._spent: list[Any] = []
        self._error_to_raise: BaseException | None = None
        self.state_cache: dict[str, tuple[Any, str]] = {}  # finished trials' saved state (experiment_state)
        self._stop_all = False
        self.interrupted = False
        self._actor_cls: Any = None
        from distcore.tune._internal.trainable import Trainable

        self._class_trainable = isinstance(trainable, type) and issubclass(trainable, Trainable)
        # function trials in batch mode run inside their start call (see trial_actor)
        self._inline = not self._class_trainable and not self.sync

    # ------------------------------------------------------------------ queries (schedulers use these)
    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if not t.is_finished()]

    def get_trial(self, trial_id: str) -> Trial | None:
        return self._by_id.get(trial_id)

    def is_busy(self, trial: Trial) -> bool:
        """True while a trial's actor is still stopping (its checkpoint not yet saved)."""
        return trial.trial_id in self._stopping

    def stop_trial(self, trial: Trial) -> None:
        """End a paused or pending trial (schedulers call this; running ones get STOP instead)."""
        if trial.status in (PAUSED, PENDING):
            trial.status = TERMINATED
            self._on_trial_done(trial)
            if trial.trial_id not in self._stopping:
                self.files.end(trial)

    # ------------------------------------------------------------------ resources and actors
    def _refresh_total(self) -> None:
        self._total = {k: float(v) for k, v in distcore.cluster_resources().items()}

    def _used(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for slot in self._slots:
            for key, value in slot.resources.items():
                used[key] = used.get(key, 0.0) + value
        return used

    def _fits(self, need: dict[str, float]) -> bool:
        used = self._used()
        return all(used.get(k, 0.0) + v <= self._total.get(k, 0.0) + 1e-9 for k, v in need.items() if v > 0)

    def _never_fits(self, need: dict[str, float]) -> str | None:
        short = {k: v for k, v in need.items() if v > self._total.get(k, 0.0) + 1e-9}
        if short:
            return (f"a trial needs {need} but the cluster has {self._total}: "
                    f"not enough {', '.join(sorted(short))}")
        return None

    def _new_slot(self, factory: PlacementGroupFactory) -> TrialSlot:
        if self._actor_cls is None:
            self._actor_cls = distcore.remote(TrialWorker)
        head = factory.head_bundle
        opts: dict[str, Any] = {"num_cpus": head.get("CPU", 0.0), "max_concurrency": 4}
        if head.get("GPU"):
            opts["num_gpus"] = head["GPU"]
        custom = {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            opts["resources"] = custom
        pg = None
        if len(factory.bundles) > 1 and not getattr(factory, "_no_placement_group", False):
            from distcore.util import PlacementGroupSchedulingStrategy, placement_group

            pg = placement_group(factory.bundles, strategy=factory.strategy)
            opts = {"num_cpus": head.get("CPU", 0.0), "max_concurrency": 4,
                    "scheduling_strategy": PlacementGroupSchedulingStrategy(
                        pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)}
            if head.get("GPU"):
                opts["num_gpus"] = head["GPU"]
        actor = self._actor_cls.options(**opts).remote()
        slot = TrialSlot(actor, (tuple(sorted(factory.required_resources.items())), repr(factory.bundles)),
                     factory.required_resources, pg)
        self._slots.append(slot)
        return slot

    def _free_slot(self, slot: TrialSlot, flush: bool = True) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        if flush:
            self.files.flush_actors([slot])
        try:
            distcore.kill(slot.actor)
        except Exception:
            pass
        if slot.pg is not None:
            from distcore.util import remove_placement_group

            try:
                remove_placement_group(slot.pg)
            except Exception:
                pass

    def _prestart(self) -> None:
        """Start the first trial actor (and ship it the trainable) before the first suggest, so
        the actor's start overlaps the searcher's set-up. Only when a trial's resources do not
        depend on its config and need no placement group."""
        if self.searcher_finished or self._stop_all or self._slots:
            return
        if getattr(self.trainable, "_tune_resources", None) is not None and callable(
                self.trainable._tune_resources) and not isinstance(self.trainable._tune_resources,
                                                                   PlacementGroupFactory):
            return
        if callable(getattr(self.trainable, "default_resource_request", None)):
            return
        factory = resources_for(self.trainable, {})
        if len(factory.bundles) > 1 or self._never_fits(factory.required_resources) \
                or not self._fits(factory.required_resources):
            return
        slot = self._new_slot(factory)
        # the first start() takes this ref as its trainable argument: it runs after prepare()
        # (a threaded actor may run two calls in any order) and fails with prepare's error, if any
        slot.prepare_ref = slot.actor.prepare.remote(self.trainable)
        slot.has_trainable = True

    def _acquire(self, trial: Trial, factory: PlacementGroupFactory) -> TrialSlot | None:
        key = (tuple(sorted(factory.required_resources.items())), repr(factory.bundles))
        if self.reuse_actors:
            for slot in self._slots:
                if slot.trial is None and slot.key == key and slot.pg is None:
                    return slot
        if self._fits(factory.required_resources):
            return self._new_slot(factory)
        idle = [s for s in self._slots if s.trial is None]
        if idle:  # idle actors of another shape (or not reusable) give their resources back
            for slot in idle:
                self._free_slot(slot)
            if self._fits(factory.required_resources):
                return self._new_slot(factory)
        return None

    # ------------------------------------------------------------------ trial creation
    def _running_count(self) -> int:
        return sum(1 for s in self._slots if s.trial is not None)

    def _create_trial(self) -> Trial | None:
        if self.searcher_finished:
            return None
        if (not self.searcher.counts_samples and self.num_samples >= 0
                and self.num_suggested >= self.num_samples):
            self.searcher_finished = True
            return None
        index = len(self.trials)
        trial_id = f"{self.exp_id}_{index:05d}"
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self.searcher_finished = True
            return None
        if suggestion is None:
            return None
        if self.searcher.counts_samples:
            config = suggestion
        else:
            config = variants.resolve(self.param_space, self.rng, preset=suggestion)
        self.num_suggested += 1
        factory = resources_for(self.trainable, config)
        trial = Trial(trial_id, config, index, self.experiment_path, self.trainable_name, factory)
        if self.trial_dirname_creator is not None:
            trial.dirname = str(self.trial_dirname_creator(trial))
            trial.local_path = os.path.join(self.experiment_path, trial.dirname)
        if self.trial_name_creator is not None:
            trial.custom_name = str(self.trial_name_creator(trial))
        self.trials.append(trial)
        self._by_id[trial_id] = trial
        self.scheduler.on_trial_add(self, trial)
        return trial

    def _next_trial_to_run(self) -> Trial | None:
        trial = self.scheduler.choose_trial_to_run(self)
        if trial is not None and trial.trial_id not in self._stopping:
            return trial
        new = self._create_trial()
        if new is None:
            return None
        trial = self.scheduler.choose_trial_to_run(self)
        return trial if trial is not None and trial.trial_id not in self._stopping else None

    def _fill(self) -> None:
        while not self._stop_all:
            if self.max_concurrent and self._running_count() >= self.max_concurrent:
                return
            trial = self._next_trial_to_run()
            if trial is None:
                return
            if not isinstance(trial.resources, PlacementGroupFactory):
                trial.resources = resources_for(self.trainable, trial.config)
            problem = self._never_fits(trial.resources.required_resources)
            if problem:
                self._refresh_total()
                problem = self._never_fits(trial.resources.required_resources)
            if problem:
                raise ValueError(problem)
            slot = self._acquire(trial, trial.resources)
            if slot is None:
                return
            self._launch(trial, slot)

    def _launch(self, trial: Trial, slot: TrialSlot) -> None:
        first = trial.start_time is None
        trial.start_time = trial.start_time or time.time()
        trial.status = RUNNING
        slot.trial = trial
        slot.unflushed = True
        write_params = first or not os.path.exists(os.path.join(trial.local_path, "params.json"))
        ckpt_cfg = self.checkpoint_config
        spec = {
            "trial_id": trial.trial_id, "trial_name": str(trial), "trial_dir": trial.local_path,
            "experiment_name": self.experiment_name, "config": trial.config,
            "checkpoint_path": trial.checkpoint_path, "checkpoint_index": trial.checkpoint_index,
            "start_iteration": trial.checkpoint_iteration if trial.checkpoint_path else 0,
            "start_time_total": trial.checkpoint_time_total if trial.checkpoint_path else 0.0,
            "sync": self.sync, "window": 1 if self._class_trainable else 256, "reuse": self.reuse_actors,
            "checkpoint_frequency": getattr(ckpt_cfg, "checkpoint_frequency", 0) or 0,
            "checkpoint_at_end": bool(getattr(ckpt_cfg, "checkpoint_at_end", False)),
            "resources": trial.resources.required_resources,
            "files": self.files.run_spec(slot, trial, write_params),
        }
        self._acks[trial.trial_id] = 0
        trainable = None if slot.has_trainable else self.trainable
        if slot.prepare_ref is not None:
            trainable, slot.prepare_ref = slot.prepare_ref, None
        slot.has_trainable = True
        if self._inline:
            ref = slot.actor.start.remote(spec, trainable, 0.0, True)
            self._inflight[ref] = (slot, "run")
            slot.run_ref, slot.run_since, slot.poll_ref, slot.run_reply = ref, time.monotonic(), None, None
        else:
            ref = slot.actor.start.remote(spec, trainable, 0.0 if self.sync else 0.05)
            self._inflight[ref] = (slot, "poll")
        for cb in self.callbacks:
            cb.on_trial_start(self.iteration, self.trials, trial)
        if self.reporter.verbose >= 2:
            self.reporter.event(f"Trial {trial} started with config {trial.config}")

    # ------------------------------------------------------------------ results
    def _process_result(self, trial: Trial, result: dict[str, Any], ckpt: str | None) -> str:
        result.setdefault("trial_id", trial.trial_id)
        trial.last_result = result
        flat = trial.flat_result  # metric names, searchers, schedulers and stoppers use "a/b" keys
        trial.num_results += 1
        trial.update_metric_analysis(flat)
        if ckpt is not None:
            self._register_checkpoint(trial, ckpt, flat)
        self.searcher.on_trial_result(trial.trial_id, flat)
        for cb in self.callbacks:
            cb.on_trial_result(self.iteration, self.trials, trial, result)
        if self.stopper(trial.trial_id, flat) or result.get("done"):
            trial.mark_done()
            return TrialScheduler.STOP
        if self.stopper.stop_all():
            self._stop_all = True
        decision = self.scheduler.on_trial_result(self, trial, flat)
        return decision

    def _register_checkpoint(self, trial: Trial, path: str, result: dict[str, Any]) -> None:
        record_checkpoint(trial, path, result)
        for cb in self.callbacks:
            cb.on_checkpoint(self.iteration, self.trials, trial, path)
        prune_checkpoints(trial, self.checkpoint_config)

    def _is_stale(self, slot: TrialSlot, ref: Any, kind: str) -> bool:
        """A reply nobody waits for: an inline trial's start reply after its trial was stopped or
        ended through a poll, or a poll of a trial being stopped (its results ran ahead)."""
        if kind == "run":
            if ref is not slot.run_ref:
                return True
            slot.run_ref = None
            return False
        if kind == "poll" and ref is slot.poll_ref:
            slot.poll_ref = None
        return kind == "poll" and (slot.trial is None or slot.trial.trial_id in self._stopping)

    def _drop_late(self, response: Any) -> None:
        if isinstance(response, dict):
            for _, late in response.get("results", []):
                if late is not None:
                    shutil.rmtree(late, ignore_errors=True)

    def _lazy_polls(self, now: float) -> float:
        """Poll inline trials that have run LAZY_POLL_S without replying; returns how long until
        the next one is due (or POLL_TIMEOUT_S)."""
        due = POLL_TIMEOUT_S
        for slot in self._slots:
            if slot.run_ref is None or slot.poll_ref is not None or slot.trial is None \
                    or slot.trial.trial_id in self._stopping:
                continue
            left = slot.run_since + LAZY_POLL_S - now
            if left <= 0:
                trial_id = slot.trial.trial_id
                slot.poll_ref = slot.actor.poll.remote(self._acks.get(trial_id, 0), POLL_TIMEOUT_S, trial_id)
                self._inflight[slot.poll_ref] = (slot, "poll")
            else:
                due = min(due, left)
        return due

    def _handle_response(self, slot: TrialSlot, kind: str, response: dict[str, Any]) -> None:
        trial = slot.trial
        assert trial is not None
        self.files.on_reply(slot, trial, response)
        if kind == "stop":
            self._finish_stop(slot, trial, response)
            return
        if kind == "run" and slot.poll_ref is not None:
            slot.run_reply = response  # the poll beside it may hold earlier results: they go first
            return
        if kind == "poll" and slot.run_reply is not None:
            # the trial ended while this poll was out: the start reply has what came after it
            stashed, slot.run_reply = slot.run_reply, None
            response = dict(stashed, results=[*response["results"], *stashed["results"]])
        results = response["results"]
        accepted = []
        decision = TrialScheduler.CONTINUE
        for i, (result, ckpt) in enumerate(results):
            decision = self._process_result(trial, result, ckpt)
            accepted.append(result)
            if decision != TrialScheduler.CONTINUE:
                for _, late in results[i + 1:]:  # ran ahead of the decision: drop its checkpoints
                    if late is not None:
                        shutil.rmtree(late, ignore_errors=True)
                break
            if self._stop_all:
                break
        self.files.on_accepted(slot, trial, response, accepted, len(accepted) == len(results))
        status = response["status"]
        if kind == "poll" and slot.run_ref is not None and status != "running":
            # an inline trial ended, but its start call's own last drain may have taken the final
            # results: its reply, still to come, ends the trial (no further poll meanwhile)
            status = "ending"
        if decision == TrialScheduler.STOP:
            self._request_stop(slot, trial, TERMINATED)
        elif decision == TrialScheduler.PAUSE:
            if trial.checkpoint_path is None and not self._class_trainable and not self._warned_no_checkpoint:
                self._warned_no_checkpoint = True
                logger.warning("tune: %s pauses trial %s, which has reported no checkpoint: it will start over "
                               "when resumed (report checkpoints with tune.report(..., checkpoint=...))",
                               type(self.scheduler).__name__, trial)
            self._request_stop(slot, trial, PAUSED, save=trial.pending_exploit is None)
        elif status == "done" or status == "stopped":
            trial.mark_done()
            if response.get("final_checkpoint"):
                self._register_checkpoint(trial, response["final_checkpoint"], trial.flat_result)
            self._complete(trial, slot)
        elif status == "error":
            self._on_failure(slot, trial, response.get("error") or "unknown error", response.get("exc"))
        elif status == "ending":
            slot.run_since = float("inf")  # no lazy poll either: the start reply is on its way
        elif self._stop_all:
            pass  # _stop_everything stops it next: no poll acks results it did not take
        else:
            self._acks[trial.trial_id] = response["seq"]
            ref = slot.actor.poll.remote(response["seq"], POLL_TIMEOUT_S, trial.trial_id)
            self._inflight[ref] = (slot, "poll")
            if self._inline:
                slot.poll_ref = ref

    def _request_stop(self, slot: TrialSlot, trial: Trial, final_status: str, save: bool = False) -> None:
        trial.status = final_status
        slot.run_ref = slot.run_reply = None  # an inline trial's start reply is stale from now on
        self._stopping.add(trial.trial_id)
        slot.pending_trim = None  # the stop carries the accepted count itself
        ref = slot.actor.stop.remote(save, STOP_TIMEOUT_S, trial.trial_id, slot.accepted)
        self._inflight[ref] = (slot, "stop")
        if final_status == TERMINATED:
            self._on_trial_done(trial)

    def _finish_stop(self, slot: TrialSlot, trial: Trial, response: dict[str, Any]) -> None:
        self._stopping.discard(trial.trial_id)
        if response.get("status") != "stuck":
            slot.unflushed = False  # stop returns once the run's files are on disk
        for _, late in response.get("results", []):
            if late is not None:
                shutil.rmtree(late, ignore_errors=True)
        if response.get("final_checkpoint"):
            self._register_checkpoint(trial, response["final_checkpoint"], trial.flat_result)
        if trial.pending_exploit is not None:
            self._apply_exploit(trial)
        slot.trial = None
        if response.get("status") == "stuck" or not self.reuse_actors:
            self._free_slot(slot)
        if trial.status == TERMINATED:
            self.files.end(trial)

    def _apply_exploit(self, trial: Trial) -> None:
        """PBT: copy the donor's checkpoint into this trial and take the explored config."""
        info, trial.pending_exploit = trial.pending_exploit, None
        assert info is not None
        source = info.get("checkpoint")
        if source and os.path.isdir(source):
            dest = os.path.join(trial.local_path, checkpoint_dir_name(trial.checkpoint_index))
            tmp = dest + ".tmp-exploit"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
            found = latest_checkpoint_on_disk(trial.local_path)
            iteration, total = (found[1], found[2]) if found and found[0] == dest else (0, 0.0)
            trial.checkpoint_path, trial.checkpoint_iteration, trial.checkpoint_time_total = dest, iteration, total
            trial.checkpoint_index += 1
            trial.checkpoint_history.append((dest, {"training_iteration": iteration, "exploited_from": info["source"]}))
        trial.config = info["config"]
        self.files.by_driver_start(trial)
        self.reporter.event(f"Trial {trial} exploited {info['source']}: new config {trial.config}")

    def _complete(self, trial: Trial, slot: TrialSlot) -> None:
        trial.status = TERMINATED
        slot.trial = None
        slot.run_ref = slot.run_reply = None  # ended through a poll: the start reply is stale
        if not self.reuse_actors or slot.pg is not None:
            self._free_slot(slot)
        self._on_trial_done(trial)
        self.files.end(trial)

    def _on_trial_done(self, trial: Trial) -> None:
        self.searcher.on_trial_complete(trial.trial_id, trial.flat_result or None, error=False)
        self.scheduler.on_trial_complete(self, trial, trial.flat_result)
        for cb in self.callbacks:
            cb.on_trial_complete(self.iteration, self.trials, trial)
        if self.reporter.verbose >= 2:
            self.reporter.event(f"Trial {trial} completed: {self._short_result(trial)}")
        self._save_state(force=False)

    def _short_result(self, trial: Trial) -> str:
        flat = trial.flat_result
        if isinstance(self.metric, str) and self.metric in flat:
            return f"{self.metric}={flat[self.metric]}"
        return f"iter={flat.get('training_iteration')}"

    def _on_failure(self, slot: TrialSlot | None, trial: Trial, error: str, exc: bytes | None,
                    actor_died: bool = False) -> None:
        trial.num_failures += 1
        if slot is not None:
            slot.trial = None
            slot.run_ref = slot.run_reply = None
            if actor_died or not self.reuse_actors or slot.pg is not None:
                self._free_slot(slot, flush=not actor_died)
        self._stopping.discard(trial.trial_id)
        exc_obj: BaseException | None = None
        if exc is not None:
            try:
                import pickle

                exc_obj = pickle.loads(exc)
            except Exception:
                exc_obj = None
        retry = self.max_failures < 0 or trial.num_failures <= self.max_failures
        if retry and not self._stop_all:
            self.reporter.event(f"Trial {trial} failed ({trial.num_failures} failure(s)); retrying from "
                                f"{trial.checkpoint_path or 'scratch'}")
            self.files.end(trial)
            trial.status = PENDING
            return
        trial.status = ERROR
        trial.error = error
        trial.error_exc = exc_obj
        os.makedirs(trial.local_path, exist_ok=True)
        with open(os.path.join(trial.local_path, "error.txt"), "w") as f:
            f.write(error)
        self.files.end(trial)
        self.searcher.on_trial_complete(trial.trial_id, None, error=True)
        self.scheduler.on_trial_error(self, trial)
        for cb in self.callbacks:
            cb.on_trial_error(self.iteration, self.trials, trial)
        self.reporter.message(f"Trial {trial} errored after {trial.num_failures} failure(s):\n{error}")
        if self.fail_fast:
            self._stop_all = True
            if self.fail_fast == "raise":
                self._error_to_raise = exc_obj or TrialFailed(error)
        self._save_state(force=True)

    # ------------------------------------------------------------------ experiment state
    def _save_state(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_state < self._state_period:
            return
        experiment_state.save(self)
        took = time.monotonic() - now
        self._last_state = time.monotonic()
        # keep saving under ~5% of the loop's time however large the experiment grows
        self._state_period = max(self.state_period_s, 20 * took)
        self._sync(force)

    def _sync(self, force: bool) -> None:
        if self.storage is None or not self.storage.remote:
            return
        if force:
            self.logger.flush()
        try:
            self.storage.sync_up(force=force)
        except Exception:  # an unreachable store must not end the experiment: retried at the next sync
            logger.exception("tune: syncing the experiment to %s failed", self.storage.remote_path)

    # ------------------------------------------------------------------ the loop
    def _done(self) -> bool:
        if self._inflight:
            return False
        if self._stop_all:
            return True
        if not self.searcher_finished:
            return False
        return all(t.is_finished() for t in self.trials)

    def _wait(self, timeout: float) -> list[Any]:
        refs = list(self._inflight)
        if not refs:
            return []
        if len(refs) == 1:  # one trial in flight (e.g. a sequential searcher): one call, not wait + get
            try:
                self._prefetched = (refs[0], distcore.get(refs[0], timeout=timeout))
            except distcore.exceptions.GetTimeoutError:
                return []
            except Exception as error:  # the actor died: handled like any failed reply
                self._prefetched = (refs[0], error)
            return refs
        ready, _ = distcore.wait(refs, num_returns=1, timeout=timeout)
        if ready and len(refs) > 1:
            more, _ = distcore.wait(refs, num_returns=len(refs), timeout=0)
            ready = list({id(r): r for r in [*ready, *more]}.values())
        return ready

    def run(self) -> None:
        os.makedirs(self.experiment_path, exist_ok=True)
        self.files.bind_node()
        self._refresh_total()
        start = time.monotonic()
        last_refresh = start
        self._prestart()
        try:
            while not self._done():
                self.iteration += 1
                for cb in self.callbacks:
                    cb.on_step_begin(self.iteration, self.trials)
                if self.time_budget_s is not None and time.monotonic() - start >= self.time_budget_s:
                    if not self._stop_all:
                        self.reporter.event(f"time budget of {self.time_budget_s} s reached")
                    self._stop_all = True
                if self.stopper.stop_all():
                    self._stop_all = True
                if self._stop_all:
                    self._stop_everything(TERMINATED)
                else:
                    self._fill()
                self._spent.clear()
                if not self._inflight:
                    if self._done():
                        break
                    if not any(t.status in (PENDING, PAUSED) for t in self.trials) and not self.searcher_finished:
                        time.sleep(0.01)  # the searcher asked us to wait
                    elif not self._slots or all(s.trial is None for s in self._slots):
                        if not self.searcher_finished or any(t.status in (PENDING, PAUSED) for t in self.trials):
                            time.sleep(0.05)
                    continue
                timeout = 0.5
                if self._inline:
                    timeout = min(timeout, self._lazy_polls(time.monotonic()))
                ready = self._wait(timeout)
                if ready:
                    values = self._get_many(ready)
                    self._spent.extend(ready)
                    for ref, value in zip(ready, values, strict=True):
                        slot, kind = self._inflight.pop(ref)
                        if self._inline and self._is_stale(slot, ref, kind):
                            self._drop_late(value)
                            continue
                        if isinstance(value, BaseException):
                            trial = slot.trial
                            if trial is not None:
                                if kind == "stop":
                                    self._stopping.discard(trial.trial_id)
                                    slot.trial = None
                                    self._free_slot(slot, flush=False)
                                else:
                                    self._on_failure(slot, trial, _describe(value), None, actor_died=True)
                            else:
                                self._free_slot(slot, flush=False)
                            continue
                        self._handle_response(slot, kind, value)
                    del ready, values, ref
                now = time.monotonic()
                if now - last_refresh > 10:
                    self._refresh_total()
                    last_refresh = now
                self.reporter.report(self.trials)
                self._save_state(force=False)
                for cb in self.callbacks:
                    cb.on_step_end(self.iteration, self.trials)
        except KeyboardInterrupt:
            self.interrupted = True
            self.reporter.close()
            experiment_state.save(self)
            self._shutdown_actors(flush_timeout=INTERRUPT_FLUSH_S)
            self.logger.close()
            self._sync(force=True)
            where = self.experiment_path
            if self.storage is not None and self.storage.remote:
                where = self.storage.display
            print(f"\nExperiment interrupted; its state is saved. Resume with "
                  f"Tuner.restore({where!r}, trainable=...)", flush=True)
            return
        except BaseException:
            self.reporter.close()
            self.logger.close()
            raise
        # the files' writer finishes its queue while the actors go and the state is saved
        self.logger.close(wait=False)
        killer = self._shutdown_actors(background=True)
        for trial in self.trials:
            if trial.status in (PENDING, PAUSED) and self._stop_all:
                trial.status = TERMINATED
        experiment_state.save(self)
        self.logger.close()
        if killer is not None:
            killer.join(STOP_TIMEOUT_S)
        self._sync(force=True)
        self.reporter.final(self.trials)
        for cb in self.callbacks:
            cb.on_experiment_end(self.trials)
        if self._error_to_raise is not None:
            raise self._error_to_raise

    def _get_many(self, refs: list[Any]) -> list[Any]:
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and len(refs) == 1 and prefetched[0] is refs[0]:
            return [prefetched[1]]
        try:
            return distcore.get(refs, timeout=60)
        except Exception:
            out = []
            for ref in refs:
                try:
                    out.append(distcore.get(ref, timeout=60))
                except Exception as error:  # an actor died: fail that trial only
                    out.append(error)
            return out

    def _stop_everything(self, status: str) -> None:
        for slot in list(self._slots):
            trial = slot.trial
            if trial is not None and trial.trial_id not in self._stopping and trial.status == RUNNING:
                # drop its outstanding poll: the stop reply carries what is left
                for ref, (s, kind) in list(self._inflight.items()):
                    if s is slot and kind in ("poll", "run"):
                        del self._inflight[ref]
                slot.poll_ref = None
                self._request_stop(slot, trial, status)

    def _shutdown_actors(self, background: bool = False, flush_timeout: float = FLUSH_TIMEOUT_S
                         ) -> threading.Thread | None:
        """Flush every trial actor's files (all at once, ``flush_timeout`` in all), then kill them
        (each kill is a GCS call: ``background`` does both on a thread the caller joins, so they
        overlap the final state save)."""
        slots = list(self._slots)
        self._inflight.clear()
        self._spent.clear()

        def shut() -> None:
            self.files.flush_actors(slots, flush_timeout)
            for slot in slots:
                self._free_slot(slot, flush=False)

        if not background or not slots:
            shut()
            return None
        thread = threading.Thread(target=shut, name="tune-actor-shutdown", daemon=True)
        thread.start()
        return thread


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


__all__ = ["TuneController", "TrialFailed", "checkpoint_dir_name", "latest_checkpoint_on_disk"]
