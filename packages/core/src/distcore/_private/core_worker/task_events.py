"""Task events: recorded where tasks are submitted and where they run,
shipped to the control store in batches, read back by ``timeline()`` and
the state API (``distcore.util.state.list_tasks``).

A task's life, as events (the control store merges them by task id, see
:mod:`distcore._private.gcs.tasks`):

- the owner submits it: ``PENDING_ARGS_AVAIL`` (it waits for ref
  arguments) or ``PENDING_NODE_ASSIGNMENT`` (it waits for a worker);
- a worker starts it: ``RUNNING``;
- the worker ends it: ``FINISHED`` or ``FAILED`` (these are the executions
  ``timeline()`` draws);
- or the owner gives up on it (worker died, cancelled, unschedulable):
  ``FAILED`` with ``by_owner`` set;
- the owner also records a successful reply as ``FINISHED`` (``by_owner``),
  in case the worker's own report is lost with the worker.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distcore._private import protocol as p

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

FLUSH_INTERVAL_S = 1.0
MAX_BUFFERED = 100_000
MAX_ERROR_CHARS = 2000

# Task states, as Ray names them.
PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"
TERMINAL_STATES = (FINISHED, FAILED)

TASK_TYPES = {p.NORMAL_TASK: "NORMAL_TASK", p.ACTOR_CREATION_TASK: "ACTOR_CREATION_TASK", p.ACTOR_TASK: "ACTOR_TASK"}


@dataclass(slots=True)
class TaskEvent:
    """One step of one task attempt, as recorded by its owner or its worker.

    ``node_id``/``worker_id``/``pid`` are the recording process's; they say
    where the task ran only for events a worker recorded (``by_owner`` false).
    ``start``/``end`` bound an execution (terminal worker events); other
    events carry their time in both.
    """

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
    state: str
    error: str = ""
    attempt: int = 0
    by_owner: bool = False
    error_type: str = ""
    parent_task_id: str | None = None
    resources: dict[str, float] | None = None
    placement_group_id: str | None = None


class TaskEventBuffer:
    """Collects events on any thread; a loop task sends them every second.

    Events are buffered and shipped as plain tuples in :class:`TaskEvent`'s
    field order (cheap to build and to pickle on the hot path); the control
    store turns them back into :class:`TaskEvent`.
    """

    def __init__(self, core: CoreWorker) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._events: deque[tuple] = deque(maxlen=MAX_BUFFERED)
        self._task: asyncio.Task | None = None
        self._sending: asyncio.Lock | None = None  # made on the io loop, at the first flush
        self._pid = os.getpid()

    # ------------------------------------------------------------ recording

    def _add(self, spec: p.TaskSpec, state: str, start: float, end: float, by_owner: bool = False,
             error: str = "", error_type: str = "", extra: tuple = ()) -> None:
        core = self._core
        event = (
            spec.task_id, spec.name, spec.job_id, spec.kind, spec.actor_id, core.node_id, core.worker_id,
            self._pid, start, end, state, error[:MAX_ERROR_CHARS], spec.attempt, by_owner, error_type, *extra,
        )
        with self._lock:
            self._events.append(event)
        if self._task is None:
            core.call_soon(self._start)

    def record_submitted(self, spec: p.TaskSpec) -> None:
        """The owner submitted ``spec`` (called from the submitters)."""
        state = PENDING_NODE_ASSIGNMENT
        for arg in spec.args:
            if arg.object_id is not None and arg.value is None:
                state = PENDING_ARGS_AVAIL
                break
        else:
            if spec.kwargs and any(a.object_id is not None and a.value is None for a in spec.kwargs.values()):
                state = PENDING_ARGS_AVAIL
        now_s = time.time()
        placement = spec.placement[0] if spec.placement else None
        self._add(spec, state, now_s, now_s, True, extra=(spec.parent_task_id, spec.resources or None, placement))

    def record_started(self, spec: p.TaskSpec, start: float) -> None:
        """A worker started running ``spec`` (called from the executor)."""
        self._add(spec, RUNNING, start, start)

    def record(self, spec: p.TaskSpec, start: float, end: float, failed: bool, error: str = "",
               error_type: str = "") -> None:
        """A worker finished running ``spec`` (successfully or not)."""
        self._add(spec, FAILED if failed else FINISHED, start, end, error=error,
                  error_type=error_type or ("TASK_EXECUTION_EXCEPTION" if failed else ""))

    def record_reply(self, spec: p.TaskSpec, start: float, reply: p.TaskReply) -> None:
        """A worker finished ``spec`` with ``reply``; a failure's error is read from it."""
        failed = reply.is_application_error or any(r.is_error for r in reply.returns)
        error_type = error = ""
        if failed:
            error_type, error = _describe_reply_error(reply)
        self.record(spec, start, time.time(), failed, error, error_type)

    def record_done_by_owner(self, spec: p.TaskSpec, reply: p.TaskReply) -> None:
        """The owner got ``spec``'s successful reply: FINISHED, should the worker's own report be
        lost (a worker killed right after it replied). The control store holds it back a few
        seconds: the worker's report, which says where and when it ran, wins."""
        if reply.is_application_error:
            return  # the worker's FAILED report carries the error
        now_s = time.time()
        self._add(spec, FINISHED, now_s, now_s, True)

    def record_failed(self, spec: p.TaskSpec, error: BaseException) -> None:
        """The owner failed ``spec`` without a worker's answer (crash, cancel, unschedulable)."""
        now_s = time.time()
        self._add(spec, FAILED, now_s, now_s, True, _error_text(error), error_type_of(error))

    # ------------------------------------------------------------ shipping

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self, timeout: float = 10.0) -> None:
        # One send at a time: a final flush (a worker exiting) waits for the periodic one in flight.
        if self._sending is None:
            self._sending = asyncio.Lock()
        async with self._sending:
            with self._lock:
                batch = list(self._events)
                self._events.clear()
            if not batch:
                return
            batch = _fold_running(batch)
            try:
                await self._core.gcs().call("Gcs", "AddTaskEvents", batch, timeout=timeout)
            except Exception:  # noqa: BLE001 - observability must never fail a task
                pass


