"""Lease counters and the grant-latency histogram of one node manager.

Plain Python with no I/O and no prometheus-client import: the lease manager
records each outcome with one call, and the metrics endpoint (when it runs)
reads the numbers at scrape time. Without the endpoint this costs a dict
increment per lease request.

Example::

    stats = LeaseStats()
    stats.count("spilled_back", job_id="01000000")
    stats.on_granted("01000000", seconds=0.004)
    stats.counters[("granted", "01000000")]   # 1
    stats.latency.count                       # 1
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = ["DEFAULT_LATENCY_BUCKETS", "LEASE_OUTCOMES", "Histogram", "LeaseStats"]

# Seconds, from a warm worker handed out at once to a cold worker start.
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

LEASE_OUTCOMES = ("granted", "spilled_back", "infeasible")
"""What a lease request at this node ended in (the counters' ``outcome``)."""


class Histogram:
    """Fixed upper bounds, counts per bucket, sum and count (Prometheus's histogram)."""

    def __init__(self, bounds: Sequence[float] = DEFAULT_LATENCY_BUCKETS) -> None:
        bounds = tuple(float(b) for b in bounds)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"histogram bounds must be finite, strictly increasing and non-empty, got {bounds}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` per bucket, ending with ``(inf, count)``."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class LeaseStats:
    """Counts of lease outcomes by job, and how long granted requests waited.

    ``counters`` maps ``(outcome, job_id)`` to a count; outcomes are
    :data:`LEASE_OUTCOMES`. An owner retries a request answered infeasible,
    so ``infeasible`` counts answers, not distinct tasks.
    """

    def __init__(self, latency_bounds: Sequence[float] = DEFAULT_LATENCY_BUCKETS) -> None:
        self.counters: dict[tuple[str, str], int] = {}
        self.latency = Histogram(latency_bounds)

    def count(self, outcome: str, job_id: str) -> None:
        if outcome not in LEASE_OUTCOMES:
            raise ValueError(f"unknown lease outcome {outcome!r}; expected one of {LEASE_OUTCOMES}")
        key = (outcome, job_id)
        self.counters[key] = self.counters.get(key, 0) + 1

    def on_granted(self, job_id: str, seconds: float) -> None:
        """A request was granted ``seconds`` after it arrived (queueing and worker start included)."""
        self.count("granted", job_id)
        self.latency.observe(seconds)
