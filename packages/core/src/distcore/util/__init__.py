"""Utilities on top of the core API: actor pools, queues, placement groups,
scheduling strategies (Ray's ``ray.util``).

Example::

    from distcore.util import ActorPool, Queue, placement_group
"""

from distcore.util.actor_pool import ActorPool
from distcore.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from distcore.util.queue import Empty, Full, Queue
from distcore.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

__all__ = [
    "ActorPool",
    "Empty",
    "Full",
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "PlacementGroup",
    "PlacementGroupSchedulingStrategy",
    "Queue",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]
