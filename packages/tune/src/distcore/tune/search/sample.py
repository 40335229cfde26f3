"""Search-space primitives (also exported from ``distcore.tune``).

Example::

    from distcore import tune

    space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.grid_search([1, 2]),
             "width": tune.sample_from(lambda spec: 32 * spec.config.layers)}
"""

from distcore.tune._internal.sample import (
    Categorical,
    Domain,
    Float,
    Function,
    Integer,
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

__all__ = [
    "Categorical",
    "Domain",
    "Float",
    "Function",
    "Integer",
    "choice",
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
    "sample_from",
    "uniform",
]
