"""Why a node ended a worker, and the error an owner raises for it.

A node manager that kills a worker on purpose (its memory monitor, a kill
request, a removed placement group) remembers why. An owner whose push to
that worker failed asks ``NodeManager.GetWorkerDeathReason(worker_id)`` and
gets a :class:`WorkerDeathInfo` (``None``: the node did not end it, so it
crashed or was killed from outside), then turns it into the error ``get``
raises once the task has no retries left: :class:`OutOfMemoryError` for a
memory-monitor kill, :class:`WorkerCrashedError` with the reason otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from distcore._private.rpc import ClientPool, RpcError
from distcore.exceptions import OutOfMemoryError, WorkerCrashedError

logger = logging.getLogger(__name__)

GIB = 1024**3
DEATH_REASON_TIMEOUT_S = 1.0
"""How long an owner waits for a node manager's answer before retrying the task anyway."""

THRESHOLD_ENV = "DISTCORE_MEMORY_USAGE_THRESHOLD"


@dataclass(slots=True)
class MemoryKill:
    """The memory monitor's reading when it chose the worker."""

    used_bytes: int
    total_bytes: int
    threshold: float
    worker_rss_bytes: int | None = None  # the killed worker's resident memory, when it could be read

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0

    def usage_text(self) -> str:
        return (
            f"memory usage {self.used_bytes / GIB:.2f} GiB of {self.total_bytes / GIB:.2f} GiB "
            f"({self.fraction:.0%}) passed the threshold {self.threshold:.0%} ({self.threshold:g})"
        )


@dataclass(slots=True)
class WorkerDeathInfo:
    """Reply of ``NodeManager.GetWorkerDeathReason``: a worker this node ended, and why."""

    worker_id: str
    node_id: str
    node_ip: str
    pid: int
    reason: str  # one line, e.g. "its placement group was removed" or the memory monitor's verdict
    memory: MemoryKill | None = None  # set when the memory monitor killed it


def memory_kill_reason(pid: int, kill: MemoryKill) -> str:
    """The worker's recorded kill reason (actors show it as their death cause)."""
    rss = f", using {kill.worker_rss_bytes / 2**20:.0f} MiB" if kill.worker_rss_bytes is not None else ""
    return (
        f"the memory monitor killed the worker (pid {pid}{rss}) because the node ran low on memory: "
        f"{kill.usage_text()}"
    )


def owner_error(task_name: str, info: WorkerDeathInfo | None, max_retries: int) -> Exception:
    """The error of a task whose worker died and that has no retries left."""
    retries = f"; no retries left (max_retries={max_retries})" if max_retries else ""
    if info is not None and info.memory is not None:
        kill = info.memory
        rss = f", using {kill.worker_rss_bytes / 2**20:.0f} MiB" if kill.worker_rss_bytes is not None else ""
        return OutOfMemoryError(
            f"Task {task_name} was killed by the memory monitor on node {info.node_id[:8]} "
            f"({info.node_ip}) because the node ran low on memory: {kill.usage_text()}. "
            f"Its worker (pid {info.pid}{rss}) was the newest task running there{retries}. "
            "To fix it: run fewer tasks at once per node by asking for more resources per task "
            "(e.g. .options(num_cpus=2) or .options(memory=<bytes>)), use less memory in the task, "
            "add nodes or memory, or raise the threshold (`distcore start --memory-usage-threshold 0.98` "
            f"or the environment variable {THRESHOLD_ENV})."
        )
    why = f": {info.reason}" if info is not None else " (it was killed, crashed or exited)"
    return WorkerCrashedError(f"The worker running task {task_name} died unexpectedly{why}{retries}")


async def fetch_death_info(clients: ClientPool, node_address: str, worker_id: str) -> WorkerDeathInfo | None:
    """Ask the node manager that leased ``worker_id`` why it died (None: unknown or unreachable)."""
    try:
        return await clients.get(node_address).call(
            "NodeManager", "GetWorkerDeathReason", worker_id, timeout=DEATH_REASON_TIMEOUT_S
        )
    except (RpcError, TimeoutError) as exc:
        logger.debug("could not ask %s why worker %s died: %s", node_address, worker_id[:8], exc)
        return None
