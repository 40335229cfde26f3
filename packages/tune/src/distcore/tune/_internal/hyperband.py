"""Synchronous HyperBand: trials fill brackets; in each bracket every trial runs to
the bracket's milestone and pauses (checkpointed); when all have arrived, the top
``1/eta`` resume (from their checkpoints) to the next milestone, the rest stop."""

from __future__ import annotations

import math
from typing import Any

from distcore.tune._internal.scheduler_base import TrialScheduler
from distcore.tune._internal.trial import ERROR, PAUSED, PENDING, TERMINATED


class Bracket:
    """One successive-halving bracket: ``n0`` trials starting with resource ``r0``."""

    def __init__(self, n0: int, r0: float, eta: float, max_t: float, s: int) -> None:
        self.n0, self.r, self.eta, self.max_t, self.s = n0, r0, eta, max_t, s
        self.trials: list[str] = []
        self.live: list[str] = []
        self.reached: dict[str, float] = {}
        self.resumable: set[str] = set()
        self.stopped: list[str] = []
        self.halvings: list[tuple[float, list[str], list[str]]] = []  # (milestone, kept, stopped)

    def filled(self) -> bool:
        return len(self.trials) >= self.n0

    def add(self, trial_id: str) -> None:
        self.trials.append(trial_id)
        self.live.append(trial_id)

    def all_reached(self) -> bool:
        return bool(self.live) and all(t in self.reached for t in self.live)

    def halve(self) -> tuple[list[str], list[str]]:
        """Keep the top ``len(live) // eta`` (at least 1); returns (kept, stopped)."""
        ranked = sorted(self.live, key=lambda t: self.reached[t], reverse=True)
        keep = max(1, len(ranked) // int(self.eta)) if self.r < self.max_t else 0
        kept, stopped = ranked[:keep], ranked[keep:]
        self.halvings.append((self.r, kept, stopped))
        self.live = kept
        self.stopped.extend(stopped)
        self.reached = {}
        self.r = min(self.r * self.eta, self.max_t)
        self.resumable = set(kept)
        return kept, stopped


class HyperBandScheduler(TrialScheduler):
    """Synchronous HyperBand (needs trials that checkpoint, to pause and resume).

    Example::

        HyperBandScheduler(metric="loss", mode="min", max_t=27, reduction_factor=3)
    """

    needs_checkpoints = True

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None, mode: str | None = None,
                 max_t: float = 81, reduction_factor: float = 3, stop_last_trials: bool = True) -> None:
        super().__init__(metric, mode)
        if max_t < 1 or reduction_factor <= 1:
            raise ValueError(f"HyperBand needs max_t >= 1 and reduction_factor > 1, got {max_t}, {reduction_factor}")
        self.time_attr, self.max_t, self.eta = time_attr, max_t, reduction_factor
        self.stop_last_trials = stop_last_trials
        self.s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self.brackets: list[Bracket] = []
        self._bracket_of: dict[str, Bracket] = {}
        self._next_s = self.s_max_1 - 1

    def bracket_shape(self, s: int) -> tuple[int, float]:
        """(n0, r0) of the bracket with index ``s``."""
        n0 = int(math.ceil(self.s_max_1 / (s + 1) * self.eta ** s))
        r0 = self.max_t * self.eta ** (-s)
        return n0, r0

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        if not self.brackets or self.brackets[-1].filled():
            s = self._next_s
            n0, r0 = self.bracket_shape(s)
            self.brackets.append(Bracket(n0, r0, self.eta, self.max_t, s))
            self._next_s = s - 1 if s > 0 else self.s_max_1 - 1
        bracket = self.brackets[-1]
        bracket.add(trial.trial_id)
        self._bracket_of[trial.trial_id] = bracket

    def _halve(self, runner: Any, bracket: Bracket, reporting: str | None) -> str:
        kept, stopped = bracket.halve()
        decision = self.PAUSE
        for trial_id in stopped:
            if trial_id == reporting:
                decision = self.STOP
                continue
            trial = runner.get_trial(trial_id)
            if trial is not None and trial.status == PAUSED:
                runner.stop_trial(trial)
        if reporting in kept:
            bracket.resumable.discard(reporting)
            decision = self.CONTINUE
        return decision

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None or self.time_attr not in result or self._metric not in result:
            return self.CONTINUE
        if trial.trial_id not in bracket.live:
            return self.STOP
        t = result[self.time_attr]
        if t < bracket.r:
            return self.CONTINUE
        bracket.reached[trial.trial_id] = self._sign() * float(result[self._metric])
        if bracket.r >= self.max_t and (t >= self.max_t and self.stop_last_trials):
            decision = self.STOP
            if bracket.all_reached():
                bracket.halve()
            return decision
        if bracket.filled() and bracket.all_reached():
            return self._halve(runner, bracket, trial.trial_id)
        return self.PAUSE

    def _drop(self, runner: Any, trial: Any) -> None:
        bracket = self._bracket_of.get(trial.trial_id)
        if bracket is None or trial.trial_id not in bracket.live:
            return
        if trial.trial_id not in bracket.reached:
            bracket.live.remove(trial.trial_id)
        if bracket.filled() and bracket.all_reached():
            self._halve(runner, bracket, None)

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any] | None) -> None:
        self._drop(runner, trial)

    def on_trial_error(self, runner: Any, trial: Any) -> None:
        self._drop(runner, trial)

    def choose_trial_to_run(self, runner: Any) -> Any:
        if getattr(runner, "searcher_finished", False):
            # no more trials will come: the last bracket halves with the trials it has
            for bracket in self.brackets:
                if not bracket.filled() and bracket.all_reached():
                    self._halve(runner, bracket, None)
        busy = getattr(runner, "is_busy", lambda trial: False)
        for bracket in self.brackets:
            for trial_id in bracket.trials:
                trial = runner.get_trial(trial_id)
                if trial is not None and trial.status == PENDING:
                    return trial
        for bracket in self.brackets:
            for trial_id in list(bracket.resumable):
                trial = runner.get_trial(trial_id)
                if trial is not None and trial.status == PAUSED and not busy(trial):
                    bracket.resumable.discard(trial_id)
                    return trial
        return None

    def debug_string(self) -> str:
        parts = [f"bracket s={b.s}: {len(b.live)} live, r={b.r}" for b in self.brackets]
        return "HyperBand: " + "; ".join(parts)


__all__ = ["Bracket", "HyperBandScheduler", "TERMINATED", "ERROR"]
