"""Task execution events: recorded where tasks run, shipped to the control
store in batches, read back by ``timeline()`` and the state API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distcore._private import protocol as p

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

FLUSH_INTERVAL_S = 1.0
MAX_BUFFERED = 10_000


@dataclass(slots=True)
class TaskEvent:
    task_id: str
    name: str
    job_id: str
    kind: int
    actor_id: str | None
    node_id: str
    worker_id: str
    pid: int
    start: float
    end: float
    state: str  # FINISHED or FAILED
    error: str = ""
    attempt: int = 0


class TaskEventBuffer:
    """Collects events on any thread; a loop task sends them every second."""

    def __init__(self, core: CoreWorker) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._events: deque[TaskEvent] = deque(maxlen=MAX_BUFFERED)
        self._task: asyncio.Task | None = None

    def record(self, spec: p.TaskSpec, start: float, end: float, failed: bool, error: str = "") -> None:
        import os

        core = self._core
        event = TaskEvent(
            spec.task_id, spec.name, spec.job_id, spec.kind, spec.actor_id, core.node_id, core.worker_id,
            os.getpid(), start, end, "FAILED" if failed else "FINISHED", error[:500], spec.attempt,
        )
        with self._lock:
            self._events.append(event)
        if self._task is None:
            core.call_soon(self._start)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        with self._lock:
            batch = list(self._events)
            self._events.clear()
        if not batch:
            return
        try:
            await self._core.gcs().call("Gcs", "AddTaskEvents", batch, timeout=10)
        except Exception:  # noqa: BLE001 - observability must never fail a task
            pass


def now() -> float:
    return time.time()


def chrome_trace(events: list[TaskEvent]) -> list[dict[str, Any]]:
    """Events in Chrome's trace format (load in chrome://tracing or Perfetto)."""
    out = []
    for e in events:
        out.append({
            "cat": "actor_task" if e.kind == p.ACTOR_TASK else "task",
            "name": e.name,
            "pid": f"node {e.node_id[:8]}",
            "tid": f"worker {e.pid}",
            "ts": e.start * 1e6,
            "dur": max(0.0, e.end - e.start) * 1e6,
            "ph": "X",
            "cname": "rail_response" if e.state == "FAILED" else "generic_work",
            "args": {"task_id": e.task_id, "job_id": e.job_id, "state": e.state, "attempt": e.attempt,
                     "actor_id": e.actor_id or "", "error": e.error},
        })
    return out
