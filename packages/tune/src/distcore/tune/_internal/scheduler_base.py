"""The TrialScheduler interface and FIFOScheduler.

Call order (driven by the Tuner): ``set_search_properties(metric, mode)`` once;
``on_trial_add`` when a trial is created; ``choose_trial_to_run`` whenever a slot is
free; ``on_trial_result`` per result, returning CONTINUE, PAUSE or STOP; exactly one
of ``on_trial_complete`` / ``on_trial_error`` / ``on_trial_remove`` at the end.
Schedulers are pure bookkeeping over ``Trial`` objects: no I/O, unit-testable.
"""

from __future__ import annotations

from typing import Any

from distcore.tune._internal.trial import PAUSED, PENDING


class TrialScheduler:
    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"
    #: True when results must reach the scheduler before the trial steps on.
    needs_sync = True
    #: True for schedulers that pause/resume or copy checkpoints (PBT, HyperBand).
    needs_checkpoints = False
    #: False for schedulers whose decisions a searcher would not understand (PBT).
    supports_searchers = True

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        return True

    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        pass

    def on_trial_error(self, runner: Any, trial: Any) -> None:
        pass

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.CONTINUE

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any] | None) -> None:
        pass

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        pass

    def choose_trial_to_run(self, runner: Any) -> Any:
        for status in (PENDING, PAUSED):
            for trial in runner.get_trials():
                if trial.status == status:
                    return trial
        return None

    def debug_string(self) -> str:
        return type(self).__name__

    def save(self, path: str) -> None:
        import cloudpickle

        with open(path + ".tmp", "wb") as f:
            cloudpickle.dump(self.__dict__, f)
        import os

        os.replace(path + ".tmp", path)

    def restore(self, path: str) -> None:
        import pickle

        with open(path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class FIFOScheduler(TrialScheduler):
    """Runs trials in order and never stops them early."""

    needs_sync = False
