"""Noticing drivers that died without saying so (SIGKILL, a crash, a lost machine).

A driver that exits cleanly calls ``JobFinished``; one that is killed never
does, and its actors, workers, lease requests and objects would stay. The
control store pings every live job's driver (its core worker's ``Health``
service) every ``interval_s``. A driver whose port refuses connections
``unreachable_after`` times in a row is gone (its process died: about 3 s);
one that answers nothing at all (a timeout: a frozen process, a partitioned
host) gets ``silent_after_s``. Then the job ends exactly as if the driver
had called ``JobFinished``.

:class:`DriverLiveness` is the pure bookkeeping (observations in, verdicts
out); :func:`watch_drivers` is the loop that does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from distcore._private import protocol as p
from distcore._private.rpc import ClientPool, RpcError, RpcUnavailable

logger = logging.getLogger(__name__)

PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 5.0
UNREACHABLE_AFTER = 3
SILENT_AFTER_S = 30.0

OK, UNREACHABLE, SILENT = "ok", "unreachable", "silent"


@dataclass
class _Failures:
    unreachable: int = 0  # consecutive refused pings
    first_failure: float | None = None  # when the current run of failed pings began


class DriverLiveness:
    """Consecutive ping failures per job; says when a driver counts as dead."""

    def __init__(self, unreachable_after: int = UNREACHABLE_AFTER, silent_after_s: float = SILENT_AFTER_S) -> None:
        self.unreachable_after = unreachable_after
        self.silent_after_s = silent_after_s
        self._jobs: dict[str, _Failures] = {}

    def observe(self, job_id: str, outcome: str, now: float) -> bool:
        """Record one ping's outcome (``OK``, ``UNREACHABLE``, ``SILENT``); True when the driver is dead."""
        if outcome == OK:
            self._jobs.pop(job_id, None)
            return False
        failures = self._jobs.setdefault(job_id, _Failures())
        if failures.first_failure is None:
            failures.first_failure = now
        failures.unreachable = failures.unreachable + 1 if outcome == UNREACHABLE else 0
        return failures.unreachable >= self.unreachable_after or now - failures.first_failure >= self.silent_after_s

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def prune(self, live: set[str]) -> None:
        for job_id in [j for j in self._jobs if j not in live]:
            del self._jobs[job_id]


async def ping(clients: ClientPool, address: p.Address, timeout: float = PING_TIMEOUT_S) -> str:
    try:
        await clients.get(address.target).call("Health", "Check", None, timeout=timeout)
    except RpcUnavailable:
        return UNREACHABLE
    except (RpcError, TimeoutError):
        return SILENT
    return OK


async def watch_drivers(
    jobs: Callable[[], dict[str, p.JobInfo]],
    clients: ClientPool,
    on_dead: Callable[[str], Awaitable[None]],
    interval_s: float = PING_INTERVAL_S,
    liveness: DriverLiveness | None = None,
) -> None:
    """Ping the drivers of live jobs forever; call ``on_dead(job_id)`` for each that died."""
    liveness = liveness or DriverLiveness()
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval_s)
        live = {j.job_id: j for j in jobs().values() if not j.is_dead and j.driver_address is not None}
        liveness.prune(set(live))
        if not live:
            continue
        ids = list(live)
        outcomes = await asyncio.gather(*(ping(clients, live[j].driver_address) for j in ids))  # type: ignore[arg-type]
        now = loop.time()
        for job_id, outcome in zip(ids, outcomes, strict=True):
            if not liveness.observe(job_id, outcome, now):
                continue
            job = live[job_id]
            if job.is_dead:
                continue  # it called JobFinished while we pinged
            liveness.forget(job_id)
            assert job.driver_address is not None
            logger.warning(
                "the driver of job %s (pid %s at %s) is gone (%s) without finishing its job: "
                "ending its actors, tasks and workers", job_id, job.driver_pid, job.driver_address.target, outcome,
            )
            clients.drop(job.driver_address.target)
            try:
                await on_dead(job_id)
            except Exception:  # noqa: BLE001 - keep watching the others
                logger.exception("cleaning up job %s failed", job_id)
