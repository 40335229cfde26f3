"""Stoppers (``RunConfig(stop=...)``).

Example::

    from distcore.tune.stopper import CombinedStopper, MaximumIterationStopper, TrialPlateauStopper

    stop = CombinedStopper(MaximumIterationStopper(100), TrialPlateauStopper("loss"))
"""

from distcore.tune._internal.stopper import (
    CombinedStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    NoopStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
)

__all__ = [
    "CombinedStopper",
    "ExperimentPlateauStopper",
    "FunctionStopper",
    "MaximumIterationStopper",
    "NoopStopper",
    "Stopper",
    "TimeoutStopper",
    "TrialPlateauStopper",
]
