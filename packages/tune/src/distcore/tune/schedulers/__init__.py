"""Trial schedulers: stop, pause or mutate trials based on their results.

Example::

    from distcore.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(max_t=100, grace_period=1, reduction_factor=3)
"""

from distcore.tune._internal.scheduler_base import FIFOScheduler, TrialScheduler

__all__ = ["FIFOScheduler", "TrialScheduler"]
