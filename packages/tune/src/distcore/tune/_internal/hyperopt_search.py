"""``HyperOptSearch``: hyperopt's TPE behind the Searcher interface (ask/tell on a
``hyperopt.Trials`` object)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from distcore.tune._internal import variants
from distcore.tune._internal.sample import Categorical, Float, Function, Integer
from distcore.tune._internal.searcher import Searcher


def _import_hyperopt() -> Any:
    try:
        import hyperopt
    except ImportError as error:
        raise ImportError("HyperOptSearch needs hyperopt: pip install 'distcore-tune[hyperopt]'") from error
    return hyperopt


def to_hyperopt_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune domains (nested) -> a hyperopt space with labels "a/b"; constants kept."""
    hp = _import_hyperopt().hp

    def convert(node: Any, path: tuple[Any, ...]) -> Any:
        name = "/".join(map(str, path))
        if variants.is_grid(node):
            raise ValueError(f"HyperOptSearch does not support grid_search (at {name!r}); use tune.choice")
        if isinstance(node, Function):
            raise ValueError(f"HyperOptSearch does not support sample_from (at {name!r})")
        if isinstance(node, Float):
            if node.sampler == "normal":
                return hp.qnormal(name, node.mean, node.sd, node.q) if node.q else hp.normal(name, node.mean, node.sd)
            if node.sampler == "loguniform":
                lo, hi = math.log(node.lower), math.log(node.upper)
                return hp.qloguniform(name, lo, hi, node.q) if node.q else hp.loguniform(name, lo, hi)
            return hp.quniform(name, node.lower, node.upper, node.q) if node.q else hp.uniform(
                name, node.lower, node.upper)
        if isinstance(node, Integer):
            high = node.upper + (1 if node.inclusive else 0)
            if node.sampler == "loguniform":
                return hp.qloguniform(name, math.log(node.lower), math.log(high - 1), 1)
            return hp.randint(name, node.lower, high)
        if isinstance(node, Categorical):
            return hp.choice(name, [convert(c, (*path, i)) for i, c in enumerate(node.categories)])
        if isinstance(node, dict):
            return {k: convert(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return convert(space, ())


def _fix_types(space: Any, value: Any) -> Any:
    """hyperopt returns floats for integer domains (qloguniform) and numpy scalars."""
    if isinstance(space, Integer):
        return int(round(float(value)))
    if isinstance(space, dict) and isinstance(value, dict):
        return {k: _fix_types(space.get(k), v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


class HyperOptSearch(Searcher):
    """Tree-structured Parzen estimators via hyperopt.

    Example::

        HyperOptSearch(metric="loss", mode="min", random_state_seed=0)
    """

    def __init__(self, space: dict[str, Any] | None = None, metric: str | None = None, mode: str | None = None,
                 points_to_evaluate: list[dict[str, Any]] | None = None, n_initial_points: int = 20,
                 random_state_seed: int | None = None, gamma: float = 0.25) -> None:
        super().__init__(metric, mode)
        hpo = _import_hyperopt()
        self._hpo = hpo
        from functools import partial

        self._algo_kwargs = {"n_startup_jobs": n_initial_points, "gamma": gamma}
        self._algo = partial(hpo.tpe.suggest, **self._algo_kwargs)
        self._rng = np.random.default_rng(random_state_seed)
        self._points = [copy.deepcopy(p) for p in (points_to_evaluate or [])]
        self._tune_space: dict[str, Any] | None = None
        self._domain: Any = None
        self._trials: Any = None
        self._live: dict[str, tuple[int, Any]] = {}
        if space is not None:
            self._setup(space)

    def _setup(self, space: dict[str, Any]) -> None:
        self._tune_space = space
        hp_space = to_hyperopt_space(space)
        self._domain = self._hpo.Domain(lambda spc: spc, hp_space)
        self._trials = self._hpo.Trials()

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        if self._domain is None:
            self._setup(config or {})
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._metric is None or self._mode is None:
            raise ValueError("HyperOptSearch needs metric and mode (pass them here or in TuneConfig)")
        if self._points:
            point = self._points.pop(0)
            self._live[trial_id] = (-1, point)
            return point
        hpo = self._hpo
        new_ids = self._trials.new_trial_ids(1)
        self._trials.refresh()
        docs = self._algo(new_ids, self._domain, self._trials, int(self._rng.integers(2**31 - 1)))
        self._trials.insert_trial_docs(docs)
        self._trials.refresh()
        doc = docs[0]
        config = hpo.base.spec_from_misc(doc["misc"])
        ctrl = hpo.base.Ctrl(self._trials, current_trial=doc)
        memo = self._domain.memo_from_config(config)
        hpo.utils.use_obj_for_literal_in_memo(self._domain.expr, ctrl, hpo.base.Ctrl, memo)
        suggested = hpo.pyll.rec_eval(self._domain.expr, memo=memo)
        self._live[trial_id] = (doc["tid"], doc)
        return _fix_types(self._tune_space, copy.deepcopy(suggested))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        entry = self._live.pop(trial_id, None)
        if entry is None or entry[0] < 0:
            return
        tid, _ = entry
        doc = next((t for t in self._trials._dynamic_trials if t["tid"] == tid), None)
        if doc is None:
            return
        hpo = self._hpo
        import datetime

        doc["refresh_time"] = datetime.datetime.now()
        if error or not result or self._metric not in result:
            doc["state"] = hpo.base.JOB_STATE_ERROR
            doc["misc"]["error"] = ("TrialError", "trial failed or reported no metric")
        else:
            value = float(result[self._metric])
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": value if self._mode == "min" else -value, "status": hpo.STATUS_OK}
        self._trials.refresh()

    def get_state(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_hpo", None)
        state.pop("_algo", None)
        state["_live"] = {}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        from functools import partial

        self.__dict__.update(state)
        self._hpo = _import_hyperopt()
        self._algo = partial(self._hpo.tpe.suggest, **self._algo_kwargs)
