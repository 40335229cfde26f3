"""Noticing drivers that died without saying so (SIGKILL, a crash, a lost machine).

A driver that exits cleanly calls ``JobFinished``; one that is killed never
does, and its actors, workers, lease requests and objects would stay. The
control store pings every live job's driver (its core worker's ``Health``
service) every ``interval_s``. A driver whose port refuses connections
``unreachable_after`` times in a row is gone (its process died: about 3 s);
one that answers nothing at all (a timeout: a frozen process, a partitioned
host) gets ``silent_after_s``, unless it runs on this host and its process
still exists (then it is slow, not dead). Then the job ends exactly as if the driver
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


def _local_ips() -> set[str]:
    ips = {"127.0.0.1", "localhost", "::1"}
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            ips.update(a.address for a in addrs)
    except Exception:  # noqa: BLE001 - best effort: loopback alone still covers one-machine clusters
        pass
    return ips


def alive_on_this_host(job: p.JobInfo, local_ips: set[str]) -> bool:
    """True when the job's driver runs on this machine and its process still exists.

    A driver that is merely slow to answer (a long GIL-holding call, a loaded
    machine) must not lose its job: on the head's own host the process table
    is the ground truth, the ping only the fallback for remote drivers.
    """
    if job.driver_address is None or job.driver_pid <= 0:
        return False
    host = job.driver_address.target.rsplit(":", 1)[0].strip("[]")
    if host not in local_ips:
        return False
    try:
        import psutil

        proc = psutil.Process(job.driver_pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone, or not ours to inspect
        return False


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
    local_ips = _local_ips()
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
            if outcome == SILENT and alive_on_this_host(live[job_id], local_ips):
                outcome = OK  # slow, not dead: its process is right here
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
