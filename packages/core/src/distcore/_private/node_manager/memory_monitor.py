"""The memory monitor: kill the newest retriable worker before the node runs out of memory.

Every ``interval_s`` (default 250 ms) the node manager samples the node's
memory: the host's (``psutil``: total minus available) or, when this node
runs in a memory-limited cgroup, the cgroup's usage against its limit. When
usage passes ``threshold`` (default 0.95) it kills one leased worker, chosen
by :func:`pick_victim`:

1. normal tasks with retries left, newest lease first;
2. actors with restarts left, newest first;
3. then the rest (tasks out of retries, then actors out of restarts), newest first,
   so a task that keeps the node out of memory ends with ``OutOfMemoryError``.

Drivers are never candidates (they hold no lease), nor are idle workers. It
then waits for that worker to exit before it kills another, and remembers
why it killed it: an owner asks ``GetWorkerDeathReason`` when its push to
the worker fails (``_private/worker_death.py``), and an actor's death cause
says so. The object store spills instead of failing, so it is not this
monitor's business.

Configuration: ``NodeConfig.memory_usage_threshold`` (``distcore start
--memory-usage-threshold``), else the environment variable
``DISTCORE_MEMORY_USAGE_THRESHOLD``; ``DISTCORE_MEMORY_MONITOR_INTERVAL_S``
(0 turns the monitor off). For tests, ``DISTCORE_MEMORY_USAGE_FILE`` names
a file that replaces the "used bytes" reading: either one number, or lines
``<pid> <bytes>`` that count only while that pid lives (memory a process
holds goes away when it is killed, as real memory does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from distcore._private.worker_death import (
    THRESHOLD_ENV,
    MemoryKill,
    WorkerDeathInfo,
    memory_kill_reason,
)

if TYPE_CHECKING:
    from distcore._private.node_manager.leases import LeaseManager
    from distcore._private.node_manager.worker_pool import WorkerPool, WorkerProc

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95
DEFAULT_INTERVAL_S = 0.25
INTERVAL_ENV = "DISTCORE_MEMORY_MONITOR_INTERVAL_S"
USAGE_FILE_ENV = "DISTCORE_MEMORY_USAGE_FILE"
KILL_GRACE_S = 5.0
"""How long to wait for a killed worker to exit before choosing another one."""
REMEMBERED_DEATHS = 10_000

_CGROUP_V2 = "/sys/fs/cgroup"
_CGROUP_V1 = "/sys/fs/cgroup/memory"


# ---------------------------------------------------------------- configuration


def resolve_threshold(configured: float | None) -> float:
    """The threshold to use: the configured one, else the environment's, else 0.95."""
    value: float | str | None = configured
    source = "--memory-usage-threshold"
    if value is None:
        value, source = os.environ.get(THRESHOLD_ENV), THRESHOLD_ENV
    if value is None or value == "":
        return DEFAULT_THRESHOLD
    return validate_threshold(value, source)


