"""distcore.tune: hyperparameter tuning on distcore (mirrors ray.tune).

Installed as the ``distcore-tune`` distribution, next to core's ``distcore``;
import it as ``from distcore import tune``.

Example::

    from distcore import tune

    def objective(config):
        tune.report({"loss": (config["x"] - 3) ** 2})

    results = tune.Tuner(objective, param_space={"x": tune.uniform(0, 6)},
                         tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20)).fit()
    print(results.get_best_result().config)
"""

from __future__ import annotations

import importlib
from typing import Any

from distcore.tune._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-tune", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

# Names load on first use, so that a trial actor importing tune stays light.
_SAMPLE = "distcore.tune._internal.sample"
_TRAIN = "distcore.train"
_LAZY: dict[str, str] = {
    **{name: _SAMPLE for name in ("choice", "grid_search", "lograndint", "loguniform", "qloguniform", "qlograndint",
                                  "qrandint", "qrandn", "quniform", "randint", "randn", "sample_from", "uniform")},
    **{name: _TRAIN for name in ("Checkpoint", "CheckpointConfig", "FailureConfig", "Result", "RunConfig")},
    **{name: "distcore.tune._internal.session" for name in ("get_checkpoint", "get_context", "report")},
    "Callback": "distcore.tune._internal.callback",
    "with_parameters": "distcore.tune._internal.parameters",
    "PlacementGroupFactory": "distcore.tune._internal.resources",
    "with_resources": "distcore.tune._internal.resources",
    "Stopper": "distcore.tune._internal.stopper",
    "Trainable": "distcore.tune._internal.trainable",
    "TuneConfig": "distcore.tune._internal.tuner",
    "Tuner": "distcore.tune._internal.tuner",
    "ResultGrid": "distcore.tune._internal.result_grid",
    "register_env": "distcore.tune._internal.registry",
    "register_trainable": "distcore.tune._internal.registry",
}
_SUBMODULES = ("registry", "schedulers", "search", "stopper")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"distcore.tune.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distcore.tune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Callback",
    "Checkpoint",
    "CheckpointConfig",
    "FailureConfig",
    "PlacementGroupFactory",
    "Result",
    "ResultGrid",
    "RunConfig",
    "Stopper",
    "Trainable",
    "TuneConfig",
    "Tuner",
    "__version__",
    "choice",
    "get_checkpoint",
    "get_context",
    "grid_search",
    "lograndint",
    "loguniform",
    "qloguniform",
    "qlograndint",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "register_env",
    "register_trainable",
    "registry",
    "report",
    "sample_from",
    "schedulers",
    "search",
    "stopper",
    "uniform",
    "with_parameters",
    "with_resources",
]
