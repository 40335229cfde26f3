"""The task table: task events merged by task id into one record per task.

Owners report submissions, workers report starts and ends, owners report
the failures no worker saw (a crashed worker, a cancelled or unschedulable
task). Events of one task come from several processes and arrive in any
order; a record's state only moves forward: by attempt first, then along
``PENDING_ARGS_AVAIL < PENDING_NODE_ASSIGNMENT < RUNNING < FINISHED|FAILED``.
A worker's terminal event beats its owner's for the same attempt.

The table is bounded (oldest tasks evicted) and pure: no I/O, so it is
unit-tested without a cluster.

Example::

    table = TaskTable(max_tasks=1000)
    table.add_events(batch)                      # from Gcs.AddTaskEvents
    table.list(TaskQuery(filters=[("state", "=", "RUNNING")], limit=10))
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from distcore._private.core_worker.task_events import (
    FAILED,
    FINISHED,
    PENDING_ARGS_AVAIL,
    PENDING_NODE_ASSIGNMENT,
    RUNNING,
    TASK_TYPES,
    TERMINAL_STATES,
    TaskEvent,
    as_event,
)
from distcore._private.state_filters import check_filters, matches

MAX_TASKS = 100_000
MAX_EXECUTIONS = 100_000
MAX_EVENTS_PER_TASK = 20

_RANK = {PENDING_ARGS_AVAIL: 0, PENDING_NODE_ASSIGNMENT: 1, RUNNING: 2, FINISHED: 3, FAILED: 3}


@dataclass(slots=True)
class TaskRecord:
    """One task as the state API shows it (Ray's ``TaskState`` fields)."""

    task_id: str
    attempt_number: int = 0
    name: str = ""
    state: str = "NIL"
    job_id: str = ""
    actor_id: str | None = None
    type: str = "NORMAL_TASK"
    func_or_class_name: str = ""
    parent_task_id: str | None = None
    node_id: str | None = None
    worker_id: str | None = None
    worker_pid: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    required_resources: dict[str, float] | None = None
    placement_group_id: str | None = None
    creation_time_ms: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


FILTER_KEYS = tuple(f.name for f in dataclasses.fields(TaskRecord) if f.name != "events")


@dataclass(slots=True)
class TaskQuery:
    """``Gcs.ListTasks`` / ``Gcs.SummarizeTasks`` request."""

    filters: list[tuple[str, str, Any]] = field(default_factory=list)
    limit: int = 100
    detail: bool = False


@dataclass(slots=True)
class TaskList:
    """``Gcs.ListTasks`` reply: at most ``limit`` records of ``total`` matches."""

    tasks: list[TaskRecord]
    total: int
    num_evicted: int = 0


class _Row:
    """A record seen as a mapping, for the filters (no copy)."""

    __slots__ = ("_rec",)

    def __init__(self, rec: TaskRecord) -> None:
        self._rec = rec

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self._rec, key, default)


def _ms(t: float) -> int:
    return int(t * 1000)


