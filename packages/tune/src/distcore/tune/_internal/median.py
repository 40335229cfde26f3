"""Median stopping: stop a trial whose best result so far is worse than the median of
the other trials' running means at the same time step."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from distcore.tune._internal.scheduler_base import TrialScheduler


class MedianStoppingRule(TrialScheduler):
    """``grace_period``: no stopping before this much ``time_attr``;
    ``min_samples_required``: other trials needed for a median; ``hard_stop``: STOP
    (else PAUSE) a trial below the median; ``min_time_slice``: not used for
    scheduling order here (trials are not time-sliced)."""

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None, mode: str | None = None,
                 grace_period: float = 60.0, min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True) -> None:
        super().__init__(metric, mode)
        self.time_attr, self.grace_period = time_attr, grace_period
        self.min_samples_required, self.hard_stop = min_samples_required, hard_stop
        self._results: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._completed: set[str] = set()
        self._stopped: set[str] = set()

    def _running_mean(self, trial_id: str, t: float) -> float | None:
        values = [v for time, v in self._results[trial_id] if time <= t]
        return float(np.mean(values)) if values else None

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.time_attr not in result or self._metric not in result:
            return self.CONTINUE
        t = float(result[self.time_attr])
        value = self._sign() * float(result[self._metric])
        self._results[trial.trial_id].append((t, value))
        if t < self.grace_period:
            return self.CONTINUE
        # other trials that have reached time t (running or completed)
        others = [tid for tid, rows in self._results.items() if tid != trial.trial_id and rows[-1][0] >= t]
        means = [m for m in (self._running_mean(tid, t) for tid in others) if m is not None]
        if len(means) < self.min_samples_required:
            return self.CONTINUE
        median = float(np.median(means))
        best = max(v for _, v in self._results[trial.trial_id])
        if best < median:
            self._stopped.add(trial.trial_id)
            return self.STOP if self.hard_stop else self.PAUSE
        return self.CONTINUE

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any] | None) -> None:
        self._completed.add(trial.trial_id)

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        self._results.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"MedianStoppingRule: {len(self._stopped)} stopped"
