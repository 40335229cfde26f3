"""``Tuner`` and ``TuneConfig``: set up an experiment, run it, restore it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import distcore
from distcore.tune._internal import experiment_state
from distcore.tune._internal import storage as storage_mod
from distcore.tune._internal.compat import RunConfig
from distcore.tune._internal.controller import TuneController
from distcore.tune._internal.loggers import read_results
from distcore.tune._internal.registry import flush as flush_registry
from distcore.tune._internal.registry import get_trainable_cls
from distcore.tune._internal.result_grid import ResultGrid
from distcore.tune._internal.scheduler_base import FIFOScheduler, TrialScheduler
from distcore.tune._internal.searcher import (
    BasicVariantGenerator,
    ConcurrencyLimiter,
    Searcher,
    check_mode,
)
from distcore.tune._internal.stopper import as_stopper
from distcore.tune._internal.trainable import Trainable
from distcore.tune._internal.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from distcore.tune._internal.trial_checkpoints import checkpoint_metrics, latest_checkpoint_on_disk

STORAGE_ENV = "DISTCORE_STORAGE_PATH"


@dataclass
class TuneConfig:
    """How to search: the metric to optimize, the search algorithm and scheduler, how many trials.

    Example::

        TuneConfig(metric="loss", mode="min", num_samples=50,
                   search_alg=OptunaSearch(), scheduler=ASHAScheduler(max_t=100))

    ``num_samples``: trials to run (-1: until a stopper or ``time_budget_s`` ends it; with
    grid search, each grid point is sampled ``num_samples`` times). ``reuse_actors``:
    reuse trial actors between trials (default: yes for functions, and for Trainable
    classes that implement ``reset_config``).
    """

    metric: str | list[str] | None = None
    mode: str | list[str] | None = None
    search_alg: Searcher | None = None
    scheduler: TrialScheduler | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or (
                self.num_samples < 1 and self.num_samples != -1):
            raise ValueError(f"TuneConfig.num_samples must be an int >= 1 (or -1: unlimited), got {self.num_samples!r}")
        if self.max_concurrent_trials is not None and (
                not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 1):
            raise ValueError(f"TuneConfig.max_concurrent_trials must be an int >= 1, got {self.max_concurrent_trials!r}")
        if self.time_budget_s is not None:
            seconds = self.time_budget_s.total_seconds() if hasattr(self.time_budget_s, "total_seconds") \
                else self.time_budget_s
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ValueError(f"TuneConfig.time_budget_s must be > 0, got {self.time_budget_s!r}")
            self.time_budget_s = float(seconds)
        if self.search_alg is not None and not isinstance(self.search_alg, Searcher):
            raise TypeError(f"TuneConfig.search_alg must be a Searcher, got {type(self.search_alg).__name__}")
        if self.scheduler is not None and not isinstance(self.scheduler, TrialScheduler):
            raise TypeError(f"TuneConfig.scheduler must be a TrialScheduler, got {type(self.scheduler).__name__}")


def _trainable_name(trainable: Any) -> str:
    name = getattr(trainable, "__name__", None) or type(trainable).__name__
    return name.replace("<", "").replace(">", "")


def _resolve_trainable(trainable: Any) -> Any:
    if isinstance(trainable, str):
        return get_trainable_cls(trainable)
    from distcore.tune._internal.trainer_adapter import is_trainer, trainer_to_trainable

    if is_trainer(trainable):
        return trainer_to_trainable(trainable)
    if isinstance(trainable, type):
        if not issubclass(trainable, Trainable):
            raise TypeError(f"a class trainable must subclass tune.Trainable, got {trainable.__name__}")
        return trainable
    if not callable(trainable):
        raise TypeError(f"trainable must be a function, a tune.Trainable subclass, a registered name or a "
                        f"Trainer, got {type(trainable).__name__}")
    return trainable


def _as_param_dict(param_space: Any) -> dict[str, Any] | None:
    """A dict, or an object with ``to_dict()`` (e.g. an rllib ``AlgorithmConfig``) as its dict."""
    if param_space is None or isinstance(param_space, dict):
        return param_space
    to_dict = getattr(param_space, "to_dict", None)
    if callable(to_dict):
        converted = to_dict()
        if not isinstance(converted, dict):
            raise TypeError(f"param_space.to_dict() of {type(param_space).__name__} must return a dict, "
                            f"got {type(converted).__name__}")
        return converted
    raise TypeError(f"param_space must be a dict (or an object with a to_dict() method, such as an rllib "
                    f"AlgorithmConfig), got {type(param_space).__name__}")


class Tuner:
    """Tune ``trainable``'s hyperparameters over ``param_space``.

    Example::

        def objective(config):
            for step in range(10):
                tune.report({"loss": (config["x"] - 3) ** 2 / (step + 1)})

        tuner = tune.Tuner(objective, param_space={"x": tune.uniform(0, 6)},
                           tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=10))
        best = tuner.fit().get_best_result()

    ``param_space`` is a dict of values and search-space primitives (nested dicts allowed), or an
    object with ``to_dict()`` such as an rllib ``AlgorithmConfig``. ``run_config.storage_path`` may
    be a local directory or a URI (``s3://...``, ``memory://...``; or a path inside
    ``run_config.storage_filesystem``).
    """

    def __init__(self, trainable: Any = None, *, param_space: dict[str, Any] | Any | None = None,
                 tune_config: TuneConfig | None = None, run_config: Any = None, _restore: dict[str, Any] | None = None
                 ) -> None:
        if trainable is None:
            raise TypeError("Tuner needs a trainable (a function, a tune.Trainable subclass, a name, or a Trainer)")
        param_space = _as_param_dict(param_space)
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(f"tune_config must be a tune.TuneConfig, got {type(tune_config).__name__}")
        if run_config is None:
            run_config = RunConfig()
        elif not isinstance(run_config, RunConfig):
            raise TypeError(f"run_config must be a tune.RunConfig, got {type(run_config).__name__}")
        self._original = trainable
        self._trainable = _resolve_trainable(trainable)
        self._param_space = dict(param_space or {})
        from distcore.tune._internal.trainer_adapter import is_trainer

        if is_trainer(trainable):
            self._param_space = self._trainable._merge_space(self._param_space)
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config
        self._restore = _restore
        self._name = (run_config.name or (_restore or {}).get("name")
                      or f"{_trainable_name(trainable)}_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
        self._storage = (_restore or {}).get("storage") or storage_mod.ExperimentStorage.create(
            run_config.storage_path, getattr(run_config, "storage_filesystem", None), self._name)
        self._path = self._storage.local_path
        self._check_combinations()

    # ------------------------------------------------------------------ validation
    def _check_combinations(self) -> None:
        cfg = self._tune_config
        scheduler = cfg.scheduler
        if scheduler is not None and not scheduler.supports_searchers and cfg.search_alg is not None \
                and not isinstance(cfg.search_alg, BasicVariantGenerator):
            raise ValueError(f"{type(scheduler).__name__} cannot be combined with the search algorithm "
                             f"{type(cfg.search_alg).__name__}: it changes configs itself. Use the default "
                             "search (search_alg=None) or another scheduler.")
        if scheduler is not None and scheduler.needs_checkpoints:
            trainable = self._trainable
            if isinstance(trainable, type) and issubclass(trainable, Trainable) \
                    and not trainable.implements_checkpointing():
                raise ValueError(f"{type(scheduler).__name__} pauses and resumes trials from checkpoints, but "
                                 f"{trainable.__name__} does not implement save_checkpoint/load_checkpoint")
        if isinstance(cfg.metric, list) and not isinstance(cfg.mode, list):
            raise ValueError("TuneConfig: a list of metrics (multi-objective) needs a list of modes")
        if isinstance(cfg.metric, list) and scheduler is not None and not isinstance(scheduler, FIFOScheduler):
            raise ValueError("multi-objective metrics work with FIFO scheduling only")

    # ------------------------------------------------------------------ running
    def _reuse_actors(self) -> bool:
        reuse = self._tune_config.reuse_actors
        trainable = self._trainable
        if reuse is None:
            if isinstance(trainable, type) and issubclass(trainable, Trainable):
                return trainable.supports_reset()
            return not getattr(trainable, "_tune_no_reuse", False)
        return bool(reuse)

    def _build_controller(self) -> TuneController:
        cfg, run = self._tune_config, self._run_config
        searcher = cfg.search_alg or BasicVariantGenerator(random_state=cfg.seed)
        scheduler = cfg.scheduler or FIFOScheduler()
        metric, mode = cfg.metric, cfg.mode
        if not searcher.set_search_properties(metric, mode, self._param_space, num_samples=cfg.num_samples):
            raise ValueError(f"{type(searcher).__name__} already has a different metric/mode than TuneConfig")
        if metric is None:
            metric, mode = searcher.metric, searcher.mode
        if not isinstance(scheduler, FIFOScheduler):
            scheduler.set_search_properties(metric if isinstance(metric, str) else None,
                                            mode if isinstance(mode, str) else None)
            if scheduler.metric is None or scheduler.mode is None:
                raise ValueError(f"{type(scheduler).__name__} needs metric and mode (in TuneConfig or the scheduler)")
        if cfg.max_concurrent_trials and not isinstance(searcher, (BasicVariantGenerator, ConcurrencyLimiter)):
            searcher = ConcurrencyLimiter(searcher, cfg.max_concurrent_trials)
        if hasattr(scheduler, "set_param_space"):
            scheduler.set_param_space(self._param_space)
        failure = run.failure_config
        restore = self._restore or {}
        trials = restore.get("trials")
        if restore.get("searcher_state_path") and os.path.exists(restore["searcher_state_path"]):
            try:
                searcher.restore(restore["searcher_state_path"])
            except Exception:
                pass
        scheduler_state = os.path.join(self._path, experiment_state.SCHEDULER_FILE)
        if restore and os.path.exists(scheduler_state):
            try:
                scheduler.restore(scheduler_state)
            except Exception:  # an unreadable state: the scheduler starts fresh
                pass
        return TuneController(
            trainable=self._trainable, trainable_name=_trainable_name(self._original),
            param_space=self._param_space, searcher=searcher, scheduler=scheduler,
            stopper=as_stopper(run.stop), experiment_path=self._path, experiment_name=self._name,
            num_samples=cfg.num_samples, metric=metric, mode=mode,
            max_concurrent_trials=cfg.max_concurrent_trials, time_budget_s=cfg.time_budget_s,
            reuse_actors=self._reuse_actors(), max_failures=failure.max_failures if failure else 0,
            fail_fast=failure.fail_fast if failure else False, checkpoint_config=run.checkpoint_config,
            callbacks=list(run.callbacks or []), verbose=run.verbose if run.verbose is not None else 1,
            trial_name_creator=cfg.trial_name_creator, trial_dirname_creator=cfg.trial_dirname_creator,
            trials=trials, num_suggested=restore.get("num_suggested", 0),
            searcher_finished=restore.get("searcher_finished", False), seed=cfg.seed, storage=self._storage)

    def fit(self) -> ResultGrid:
        """Run the experiment; returns a ``ResultGrid`` (trial errors are in it, not raised,
        unless ``FailureConfig(fail_fast="raise")``)."""
        if not distcore.is_initialized():
            distcore.init()
        flush_registry()
        experiment_state.save_tuner(self._path, {
            "param_space": self._param_space, "tune_config": self._tune_config, "run_config": self._run_config,
            "name": self._name, "trainable_name": _trainable_name(self._original)})
        controller = self._build_controller()
        self._controller = controller
        controller.run()
        return ResultGrid(controller.trials, controller.metric, controller.mode, self._path, storage=self._storage)

    def get_results(self) -> ResultGrid:
        """The results so far (after ``fit``, or of a restored experiment)."""
        controller = getattr(self, "_controller", None)
        if controller is not None:
            return ResultGrid(controller.trials, controller.metric, controller.mode, self._path,
                              storage=self._storage)
        trials = (self._restore or {}).get("trials") or []
        return ResultGrid(trials, self._tune_config.metric, self._tune_config.mode, self._path,
                          storage=self._storage)

    # ------------------------------------------------------------------ restore
    @classmethod
    def can_restore(cls, path: str | os.PathLike[str], storage_filesystem: Any = None) -> bool:
        """True if ``path`` (a directory, a URI, or a path inside ``storage_filesystem``) holds an
        experiment that ``Tuner.restore`` can resume."""
        store = storage_mod.for_restore(path, storage_filesystem)
        if store.remote:
            return store.remote_has(experiment_state.STATE_FILE, experiment_state.TUNER_FILE)
        return experiment_state.can_restore(store.local_path)

    @classmethod
    def restore(cls, path: str | os.PathLike[str], trainable: Any, resume_unfinished: bool = True,
                resume_errored: bool = False, restart_errored: bool = False,
                param_space: dict[str, Any] | None = None, storage_filesystem: Any = None) -> Tuner:
        """Resume an interrupted or crashed experiment from ``path``: finished trials stay,
        unfinished ones resume from their latest checkpoint (``resume_unfinished``), errored
        ones resume from theirs (``resume_errored``) or start over (``restart_errored``).
        ``path`` may be a URI (``s3://...``, ``memory://...``) or a path inside ``storage_filesystem``:
        the experiment is downloaded to a local staging directory and mirrored back as it runs."""
        if not cls.can_restore(path, storage_filesystem):
            raise ValueError(f"no restorable experiment at {os.fspath(path)!r} (expected "
                             f"{experiment_state.STATE_FILE} and {experiment_state.TUNER_FILE})")
        store = storage_mod.for_restore(path, storage_filesystem)
        store.download()
        path = store.local_path
        saved = experiment_state.load_tuner(path)
        state = experiment_state.load(path)
        resolved = _resolve_trainable(trainable)
        from distcore.tune._internal.resources import resources_for

        trials = []
        for doc in state["trials"]:
            trial = Trial.from_state(doc, path, resources_for(resolved, doc["config"]))
            on_disk = latest_checkpoint_on_disk(trial.local_path)
            if on_disk is not None and (trial.checkpoint_path is None or on_disk[0] > trial.checkpoint_path):
                trial.checkpoint_path, trial.checkpoint_iteration, trial.checkpoint_time_total = on_disk
                trial.checkpoint_index = int(os.path.basename(on_disk[0]).rsplit("_", 1)[1]) + 1
            # the newest result we know of: the state file's, result.json's, or the checkpoint's
            candidates = [trial.last_result]
            rows = read_results(trial.local_path)
            if rows:
                candidates.append({k: v for k, v in rows[-1].items() if k != "config"})
            if trial.checkpoint_path:
                candidates.append(checkpoint_metrics(trial.checkpoint_path))
            newest = max(candidates, key=lambda r: r.get("training_iteration", -1) if r else -1)
            if newest and newest is not trial.last_result:
                trial.last_result = dict(newest)
                trial.update_metric_analysis(newest)
            if trial.status in (RUNNING, PENDING, PAUSED):
                trial.status = PENDING if resume_unfinished else TERMINATED
            elif trial.status == ERROR:
                if restart_errored:
                    trial.status, trial.error, trial.num_failures = PENDING, None, 0
                    trial.checkpoint_path, trial.checkpoint_iteration, trial.checkpoint_index = None, 0, 0
                elif resume_errored:
                    trial.status, trial.error, trial.num_failures = PENDING, None, 0
            trials.append(trial)
        restore = {"trials": trials, "num_suggested": state.get("num_suggested", len(trials)),
                   "searcher_finished": state.get("searcher_finished", False), "name": saved["name"],
                   "path": path, "searcher_state_path": os.path.join(path, experiment_state.SEARCHER_FILE),
                   "storage": store}
        param_space = _as_param_dict(param_space)
        return cls(trainable, param_space=param_space if param_space is not None else saved["param_space"],
                   tune_config=saved["tune_config"], run_config=saved["run_config"], _restore=restore)


__all__ = ["TuneConfig", "Tuner", "TERMINATED"]
