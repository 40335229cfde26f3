"""Trial schedulers: stop, pause or mutate trials based on their results.

Example::

    from distcore.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(max_t=100, grace_period=1, reduction_factor=3)
"""

from distcore.tune._internal.asha import ASHAScheduler, AsyncHyperBandScheduler
from distcore.tune._internal.hyperband import HyperBandScheduler
from distcore.tune._internal.median import MedianStoppingRule
from distcore.tune._internal.pb2 import PB2
from distcore.tune._internal.pbt import PopulationBasedTraining
from distcore.tune._internal.scheduler_base import FIFOScheduler, TrialScheduler

__all__ = [
    "PB2",
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "HyperBandScheduler",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "TrialScheduler",
]
