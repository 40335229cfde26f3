"""``OptunaSearch`` (needs ``pip install 'distcore-tune[optuna]'``).

Example::

    from distcore.tune.search.optuna import OptunaSearch

    tune.TuneConfig(search_alg=OptunaSearch(), metric="loss", mode="min", num_samples=50)
"""

from distcore.tune._internal.optuna_search import OptunaSearch

__all__ = ["OptunaSearch"]
