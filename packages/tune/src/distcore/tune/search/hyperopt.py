"""``HyperOptSearch`` (needs ``pip install 'distcore-tune[hyperopt]'``).

Example::

    from distcore.tune.search.hyperopt import HyperOptSearch

    tune.TuneConfig(search_alg=HyperOptSearch(), metric="loss", mode="min", num_samples=50)
"""

from distcore.tune._internal.hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
