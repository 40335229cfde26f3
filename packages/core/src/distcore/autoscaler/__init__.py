"""Autoscaler controls for programs running on a cluster (Ray's ``ray.autoscaler``).

Example::

    from distcore.autoscaler.sdk import request_resources

    request_resources(num_cpus=8)               # keep room for 8 one-CPU tasks
    request_resources(bundles=[{"GPU": 1}] * 2)  # replaces the previous request
    request_resources()                          # clears it
"""

from distcore.autoscaler import sdk
from distcore.autoscaler.sdk import request_resources

__all__ = ["request_resources", "sdk"]
