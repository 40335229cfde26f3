"""Asynchronous successive halving (ASHA): a trial that reaches a rung is stopped
unless its result is in the top ``1/reduction_factor`` of the results recorded at
that rung so far."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distcore.tune._internal.scheduler_base import TrialScheduler


class _Bracket:
    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int) -> None:
        self.rf = reduction_factor
        count = int(math.log(max_t / min_t) / math.log(reduction_factor) - s + 1 + 1e-9)
        # milestones, highest first: min_t * rf ** (k + s)
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (min_t * reduction_factor ** (k + s), {}) for k in reversed(range(max(count, 0)))]

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def on_result(self, trial_id: str, cur_iter: float, cur_rew: float | None) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial_id not in recorded:
                cutoff = self.cutoff(recorded)
                if cutoff is not None and (cur_rew is None or cur_rew < cutoff):
                    action = TrialScheduler.STOP
                recorded[trial_id] = cur_rew if cur_rew is not None else float("-inf")
                break
        return action


class AsyncHyperBandScheduler(TrialScheduler):
    """ASHA. ``time_attr``: the result field that measures progress; ``max_t``: trials
    stop there; ``grace_period``: no stopping before it; ``reduction_factor``: keep the
    top 1/rf at each rung; ``brackets``: number of brackets (different grace periods).

    Example::

        ASHAScheduler(metric="loss", mode="min", max_t=81, grace_period=1, reduction_factor=3)
    """

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None, mode: str | None = None,
                 max_t: float = 100, grace_period: float = 1, reduction_factor: float = 4, brackets: int = 1,
                 stop_last_trials: bool = True, seed: int | None = None) -> None:
        super().__init__(metric, mode)
        if grace_period <= 0:
            raise ValueError(f"grace_period must be > 0, got {grace_period}")
        if max_t <= 0 or max_t < grace_period:
            raise ValueError(f"max_t ({max_t}) must be > 0 and >= grace_period ({grace_period})")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        if brackets < 1:
            raise ValueError(f"brackets must be >= 1, got {brackets}")
        self.time_attr, self.max_t, self.grace_period = time_attr, max_t, grace_period
        self.reduction_factor, self.stop_last_trials = reduction_factor, stop_last_trials
        self.brackets = [_Bracket(grace_period, max_t, reduction_factor, s) for s in range(brackets)]
        self._trial_bracket: dict[str, int] = {}
        self._rng = np.random.default_rng(seed)
        self._num_stopped = 0

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        sizes = np.array([len(b.rungs) for b in self.brackets], dtype=float)
        probs = np.exp(sizes - sizes.max())
        probs /= probs.sum()
        self._trial_bracket[trial.trial_id] = int(self._rng.choice(len(self.brackets), p=probs))

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.time_attr not in result or self._metric not in result:
            return self.CONTINUE
        t = result[self.time_attr]
        if t >= self.max_t and self.stop_last_trials:
            action = self.STOP
        else:
            bracket = self.brackets[self._trial_bracket.setdefault(trial.trial_id, 0)]
            action = bracket.on_result(trial.trial_id, t, self._sign() * float(result[self._metric]))
        if action == self.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any] | None) -> None:
        if result and self.time_attr in result and self._metric in result:
            bracket = self.brackets[self._trial_bracket.setdefault(trial.trial_id, 0)]
            bracket.on_result(trial.trial_id, result[self.time_attr], self._sign() * float(result[self._metric]))

    def debug_string(self) -> str:
        rungs = "; ".join(f"rung {m}: {len(r)}" for b in self.brackets for m, r in b.rungs)
        return f"ASHA: {self._num_stopped} stopped ({rungs})"


ASHAScheduler = AsyncHyperBandScheduler
