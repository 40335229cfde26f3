"""``RunConfig(callbacks=[...])``: the hooks a trainer calls in the driver while a run goes on.

Two kinds of callback are honoured, as in Ray Train:

- :class:`UserCallback` (Ray Train's current interface): ``after_report(run_context,
  metrics, checkpoint)`` once per report round, with every rank's metrics, and
  ``after_exception(run_context, worker_exceptions)`` when ranks fail.
- tune-style callbacks (any object with ``on_trial_start`` / ``on_trial_result`` /
  ``on_checkpoint`` / ``on_trial_recover`` / ``on_trial_complete`` /
  ``on_trial_error`` / ``setup`` / ``on_experiment_end``; e.g. a ``tune.Callback``):
  the run is their one trial, a :class:`RunTrial`.

Hooks run in the driver, in order. A hook that raises ends the run with a
``TrainingFailedError`` naming the callback and hook (as an exception in a Ray
Tune callback ends the experiment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("distcore.train")

TUNE_HOOKS = ("setup", "on_trial_start", "on_trial_result", "on_checkpoint", "on_trial_recover",
              "on_trial_complete", "on_trial_error", "on_experiment_end", "on_step_begin", "on_step_end")
USER_HOOKS = ("after_report", "after_exception")


class UserCallback:
    """Hooks called in the driver (the process that runs ``fit()``); override either.

    Example::

        class LossPrinter(train.UserCallback):
            def after_report(self, run_context, metrics, checkpoint):
                print("rank 0 loss", metrics[0]["loss"], "checkpoint", checkpoint)

        TorchTrainer(loop, run_config=RunConfig(callbacks=[LossPrinter()])).fit()
    """

    def after_report(self, run_context: TrainRunContext, metrics: list[dict[str, Any]],
                     checkpoint: Any | None) -> None:
        """After every rank reported (``metrics[i]`` is rank i's); ``checkpoint`` is the persisted one or None."""

    def after_exception(self, run_context: TrainRunContext, worker_exceptions: dict[int, BaseException]) -> None:
        """After ranks failed: world rank -> the exception it raised (or the error its death gave)."""


@dataclass
class TrainRunContext:
    """What a callback learns about the run."""

    run_config: Any
    train_loop_config: dict[str, Any] | None
    scaling_config: Any
    backend_config: Any
    name: str
    path: str
    attempt: int = 0

    def get_run_config(self) -> Any:
        return self.run_config


@dataclass
class RunTrial:
    """The run as the one trial tune-style callbacks see."""

    trial_id: str
    trial_name: str
    config: dict[str, Any]
    path: str
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None
    num_failures: int = 0
    error: BaseException | None = None

    @property
    def local_path(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.trial_name


class CallbackError(Exception):
    """A callback's hook raised; the run ends."""


def check_callbacks(callbacks: Any) -> None:
    """Raise ``TypeError`` for a ``RunConfig.callbacks`` entry that has no hook a trainer calls."""
    for i, cb in enumerate(callbacks or []):
        if not any(callable(getattr(cb, h, None)) for h in TUNE_HOOKS + USER_HOOKS):
            raise TypeError(
                f"RunConfig.callbacks[{i}] is a {type(cb).__name__} with none of the hooks a trainer calls: "
                f"subclass distcore.train.UserCallback (after_report, after_exception) or tune.Callback "
                f"(on_trial_result, on_checkpoint, on_trial_complete, ...)")


class CallbackRunner:
    """Calls every callback's hooks for one run (the controller's single entry point to them)."""

    def __init__(self, callbacks: list[Any] | None, context: TrainRunContext, trial: RunTrial) -> None:
        self.callbacks = list(callbacks or [])
        self.context = context
        self.trial = trial
        self.iteration = 0
        self._failing = False

    def _call(self, method: str, **kwargs: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, method, None)
            if not callable(fn):
                continue
            try:
                fn(**kwargs)
            except Exception as exc:
                if self._failing:  # already ending with an error: keep the first one
                    logger.exception("train: callback %r.%s raised", cb, method)
                    continue
                raise CallbackError(f"callback {type(cb).__name__}.{method} raised "
                                    f"{type(exc).__name__}: {exc}") from exc

    def _tune(self, method: str, **kwargs: Any) -> None:
        self._call(method, iteration=self.iteration, trials=[self.trial], trial=self.trial, **kwargs)

    def start(self, stop: Any) -> None:
        self._call("setup", stop=stop, num_samples=1, total_num_samples=1)
        self.trial.status = "RUNNING"
        self._tune("on_trial_start")

    def report(self, row: dict[str, Any], rank_metrics: list[dict[str, Any]], checkpoint: Any | None) -> None:
        self.iteration = int(row.get("training_iteration", self.iteration + 1))
        self.trial.last_result = dict(row)
        self._tune("on_trial_result", result=dict(row))
        if checkpoint is not None:
            self.trial.checkpoint = checkpoint
            self._tune("on_checkpoint", checkpoint=checkpoint)
        self._call("after_report", run_context=self.context, metrics=[dict(m) for m in rank_metrics],
                   checkpoint=checkpoint)

    def attempt_failed(self, worker_exceptions: dict[int, BaseException], will_retry: bool) -> None:
        self.trial.num_failures += 1
        self._call("after_exception", run_context=self.context, worker_exceptions=dict(worker_exceptions))
        if will_retry:
            self.context.attempt += 1
            self._tune("on_trial_recover")

    def complete(self) -> None:
        self.trial.status = "TERMINATED"
        self._tune("on_trial_complete")
        self._call("on_experiment_end", trials=[self.trial])

    def error(self, error: BaseException) -> None:
        self._failing = True
        self.trial.status = "ERROR"
        self.trial.error = error
        self._tune("on_trial_error")
        self._call("on_experiment_end", trials=[self.trial])
