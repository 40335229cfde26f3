"""Population based training: at every ``perturbation_interval`` a trial in the
bottom quantile copies (exploits) the checkpoint and config of a trial in the top
quantile, then explores: each mutated hyperparameter is resampled or perturbed,
staying inside its declared space."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from distcore.tune._internal.sample import Categorical, Domain, Float, Integer
from distcore.tune._internal.scheduler_base import TrialScheduler


def _clip(domain: Any, value: Any) -> Any:
    if isinstance(domain, Float) and domain.lower is not None:
        return float(min(max(value, domain.lower), domain.upper))
    if isinstance(domain, Integer):
        hi = domain.upper if domain.inclusive else domain.upper - 1
        return int(min(max(int(round(value)), domain.lower), hi))
    return value


def explore(config: dict[str, Any], mutations: dict[str, Any], resample_probability: float,
            perturbation_factors: tuple[float, float], rng: np.random.Generator) -> dict[str, Any]:
    """A mutated copy of ``config``: for each key in ``mutations``, resample (with
    ``resample_probability``) or perturb (x a factor / a neighbouring list entry)."""
    new = copy.deepcopy(config)
    for key, spec in mutations.items():
        value = config.get(key)
        if isinstance(spec, dict) and not isinstance(spec, Domain):
            new[key] = explore(value or {}, spec, resample_probability, perturbation_factors, rng)
        elif isinstance(spec, (list, tuple)) or isinstance(spec, Categorical):
            choices = list(spec.categories if isinstance(spec, Categorical) else spec)
            if rng.random() < resample_probability or value not in choices:
                new[key] = choices[int(rng.integers(len(choices)))]
            else:
                index = choices.index(value) + (1 if rng.random() < 0.5 else -1)
                new[key] = choices[min(max(index, 0), len(choices) - 1)]
        elif isinstance(spec, Domain):
            if rng.random() < resample_probability or not isinstance(value, (int, float)):
                new[key] = spec.sample(None, rng)
            else:
                factor = perturbation_factors[int(rng.integers(len(perturbation_factors)))]
                new[key] = _clip(spec, value * factor)
                if isinstance(spec, Integer):
                    new[key] = int(new[key])
        elif callable(spec):
            if rng.random() < resample_probability or not isinstance(value, (int, float)):
                new[key] = spec()
            else:
                factor = perturbation_factors[int(rng.integers(len(perturbation_factors)))]
                new[key] = type(value)(value * factor) if isinstance(value, int) else value * factor
        else:
            raise TypeError(f"hyperparam_mutations[{key!r}] must be a list, a tune domain, a callable or a dict, "
                            f"got {type(spec).__name__}")
    return new


class PopulationBasedTraining(TrialScheduler):
    """PBT (asynchronous). Trials must report checkpoints (the exploit copies them).

    Example::

        PopulationBasedTraining(metric="score", mode="max", perturbation_interval=4,
                                hyperparam_mutations={"lr": tune.loguniform(1e-4, 1e-1), "bs": [16, 32, 64]})
    """

    needs_checkpoints = True
    supports_searchers = False

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None, mode: str | None = None,
                 perturbation_interval: float = 60.0, burn_in_period: float = 0.0,
                 hyperparam_mutations: dict[str, Any] | None = None, quantile_fraction: float = 0.25,
                 resample_probability: float = 0.25, perturbation_factors: tuple[float, float] = (1.2, 0.8),
                 custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 log_config: bool = True, require_attrs: bool = True, synch: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(metric, mode)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError("PopulationBasedTraining needs hyperparam_mutations or custom_explore_fn")
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(f"quantile_fraction must be in [0, 0.5], got {quantile_fraction}")
        if perturbation_interval <= 0:
            raise ValueError(f"perturbation_interval must be > 0, got {perturbation_interval}")
        self.time_attr, self.interval, self.burn_in = time_attr, perturbation_interval, burn_in_period
        self.mutations = dict(hyperparam_mutations or {})
        self.quantile_fraction, self.resample_probability = quantile_fraction, resample_probability
        self.perturbation_factors = tuple(perturbation_factors)
        self.custom_explore_fn = custom_explore_fn
        self.require_attrs = require_attrs
        self.rng = np.random.default_rng(seed)
        self._last_perturb: dict[str, float] = {}
        self._score: dict[str, float] = {}
        self.num_perturbations = 0
        self.history: list[dict[str, Any]] = []

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        self._last_perturb[trial.trial_id] = 0.0

    def _quantiles(self, runner: Any) -> tuple[list[str], list[str]]:
        live = [t.trial_id for t in runner.get_trials() if not t.is_finished() and t.trial_id in self._score]
        if len(live) <= 1:
            return [], []
        ranked = sorted(live, key=lambda tid: self._score[tid])
        n = int(np.ceil(len(ranked) * self.quantile_fraction))
        if n > len(ranked) / 2:
            n = int(np.floor(len(ranked) / 2))
        return ranked[:n], ranked[-n:] if n else []

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.time_attr not in result or self._metric not in result:
            if self.require_attrs:
                missing = [k for k in (self.time_attr, self._metric) if k not in result]
                raise ValueError(f"PopulationBasedTraining: result of {trial} lacks {missing}")
            return self.CONTINUE
        t = float(result[self.time_attr])
        self._score[trial.trial_id] = self._sign() * float(result[self._metric])
        if t < self.burn_in or t - self._last_perturb.get(trial.trial_id, 0.0) < self.interval:
            return self.CONTINUE
        self._last_perturb[trial.trial_id] = t
        lower, upper = self._quantiles(runner)
        if trial.trial_id not in lower or not upper:
            return self.CONTINUE
        donor = runner.get_trial(upper[int(self.rng.integers(len(upper)))])
        if donor is None or donor.checkpoint_path is None:
            return self.CONTINUE
        new_config = (self.custom_explore_fn(copy.deepcopy(donor.config)) if self.custom_explore_fn
                      else explore(donor.config, self.mutations, self.resample_probability,
                                   self.perturbation_factors, self.rng))
        trial.pending_exploit = {"config": new_config, "source": donor.trial_id,
                                 "checkpoint": donor.checkpoint_path}
        self.num_perturbations += 1
        self.history.append({"trial": trial.trial_id, "donor": donor.trial_id, "time": t,
                             "old_config": copy.deepcopy(trial.config), "new_config": new_config,
                             "donor_checkpoint": donor.checkpoint_path})
        return self.PAUSE

    def choose_trial_to_run(self, runner: Any) -> Any:
        busy = getattr(runner, "is_busy", lambda trial: False)
        for status in ("PENDING", "PAUSED"):
            for trial in runner.get_trials():
                if trial.status == status and not busy(trial):
                    return trial
        return None

    def debug_string(self) -> str:
        return f"PopulationBasedTraining: {self.num_perturbations} perturbations"
