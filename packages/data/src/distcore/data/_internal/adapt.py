"""Adapting a running pipeline to a busy cluster.

The executor plans its concurrency from the cluster's CPUs, but other work (train
workers, another job's actors) may take them at any time, and the cluster's view of
free resources lags. So while a pipeline runs, :class:`StartWatcher` checks, every
``CHECK_S`` seconds, the tasks and actors that have waited longer than
``DataContext.task_start_timeout_s`` to start:

- a task-pool operator whose task still waits for a CPU (the state API shows it
  ``PENDING_NODE_ASSIGNMENT``) *shrinks*: the waiting tasks are cancelled and
  resubmitted one at a time without a CPU reservation (their output order kept);
  once the cluster shows a free CPU again the operator *grows back* to reserved,
  full-concurrency tasks;
- an actor pool needs no shrinking: it works on the actors that started while the
  others stay queued in the cluster (they join when room frees up; the state API cannot
  tell an actor waiting for room from one running a slow constructor, so none is
  dropped). A pool with no working actor fails after ``wait_for_actors_timeout_s``
  naming the operator (see ``physical.ActorPoolMapOp``).

GPU tasks are never run without their GPUs: they keep waiting (with a warning).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import distcore

logger = logging.getLogger(__name__)

CHECK_S = 0.5
_EPS = 1e-9


def free_resources() -> dict[str, float] | None:
    """The cluster's free CPU/GPU now (None when it cannot say)."""
    try:
        avail = distcore.available_resources()
    except Exception:  # noqa: BLE001 - no decision without an answer
        return None
    return {"CPU": float(avail.get("CPU", 0.0)), "GPU": float(avail.get("GPU", 0.0))}


def task_state(ref: Any) -> str | None:
    """The state API's state of the task making ``ref`` (None when unknown yet)."""
    from distcore.util.state import get_task

    try:
        row = get_task(ref.task_id(), timeout=5)
    except Exception:  # noqa: BLE001 - unknown: decide on the next check
        return None
    return None if row is None else str(row.state)


class StartWatcher:
    """Shrinks and grows operators' concurrency as the cluster's free resources change."""

    def __init__(self, task_ops: list[Any], timeout_s: float) -> None:
        self.task_ops = task_ops
        self.timeout_s = float(timeout_s)
        self._last = 0.0
        self._warned: set[int] = set()

    def check(self) -> None:
        now = time.monotonic()
        if now - self._last < CHECK_S:
            return
        self._last = now
        free = None
        for op in self.task_ops:
            if op.abandoned:
                continue
            if op.starved:
                free = free if free is not None else free_resources()
                if free is not None and free["CPU"] + _EPS >= max(op.cpus, 1.0):
                    op.unstarve()
                    logger.info("distcore.data: a CPU is free again; operator %s runs its tasks with %g CPU each",
                                op.name, op.cpus)
                continue
            self._check_tasks(op, now)

    def _check_tasks(self, op: Any, now: float) -> None:
        old = [t for t in op.running.values() if not t.confirmed and t.cpus > 0 and now - t.submitted > self.timeout_s]
        stuck = []
        for task in old[:4]:  # a few per check: each asks the control store (at most 5 s)
            state = task_state(task.meta_ref)
            if state is None:
                continue
            if state.startswith("PENDING_NODE"):
                stuck.append(task)
            else:
                task.confirmed = True
        if not stuck:
            return
        free = free_resources()
        if free is not None and free["CPU"] + _EPS >= max(op.request_cpus, 1.0) and not op.gpus:
            return  # the cluster has room: the task waits for a worker process to start, not for a CPU
        if op.gpus:
            if id(op) not in self._warned:
                self._warned.add(id(op))
                logger.warning("distcore.data: operator %s has waited over %.0fs for %g GPU per task; the cluster "
                               "has %s free", op.name, self.timeout_s, op.gpus, free_resources())
            return
        op.starve(stuck)
        logger.warning("distcore.data: %d task(s) of operator %s waited over %gs for a CPU (other work holds "
                       "the cluster's CPUs): running them one at a time without a CPU reservation until a "
                       "CPU frees up", len(stuck), op.name, self.timeout_s)
