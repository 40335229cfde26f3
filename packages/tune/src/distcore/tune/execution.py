"""Trial resources.

Example::

    from distcore.tune.execution import PlacementGroupFactory

    tune.with_resources(train_fn, PlacementGroupFactory([{"CPU": 1}, {"CPU": 2}]))
"""

from distcore.tune._internal.resources import PlacementGroupFactory

__all__ = ["PlacementGroupFactory"]
