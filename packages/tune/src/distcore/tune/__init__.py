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

from typing import Any

from distcore.tune._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-tune", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

from distcore.tune import registry, schedulers, search, stopper  # noqa: E402  # noqa: E402
from distcore.tune._internal.callback import Callback  # noqa: E402
from distcore.tune._internal.parameters import with_parameters  # noqa: E402
from distcore.tune._internal.registry import register_env, register_trainable  # noqa: E402
from distcore.tune._internal.resources import PlacementGroupFactory, with_resources  # noqa: E402
from distcore.tune._internal.result_grid import ResultGrid  # noqa: E402
from distcore.tune._internal.sample import (  # noqa: E402
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from distcore.tune._internal.stopper import Stopper  # noqa: E402
from distcore.tune._internal.trainable import Trainable  # noqa: E402
from distcore.tune._internal.tuner import TuneConfig, Tuner  # noqa: E402

# train's classes, re-exported (imported on first use so `import distcore.tune` stays light).
_FROM_TRAIN = {
    "Checkpoint": "Checkpoint",
    "CheckpointConfig": "CheckpointConfig",
    "FailureConfig": "FailureConfig",
    "Result": "Result",
    "RunConfig": "RunConfig",
    "get_checkpoint": "get_checkpoint",
    "get_context": "get_context",
    "report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _FROM_TRAIN:
        import distcore.train as train

        return getattr(train, _FROM_TRAIN[name])
    raise AttributeError(f"module 'distcore.tune' has no attribute {name!r}")


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
    "TuneConfig",
    "Trainable",
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
