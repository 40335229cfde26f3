"""Search algorithms: the Searcher interface, grid/random search and wrappers.

``OptunaSearch`` lives in ``distcore.tune.search.optuna`` and ``HyperOptSearch`` in
``distcore.tune.search.hyperopt`` (they need the optional libraries).

Example::

    from distcore.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from distcore.tune.search.optuna import OptunaSearch

    search_alg = ConcurrencyLimiter(OptunaSearch(), max_concurrent=4)
"""

from distcore.tune._internal.searcher import (
    BasicVariantGenerator,
    ConcurrencyLimiter,
    Repeater,
    Searcher,
)

__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "Repeater", "Searcher"]