def _fold_running(batch: list[tuple]) -> list[tuple]:
    """``batch`` without the RUNNING events whose attempt's end (by this worker) is in it too.

    The end carries the start time, and the control store adds the RUNNING
    step to the record from it (``gcs/tasks.py``): one event per short task
    instead of two, which is most of the control store's work per task.
    """
    ended = {(e[0], e[12]) for e in batch if e[10] in TERMINAL_STATES and not e[13]}
    if not ended:
        return batch
    return [e for e in batch if e[10] != RUNNING or (e[0], e[12]) not in ended]


def now() -> float:
    return time.time()


def as_event(item: TaskEvent | tuple) -> TaskEvent:
    """An event as shipped (a tuple in field order) or already built."""
    return item if isinstance(item, TaskEvent) else TaskEvent(*item)


_ERROR_TYPES = {
    "TaskError": "TASK_EXECUTION_EXCEPTION",
    "TaskCancelledError": "TASK_CANCELLED",
    "WorkerCrashedError": "WORKER_DIED",
    "ActorDiedError": "ACTOR_DIED",
    "ActorUnavailableError": "ACTOR_UNAVAILABLE",
    "ActorUnschedulableError": "ACTOR_UNSCHEDULABLE_ERROR",
    "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR",
    "RuntimeEnvSetupError": "RUNTIME_ENV_SETUP_FAILED",
    "OwnerDiedError": "OWNER_DIED",
    "ObjectLostError": "OBJECT_LOST",
    "OutOfMemoryError": "OUT_OF_MEMORY",
    "NodeDiedError": "NODE_DIED",
}


def error_type_of(error: BaseException) -> str:
    """Ray's error type name for ``error`` (its class name when Ray has none)."""
    for cls in type(error).__mro__:
        if cls.__name__ in _ERROR_TYPES:
            return _ERROR_TYPES[cls.__name__]
    return type(error).__name__


def _error_text(error: BaseException) -> str:
    from distcore.exceptions import TaskError

    if isinstance(error, TaskError) and error.cause is not None:
        return f"{type(error.cause).__name__}: {error.cause}\n{error.traceback_str}"[:MAX_ERROR_CHARS]
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


def _describe_reply_error(reply: p.TaskReply) -> tuple[str, str]:
    if reply.system_error:
        return "WORKER_DIED", reply.system_error[:MAX_ERROR_CHARS]
    for ret in reply.returns:
        if ret.is_error and ret.value is not None:
            try:
                from distcore._private.serialization import ErrorValue, deserialize

                value = deserialize(ret.value.data)
            except Exception:  # noqa: BLE001 - the description is best effort
                break
            if isinstance(value, ErrorValue):
                return error_type_of(value.error), _error_text(value.error)
            break
    return "TASK_EXECUTION_EXCEPTION", ""


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