def validate_threshold(value: float | str, source: str = "memory_usage_threshold") -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number between 0 and 1 (a fraction of the node's memory), got {value!r}") from None
    if not 0.0 < threshold <= 1.0:
        raise ValueError(
            f"{source} must be between 0 and 1 (a fraction of the node's memory, e.g. 0.95), got {threshold}"
        )
    return threshold


def resolve_interval() -> float:
    text = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_INTERVAL_S
    except ValueError:
        logger.warning("ignoring %s=%r: not a number of seconds", INTERVAL_ENV, text)
        return DEFAULT_INTERVAL_S


# ---------------------------------------------------------------- reading memory


@dataclass(frozen=True, slots=True)
class MemoryReading:
    used: int
    total: int

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


def parse_cgroup(limit_text: str, usage_text: str, stat_text: str, inactive_key: str) -> MemoryReading | None:
    """A cgroup's (used, limit) from its files' text; None when it has no limit.

    Inactive file pages are reclaimable, so they do not count as used (as in Ray).
    """
    limit_text = limit_text.strip()
    if not limit_text or limit_text == "max":
        return None
    limit = int(limit_text)
    if limit <= 0 or limit >= 2**60:  # v1 spells "unlimited" as a huge number
        return None
    used = int(usage_text.strip())
    for line in stat_text.splitlines():
        key, _, value = line.partition(" ")
        if key == inactive_key:
            used -= int(value)
            break
    return MemoryReading(max(0, used), limit)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_cgroup() -> MemoryReading | None:
    """This process's cgroup memory limit and usage (v2, then v1), if a limit applies."""
    for base, limit, usage, inactive in (
        (_CGROUP_V2, "memory.max", "memory.current", "inactive_file"),
        (_CGROUP_V1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit_text = _read(os.path.join(base, limit))
        usage_text = _read(os.path.join(base, usage))
        if limit_text is None or usage_text is None:
            continue
        try:
            return parse_cgroup(limit_text, usage_text, _read(os.path.join(base, "memory.stat")) or "", inactive)
        except ValueError:
            return None
    return None


def read_fake_usage(path: str, pid_alive: Callable[[int], bool]) -> int | None:
    """Used bytes from a test's file: one number, or ``<pid> <bytes>`` lines of live pids."""
    text = _read(path)
    if text is None:
        return None
    total = 0
    for line in text.split("\n"):
        parts = line.split()
        try:
            if len(parts) == 1:
                total += int(parts[0])
            elif len(parts) == 2 and pid_alive(int(parts[0])):
                total += int(parts[1])
        except ValueError:
            continue
    return total


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def read_memory() -> MemoryReading:
    """The node's memory: the host's, or its cgroup's when the cgroup's limit is lower."""
    vm = psutil.virtual_memory()
    reading = MemoryReading(vm.total - vm.available, vm.total)
    cgroup = read_cgroup()
    if cgroup is not None and cgroup.total < reading.total:
        reading = cgroup
    fake = os.environ.get(USAGE_FILE_ENV)
    if fake:
        used = read_fake_usage(fake, _pid_alive)
        if used is not None:
            reading = MemoryReading(used, reading.total)
    return reading


# ---------------------------------------------------------------- choosing a worker


@dataclass(frozen=True, slots=True)
class Candidate:
    """A leased worker the monitor may kill; ``order`` grows with the lease's age (newest largest)."""

    worker_id: str
    is_actor: bool
    retriable: bool
    order: int
    name: str = ""


def pick_victim(candidates: list[Candidate]) -> Candidate | None:
    """Retriable tasks first, then restartable actors, then the rest; newest first in each group."""
    if not candidates:
        return None

    def rank(c: Candidate) -> tuple[int, int]:
        group = (0 if not c.is_actor else 1) if c.retriable else (2 if not c.is_actor else 3)
        return (group, -c.order)

    return min(candidates, key=rank)


def lease_candidates(leases: LeaseManager) -> list[Candidate]:
    """Workers leased to tasks or actors (not placeholder leases such as a job entrypoint's)."""
    out = []
    for order, lease in enumerate(list(leases.leases.values())):
        req = lease.request
        is_actor = req.for_actor is not None or lease.worker.actor_id is not None
        if not is_actor and req.owner is None:
            continue
        if lease.worker.proc.poll() is not None:
            continue
        out.append(Candidate(lease.worker.worker_id, is_actor, req.retriable, order, req.name))
    return out


# ---------------------------------------------------------------- the monitor


class MemoryMonitor:
    """Samples memory on the node manager's loop and kills a worker when it runs low."""

    def __init__(
        self,
        *,
        node_id: str,
        node_ip: str,
        pool: WorkerPool,
        leases: LeaseManager,
        threshold: float,
        interval_s: float,
        read: Callable[[], MemoryReading] = read_memory,
    ) -> None:
        self.node_id = node_id
        self.node_ip = node_ip
        self.pool = pool
        self.leases = leases
        self.threshold = threshold
        self.interval_s = interval_s
        self._read = read
        self._victim: tuple[WorkerProc, float] | None = None  # the last kill, until that worker exits
        self.deaths: OrderedDict[str, WorkerDeathInfo] = OrderedDict()
        self.kills = 0
        self._warned_at = 0.0

    async def run(self) -> None:
        if self.interval_s <= 0:
            logger.info("memory monitor is off (%s=0)", INTERVAL_ENV)
            return
        logger.info("memory monitor: threshold %.2f, every %.2f s", self.threshold, self.interval_s)
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed sample must not end the monitor
                logger.exception("memory monitor sample failed")

    def tick(self) -> str | None:
        """Sample once; kill a worker if memory is short. Returns the killed worker's id."""
        if self._victim is not None:
            worker, since = self._victim
            if worker.proc.poll() is None and time.monotonic() - since < KILL_GRACE_S:
                return None  # let the last kill take effect first
            self._victim = None
        reading = self._read()
        if reading.fraction < self.threshold:
            return None
        victim = pick_victim(lease_candidates(self.leases))
        worker = self.pool.workers.get(victim.worker_id) if victim else None
        if victim is None or worker is None:
            now = time.monotonic()
            if now - self._warned_at > 10.0:
                self._warned_at = now
                logger.warning("node memory is low (%.0f%% used, threshold %.0f%%) but no worker can be killed",
                               reading.fraction * 100, self.threshold * 100)
            return None
        kill = MemoryKill(reading.used, reading.total, self.threshold, _rss(worker.pid))
        reason = memory_kill_reason(worker.pid, kill)
        self.remember(WorkerDeathInfo(worker.worker_id, self.node_id, self.node_ip, worker.pid, reason, kill))
        what = "actor" if victim.is_actor else "task"
        logger.warning("killing the worker of %s %s (%s, %s): %s", what, victim.name, worker.worker_id[:8],
                       "retriable" if victim.retriable else "not retriable", reason)
        self.kills += 1
        self._victim = (worker, time.monotonic())
        self.pool.kill(worker, reason)
        return worker.worker_id

    def remember(self, info: WorkerDeathInfo) -> None:
        self.deaths[info.worker_id] = info
        while len(self.deaths) > REMEMBERED_DEATHS:
            self.deaths.popitem(last=False)

    def death_info(self, worker_id: str) -> WorkerDeathInfo | None:
        """Why this node ended ``worker_id``: the monitor's record, or the reason it was killed with."""
        info = self.deaths.get(worker_id)
        if info is not None:
            return info
        worker = self.pool.workers.get(worker_id) or next(
            (w for _, w in reversed(self.pool.exited) if w.worker_id == worker_id), None
        )
        if worker is None or not worker.killed_reason:
            return None
        return WorkerDeathInfo(worker_id, self.node_id, self.node_ip, worker.pid, worker.killed_reason)


def _rss(pid: int) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
