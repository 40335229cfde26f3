"""``Tuner`` and ``TuneConfig`` (also exported from ``distcore.tune``).

Example::

    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20))
    results = tuner.fit()
"""

from distcore.tune._internal.tuner import TuneConfig, Tuner

__all__ = ["TuneConfig", "Tuner"]
