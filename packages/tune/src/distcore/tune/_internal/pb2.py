"""PB2: PBT whose explore step picks new hyperparameters with a GP-UCB bandit fit to
how much each config improved the metric per interval (a numpy Gaussian process)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from distcore.tune._internal.pbt import PopulationBasedTraining


def _rbf(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d / length**2)


def gp_ucb(x: np.ndarray, y: np.ndarray, candidates: np.ndarray, kappa: float = 2.0, noise: float = 1e-2,
           length: float = 0.3) -> int:
    """Index of the candidate with the highest upper confidence bound under a GP fit to (x, y)."""
    if len(x) == 0:
        return 0
    y = (y - y.mean()) / (y.std() + 1e-8)
    k = _rbf(x, x, length) + noise * np.eye(len(x))
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    ks = _rbf(candidates, x, length)
    mu = ks @ alpha
    v = np.linalg.solve(chol, ks.T)
    var = np.clip(1.0 - (v**2).sum(0), 1e-12, None)
    return int(np.argmax(mu + kappa * np.sqrt(var)))


class PB2(PopulationBasedTraining):
    """``hyperparam_bounds={"lr": [1e-4, 1e-1], ...}``: continuous bounds explored by GP-UCB.

    Example::

        PB2(metric="score", mode="max", perturbation_interval=4, hyperparam_bounds={"lr": [1e-4, 0.1]})
    """

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None, mode: str | None = None,
                 perturbation_interval: float = 60.0, hyperparam_bounds: dict[str, list[float]] | None = None,
                 quantile_fraction: float = 0.25, log_config: bool = True, require_attrs: bool = True,
                 synch: bool = False, seed: int | None = None, num_candidates: int = 256) -> None:
        if not hyperparam_bounds:
            raise ValueError("PB2 needs hyperparam_bounds={name: [lower, upper], ...}")
        for key, bounds in hyperparam_bounds.items():
            if not isinstance(bounds, (list, tuple)) or len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ValueError(f"PB2 hyperparam_bounds[{key!r}] must be [lower, upper] with lower < upper, "
                                 f"got {bounds!r}")
        self.bounds = {k: (float(v[0]), float(v[1])) for k, v in hyperparam_bounds.items()}
        super().__init__(time_attr=time_attr, metric=metric, mode=mode, perturbation_interval=perturbation_interval,
                         quantile_fraction=quantile_fraction, custom_explore_fn=self._explore,
                         require_attrs=require_attrs, seed=seed)
        self.num_candidates = num_candidates
        self._data: list[tuple[float, list[float], float]] = []  # (t, normalized config, reward change)
        self._prev: dict[str, tuple[float, float]] = {}

    def _normalize(self, config: dict[str, Any]) -> list[float]:
        return [(float(config.get(k, lo)) - lo) / (hi - lo) for k, (lo, hi) in self.bounds.items()]

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.time_attr in result and self._metric in result:
            t, score = float(result[self.time_attr]), self._sign() * float(result[self._metric])
            prev = self._prev.get(trial.trial_id)
            if prev is not None and t > prev[0]:
                self._data.append((t, self._normalize(trial.config), (score - prev[1]) / (t - prev[0])))
            self._prev[trial.trial_id] = (t, score)
        decision = super().on_trial_result(runner, trial, result)
        if decision == self.PAUSE:
            self._prev.pop(trial.trial_id, None)
        return decision

    def _explore(self, config: dict[str, Any]) -> dict[str, Any]:
        new = copy.deepcopy(config)
        data = self._data[-200:]
        dims = len(self.bounds)
        candidates = self.rng.random((self.num_candidates, dims))
        if data:
            t_max = max(d[0] for d in data) or 1.0
            x = np.array([[d[0] / t_max, *d[1]] for d in data])
            y = np.array([d[2] for d in data])
            cand = np.hstack([np.ones((len(candidates), 1)), candidates])
            best = candidates[gp_ucb(x, y, cand)]
        else:
            best = candidates[0]
        for (key, (lo, hi)), unit in zip(self.bounds.items(), best, strict=True):
            value = lo + float(unit) * (hi - lo)
            new[key] = int(round(value)) if isinstance(config.get(key), int) else value
        return new
