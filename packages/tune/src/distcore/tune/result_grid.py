"""``ResultGrid`` (what ``Tuner.fit()`` returns).

Example::

    best = results.get_best_result(metric="loss", mode="min", scope="all")
    print(best.config, best.metrics["loss"], best.checkpoint)
"""

from distcore.tune._internal.result_grid import ResultGrid

__all__ = ["ResultGrid"]
