"""Stoppers: decide when a trial (``__call__``) or the whole experiment (``stop_all``) ends."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import numpy as np


class Stopper:
    """Subclass and implement ``__call__(trial_id, result) -> bool`` and ``stop_all() -> bool``.

    Example::

        class StopAtLoss(tune.Stopper):
            def __call__(self, trial_id, result):
                return result["loss"] < 0.01
            def stop_all(self):
                return False
    """

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        raise NotImplementedError

    def stop_all(self) -> bool:
        return False


class NoopStopper(Stopper):
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False


class DictStopper(Stopper):
    """Stops a trial once any ``result[key] >= value``."""

    def __init__(self, criteria: dict[str, Any]) -> None:
        for key, value in criteria.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"stop criterion {key!r} must be a number, got {value!r}")
        self.criteria = dict(criteria)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        for key, value in self.criteria.items():
            if key not in result:
                continue
            got = result[key]
            if isinstance(got, (int, float)) and not isinstance(got, bool) and got >= value:
                return True
        return False


class FunctionStopper(Stopper):
    """Wraps ``fn(trial_id, result) -> bool``."""

    def __init__(self, fn: Callable[[str, dict[str, Any]], bool]) -> None:
        self.fn = fn

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self.fn(trial_id, result))


class CombinedStopper(Stopper):
    """Stops when any of its stoppers does."""

    def __init__(self, *stoppers: Stopper) -> None:
        self.stoppers = stoppers

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return any([s(trial_id, result) for s in self.stoppers])

    def stop_all(self) -> bool:
        return any([s.stop_all() for s in self.stoppers])


class MaximumIterationStopper(Stopper):
    """Stops each trial after ``max_iter`` results."""

    def __init__(self, max_iter: int) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.max_iter = max_iter
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self._counts[trial_id] += 1
        return self._counts[trial_id] >= self.max_iter


class TrialPlateauStopper(Stopper):
    """Stops a trial when the std of its last ``num_results`` values of ``metric`` is
    below ``std`` (after ``grace_period`` results; optionally only once the metric is
    better than ``metric_threshold`` in ``mode``)."""

    def __init__(self, metric: str, std: float = 0.01, num_results: int = 4, grace_period: int = 4,
                 metric_threshold: float | None = None, mode: str | None = None) -> None:
        if metric_threshold is not None and mode not in ("min", "max"):
            raise ValueError("TrialPlateauStopper: metric_threshold needs mode='min' or 'max'")
        self.metric, self.std, self.num_results = metric, std, num_results
        self.grace_period, self.threshold, self.mode = grace_period, metric_threshold, mode
        self._window: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=num_results))
        self._iters: dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.metric not in result:
            return False
        value = float(result[self.metric])
        self._iters[trial_id] += 1
        self._window[trial_id].append(value)
        if self._iters[trial_id] < self.grace_period or len(self._window[trial_id]) < self.num_results:
            return False
        if self.threshold is not None:
            if self.mode == "min" and value > self.threshold:
                return False
            if self.mode == "max" and value < self.threshold:
                return False
        return float(np.std(self._window[trial_id])) <= self.std


class ExperimentPlateauStopper(Stopper):
    """Stops the experiment when the std of the ``top`` best values of ``metric`` stays
    below ``std`` for ``patience`` consecutive results."""

    def __init__(self, metric: str, std: float = 0.001, top: int = 10, mode: str = "min", patience: int = 0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"ExperimentPlateauStopper: mode must be 'min' or 'max', got {mode!r}")
        if top < 1:
            raise ValueError("ExperimentPlateauStopper: top must be >= 1")
        self.metric, self.std, self.top, self.mode, self.patience = metric, std, top, mode, patience
        self._values: list[float] = []
        self._plateau = 0
        self._stop = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.metric not in result:
            return False
        self._values.append(float(result[self.metric]))
        self._values.sort(reverse=self.mode == "max")
        self._values = self._values[: self.top]
        if len(self._values) == self.top and float(np.std(self._values)) <= self.std:
            self._plateau += 1
        else:
            self._plateau = 0
        if self._plateau > self.patience:
            self._stop = True
        return self._stop

    def stop_all(self) -> bool:
        return self._stop


class TimeoutStopper(Stopper):
    """Stops the experiment after ``timeout`` seconds (a number or a ``datetime.timedelta``)."""

    def __init__(self, timeout: Any) -> None:
        seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"TimeoutStopper needs a positive timeout, got {timeout!r}")
        self.timeout = float(seconds)
        self._start: float | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self._start is None:
            self._start = time.monotonic()
        return time.monotonic() - self._start >= self.timeout


def as_stopper(stop: Any) -> Stopper:
    if stop is None:
        return NoopStopper()
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, dict):
        return DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    if isinstance(stop, (list, tuple)):
        return CombinedStopper(*[as_stopper(s) for s in stop])
    raise TypeError(f"RunConfig.stop must be a dict, a Stopper or a callable(trial_id, result), got {type(stop).__name__}")
