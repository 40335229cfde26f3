"""``OptunaSearch``: Optuna's samplers (TPE by default) behind the Searcher interface,
through Optuna's ask-and-tell API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distcore.tune._internal import variants
from distcore.tune._internal.sample import Categorical, Float, Function, Integer
from distcore.tune._internal.searcher import Searcher


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError("OptunaSearch needs optuna: pip install 'distcore-tune[optuna]'") from error
    return optuna


def to_optuna_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune domains (nested) -> {"a/b": optuna distribution}; constants and sample_from are left out."""
    optuna = _import_optuna()
    dist = optuna.distributions
    out: dict[str, Any] = {}
    for path, leaf in variants.walk(space):
        name = "/".join(map(str, path))
        if variants.is_grid(leaf):
            raise ValueError(f"OptunaSearch does not support grid_search (at {name!r}); use tune.choice")
        if isinstance(leaf, Function):
            continue
        if isinstance(leaf, Float):
            if leaf.sampler == "normal":
                raise ValueError(f"OptunaSearch does not support randn/qrandn (at {name!r})")
            log = leaf.sampler == "loguniform"
            if leaf.q is not None and not log:
                out[name] = dist.FloatDistribution(leaf.lower, leaf.upper, step=leaf.q)
            else:
                out[name] = dist.FloatDistribution(leaf.lower, leaf.upper, log=log)
        elif isinstance(leaf, Integer):
            high = leaf.upper if leaf.inclusive else leaf.upper - 1
            log = leaf.sampler == "loguniform"
            out[name] = dist.IntDistribution(leaf.lower, high, log=log, step=1 if log else leaf.q)
        elif isinstance(leaf, Categorical):
            out[name] = dist.CategoricalDistribution(leaf.categories)
        else:
            raise ValueError(f"OptunaSearch cannot convert {leaf!r} at {name!r}")
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split("/")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class OptunaSearch(Searcher):
    """Search with Optuna (TPE by default; any ``optuna.samplers`` sampler).

    ``space``: a tune param_space, an Optuna distribution dict, or a define-by-run
    function ``space(trial) -> dict | None`` (returning constants to add). With a list
    ``metric`` and ``mode``, the study is multi-objective.

    Example::

        OptunaSearch(metric="loss", mode="min", sampler=optuna.samplers.TPESampler(seed=0))
    """

    def __init__(self, space: dict[str, Any] | Callable[[Any], Any] | None = None, metric: str | list[str] | None = None,
                 mode: str | list[str] | None = None, points_to_evaluate: list[dict[str, Any]] | None = None,
                 sampler: Any = None, seed: int | None = None, evaluated_rewards: list[Any] | None = None) -> None:
        super().__init__(metric, mode)
        self._optuna = _import_optuna()
        if sampler is not None and seed is not None:
            raise ValueError("OptunaSearch: pass either sampler or seed, not both (seed the sampler instead)")
        self._sampler = sampler or self._optuna.samplers.TPESampler(seed=seed)
        self._points = list(points_to_evaluate or [])
        self._rewards = evaluated_rewards
        self._define_by_run = callable(space) and not isinstance(space, dict)
        self._space: Any = None
        self._study: Any = None
        self._live: dict[str, Any] = {}
        if space is not None:
            self._set_space(space)

    def _set_space(self, space: Any) -> None:
        if self._define_by_run:
            self._space = space
        elif isinstance(space, dict) and space and all(
                isinstance(v, self._optuna.distributions.BaseDistribution) for v in space.values()):
            self._space = dict(space)
        else:
            self._space = to_optuna_space(space or {})

    def _directions(self) -> list[str]:
        modes = self._mode if isinstance(self._mode, list) else [self._mode]
        return ["minimize" if m == "min" else "maximize" for m in modes]

    def _ensure_study(self) -> None:
        if self._study is not None:
            return
        if self._metric is None or self._mode is None:
            raise ValueError("OptunaSearch needs metric and mode (pass them here or in TuneConfig)")
        if isinstance(self._metric, list) != isinstance(self._mode, list):
            raise ValueError("OptunaSearch: a list of metrics needs a list of modes of the same length")
        self._optuna.logging.set_verbosity(self._optuna.logging.WARNING)
        directions = self._directions()
        self._study = self._optuna.create_study(sampler=self._sampler, directions=directions)
        for point in self._points:
            self._study.enqueue_trial(variants.flatten(point))
        if self._rewards is not None:
            for point, reward in zip(self._points, self._rewards, strict=True):
                trial = self._optuna.trial.create_trial(
                    params=variants.flatten(point), distributions={k: self._space[k] for k in variants.flatten(point)},
                    values=reward if isinstance(reward, list) else [reward])
                self._study.add_trial(trial)
            self._points = []

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None and config and variants.has_domains(config) and not self._define_by_run:
            raise ValueError("OptunaSearch got a space twice: in OptunaSearch(space=...) and in param_space")
        super().set_search_properties(metric, mode, config)
        if self._space is None:
            self._set_space(config)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._ensure_study()
        if self._define_by_run:
            ot_trial = self._study.ask()
            constants = self._space(ot_trial) or {}
            params = unflatten(dict(ot_trial.params))
            params.update(constants)
        else:
            ot_trial = self._study.ask(fixed_distributions=self._space)
            params = unflatten(dict(ot_trial.params))
        self._live[trial_id] = ot_trial
        return params

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if isinstance(self._metric, str) and trial_id in self._live and self._metric in result:
            step = result.get("training_iteration")
            if isinstance(step, int):
                try:
                    self._live[trial_id].report(float(result[self._metric]), step)
                except (NotImplementedError, ValueError, RuntimeError):  # multi-objective or repeated step
                    pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ot_trial = self._live.pop(trial_id, None)
        if ot_trial is None:
            return
        state = self._optuna.trial.TrialState
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        if error or not result or any(m not in result for m in metrics):
            self._study.tell(ot_trial, state=state.FAIL)
            return
        values = [float(result[m]) for m in metrics]
        self._study.tell(ot_trial, values if len(values) > 1 else values[0])

    def get_state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_optuna", None)
        state["_live"] = {}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._optuna = _import_optuna()

    @property
    def study(self) -> Any:
        """The underlying ``optuna.Study``."""
        self._ensure_study()
        return self._study