class TaskTable:
    def __init__(self, max_tasks: int = MAX_TASKS, max_executions: int = MAX_EXECUTIONS) -> None:
        self._max_tasks = max_tasks
        self.records: OrderedDict[str, TaskRecord] = OrderedDict()
        # Finished executions (worker-side terminal events), for timeline().
        self.executions: deque[TaskEvent] = deque(maxlen=max_executions)
        self.num_evicted = 0

    # ------------------------------------------------------------ writes

    def add_events(self, events: list[TaskEvent | tuple]) -> None:
        for item in events:
            event = as_event(item)
            if event.state not in _RANK:
                continue
            if event.state in TERMINAL_STATES and not event.by_owner:
                self.executions.append(event)
            rec = self.records.get(event.task_id)
            if rec is None:
                rec = self.records[event.task_id] = TaskRecord(event.task_id, attempt_number=event.attempt)
                if len(self.records) > self._max_tasks:
                    self.records.popitem(last=False)
                    self.num_evicted += 1
            _merge(rec, event)

    # ------------------------------------------------------------ reads

    def execution_events(self, job_id: str | None = None) -> list[TaskEvent]:
        return [e for e in self.executions if job_id is None or e.job_id == job_id]

    def list(self, query: TaskQuery) -> TaskList:
        filters = check_filters(query.filters, FILTER_KEYS, "tasks")
        limit = max(0, int(query.limit))
        found = [rec for rec in self.records.values() if not filters or matches(_Row(rec), filters)]
        # Events of one task arrive from several processes: order by when tasks were created.
        found.sort(key=lambda rec: rec.creation_time_ms or 0)
        out = [rec if query.detail else dataclasses.replace(rec, events=[]) for rec in found[:limit]]
        return TaskList(out, len(found), self.num_evicted)

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id`` (or of the one task whose id starts with it)."""
        rec = self.records.get(task_id)
        if rec is not None or len(task_id) < 4:
            return rec
        found = [r for tid, r in self.records.items() if tid.startswith(task_id)]
        if len(found) > 1:
            raise ValueError(f"task id prefix {task_id!r} is ambiguous: it matches {len(found)} tasks")
        return found[0] if found else None

    def summarize(self, query: TaskQuery) -> dict[str, Any]:
        """Counts by function or class name and state (Ray's ``summarize_tasks`` layout)."""
        filters = check_filters(query.filters, FILTER_KEYS, "tasks")
        groups: dict[str, dict[str, Any]] = {}
        total = total_actor_tasks = total_actor_scheduled = 0
        for rec in self.records.values():
            if filters and not matches(_Row(rec), filters):
                continue
            key = rec.func_or_class_name or rec.name
            group = groups.get(key)
            if group is None:
                group = groups[key] = {"func_or_class_name": key, "type": rec.type, "state_counts": Counter()}
            group["state_counts"][rec.state] += 1
            if rec.type == "ACTOR_TASK":
                total_actor_tasks += 1
            elif rec.type == "ACTOR_CREATION_TASK":
                total_actor_scheduled += 1
            else:
                total += 1
        for group in groups.values():
            group["state_counts"] = dict(group["state_counts"])
        return {
            "summary": groups, "total_tasks": total, "total_actor_tasks": total_actor_tasks,
            "total_actor_scheduled": total_actor_scheduled, "summary_by": "func_name",
        }


def _merge(rec: TaskRecord, e: TaskEvent) -> None:
    """Fold one event into its task's record."""
    rec.name = rec.name or e.name
    rec.func_or_class_name = rec.func_or_class_name or e.name
    rec.job_id = rec.job_id or e.job_id
    rec.actor_id = rec.actor_id or e.actor_id
    rec.type = TASK_TYPES.get(e.kind, rec.type)
    if e.by_owner and e.state not in TERMINAL_STATES:
        rec.creation_time_ms = _ms(e.start) if rec.creation_time_ms is None else min(rec.creation_time_ms, _ms(e.start))
        rec.parent_task_id = rec.parent_task_id or e.parent_task_id
        rec.required_resources = rec.required_resources or e.resources
        rec.placement_group_id = rec.placement_group_id or e.placement_group_id
    if not e.by_owner and e.attempt >= rec.attempt_number:
        rec.node_id, rec.worker_id, rec.worker_pid = e.node_id, e.worker_id, e.pid
    if rec.creation_time_ms is None:
        rec.creation_time_ms = _ms(e.start)
    if len(rec.events) < MAX_EVENTS_PER_TASK:
        rec.events.append({"state": e.state, "created_ms": _ms(e.end if e.state in TERMINAL_STATES else e.start),
                           "attempt": e.attempt, "by_owner": e.by_owner})
    current = (rec.attempt_number, _RANK.get(rec.state, -1))
    new = (e.attempt, _RANK[e.state])
    worker_beats_owner = new == current and e.state in TERMINAL_STATES and not e.by_owner
    if new < current or (new == current and not worker_beats_owner):
        return
    rec.state = e.state
    rec.attempt_number = e.attempt
    if e.state == RUNNING:
        rec.start_time_ms, rec.end_time_ms = _ms(e.start), None
        rec.error_type = rec.error_message = None
    elif e.state in TERMINAL_STATES:
        if not e.by_owner:
            rec.start_time_ms = _ms(e.start)
        rec.end_time_ms = _ms(e.end)
        failed = e.state == FAILED
        rec.error_type = (e.error_type or "TASK_EXECUTION_EXCEPTION") if failed else None
        rec.error_message = (e.error or None) if failed else None
