"""The task table: task events merged by task id into one record per task.

Owners report submissions, workers report starts and ends, owners report
the failures no worker saw (a crashed worker, a cancelled or unschedulable
task). Events of one task come from several processes and arrive in any
order; a record's state only moves forward: by attempt first, then along
``PENDING_ARGS_AVAIL < PENDING_NODE_ASSIGNMENT < RUNNING < FINISHED|FAILED``.
A worker's terminal event beats its owner's for the same attempt.

Final events can be lost (a worker SIGKILLed between a task's end and its
next flush, a driver gone): :meth:`TaskTable.fail_unfinished` marks the
tasks of a dead worker, node or job FAILED with the cause, so no row stays
PENDING or RUNNING forever. The control store persists ended records
(``server.py``); a restarted head reloads them (:meth:`TaskTable.restore`).

The table is bounded (oldest tasks evicted) and pure: no I/O, so it is
unit-tested without a cluster.

Example::

    table = TaskTable(max_tasks=1000)
    table.add_events(batch)                      # from Gcs.AddTaskEvents
    table.list(TaskQuery(filters=[("state", "=", "RUNNING")], limit=10))
"""

from __future__ import annotations

import dataclasses
import time
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
#: Seconds an owner's FINISHED event waits for the worker's own report before it is applied.
OWNER_END_GRACE_S = 5.0

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
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))


def record_to_row(rec: TaskRecord) -> tuple:
    """``rec`` as a plain tuple in field order: what the control store persists.

    Pickling a tuple is several times cheaper than pickling a slotted
    dataclass (measured ~15 vs ~110 µs per record), and every ended task is
    written once.
    """
    return tuple(getattr(rec, name) for name in _RECORD_FIELDS)


def record_from_row(row: TaskRecord | tuple) -> TaskRecord:
    """A persisted row (a tuple from :func:`record_to_row`, or a record an older head wrote) as a record."""
    return row if isinstance(row, TaskRecord) else TaskRecord(*row)


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
        # task id -> (node id, worker id) of the process that submitted it (its owner).
        self._owners: dict[str, tuple[str, str]] = {}
        self._unfinished: set[str] = set()  # ids of records not FINISHED/FAILED (what fail_unfinished scans)
        # The owners' FINISHED events (from the reply), held back while the worker's own report, which says
        # where and when it ran, may still come: task id -> (arrival, event). Applied by sweep() after
        # OWNER_END_GRACE_S, or at once when the worker, its node or the job is known to be gone.
        self._owner_ends: OrderedDict[str, tuple[float, TaskEvent]] = OrderedDict()
        self.owner_end_grace_s = OWNER_END_GRACE_S

    # ------------------------------------------------------------ writes

    def add_events(self, events: list[TaskEvent | tuple], now: float | None = None) -> list[TaskRecord]:
        """Merge ``events``; the records they (or :meth:`sweep`) left in a terminal state (to persist)."""
        now = time.monotonic() if now is None else now
        ended: dict[str, TaskRecord] = {rec.task_id: rec for rec in self.sweep(now)}
        for item in events:
            event = as_event(item)
            if event.state not in _RANK:
                continue
            if event.by_owner and event.state == FINISHED:
                rec = self.records.get(event.task_id)
                if rec is None or (rec.attempt_number, _RANK.get(rec.state, -1)) < (event.attempt, _RANK[FINISHED]):
                    self._owner_ends[event.task_id] = (now, event)
                    self._owner_ends.move_to_end(event.task_id)
                continue
            held = self._owner_ends.get(event.task_id)
            if held is not None and event.state in TERMINAL_STATES and not event.by_owner \
                    and event.attempt >= held[1].attempt:
                del self._owner_ends[event.task_id]  # the worker's own report makes the owner's moot
            if event.state in TERMINAL_STATES and not event.by_owner:
                self.executions.append(event)
            rec = self.records.get(event.task_id)
            if rec is None:
                rec = self.records[event.task_id] = TaskRecord(event.task_id, attempt_number=event.attempt)
                if len(self.records) > self._max_tasks:
                    old, _ = self.records.popitem(last=False)
                    self._owners.pop(old, None)
                    self._unfinished.discard(old)
                    self.num_evicted += 1
            if event.by_owner and event.state not in TERMINAL_STATES:
                self._owners[event.task_id] = (event.node_id, event.worker_id)
            _merge(rec, event)
            if rec.state in TERMINAL_STATES:
                ended[rec.task_id] = rec
                self._unfinished.discard(rec.task_id)
            else:
                self._unfinished.add(rec.task_id)
        return list(ended.values())

    def restore(self, records: list[TaskRecord | tuple]) -> None:
        """Put back records a previous head persisted (oldest first), under any newer ones."""
        for row in records:
            rec = record_from_row(row)
            if rec.task_id in self.records or rec.state not in TERMINAL_STATES:
                continue
            self.records[rec.task_id] = rec
            self.records.move_to_end(rec.task_id, last=False)
        while len(self.records) > self._max_tasks:
            old, _ = self.records.popitem(last=False)
            self._owners.pop(old, None)
            self._unfinished.discard(old)
            self.num_evicted += 1
        # Oldest first again: creation order decides which records are evicted first.
        ordered = sorted(self.records.values(), key=lambda r: r.creation_time_ms or 0)
        self.records = OrderedDict((r.task_id, r) for r in ordered)

    def fail_unfinished(self, error_type: str, message: str, *, job_id: str | None = None,
                        node_id: str | None = None, worker_id: str | None = None,
                        when: float | None = None) -> list[TaskRecord]:
        """Mark the tasks whose end will never be reported FAILED; the records changed.

        A task is matched when it is not FINISHED/FAILED and it belongs to
        ``job_id`` (its driver exited), or it runs on or was submitted from
        ``node_id`` (the node died), or it runs in or was submitted by
        ``worker_id`` (the worker died). A later end event from its worker
        still replaces this verdict (a worker's report beats a reconciled one).
        """
        now_ms = _ms(time.time() if when is None else when)
        changed = []
        for task_id in list(self._unfinished):
            rec = self.records.get(task_id)
            if rec is None or rec.state in TERMINAL_STATES:
                self._unfinished.discard(task_id)
                continue
            owner = self._owners.get(rec.task_id, ("", ""))
            running = rec.state == RUNNING
            if not (
                (job_id is not None and rec.job_id == job_id)
                or (node_id is not None and ((running and rec.node_id == node_id) or owner[0] == node_id))
                or (worker_id is not None and ((running and rec.worker_id == worker_id) or owner[1] == worker_id))
            ):
                continue
            if task_id in self._owner_ends:  # its owner got the reply: it finished
                changed += self.sweep(task_ids={task_id})
                continue
            rec.state = FAILED
            rec.end_time_ms = now_ms
            rec.error_type, rec.error_message = error_type, message
            if len(rec.events) < MAX_EVENTS_PER_TASK:
                rec.events.append({"state": FAILED, "created_ms": now_ms, "attempt": rec.attempt_number,
                                   "by_owner": True, "reconciled": True})
            self._unfinished.discard(task_id)
            changed.append(rec)
        return changed

    def sweep(self, now: float | None = None, *, task_ids: set[str] | None = None) -> list[TaskRecord]:
        """Apply the owners' held-back FINISHED events that waited long enough (or those of ``task_ids``)."""
        now = time.monotonic() if now is None else now
        due = []
        if task_ids is not None:
            due = [tid for tid in task_ids if tid in self._owner_ends]
        else:
            for tid, (arrived, _) in self._owner_ends.items():
                if now - arrived < self.owner_end_grace_s:
                    break
                due.append(tid)
        changed = []
        for tid in due:
            _, event = self._owner_ends.pop(tid)
            rec = self.records.get(tid)
            if rec is None:
                continue
            _merge(rec, event)
            if rec.state in TERMINAL_STATES:
                self._unfinished.discard(tid)
                changed.append(rec)
        return changed

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


def _event_order(event: dict[str, Any]) -> tuple:
    return (event["attempt"], event["created_ms"], _RANK.get(event["state"], -1))


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
    events = rec.events
    if len(events) < MAX_EVENTS_PER_TASK:
        terminal = e.state in TERMINAL_STATES
        if terminal and not e.by_owner and not any(
                x["state"] == RUNNING and x["attempt"] == e.attempt and not x["by_owner"] for x in events):
            # A worker sends a task's RUNNING only when the task still runs at its next flush
            # (``task_events.py`` folds it into the end otherwise): the end's start is that event.
            events.append({"state": RUNNING, "created_ms": _ms(e.start), "attempt": e.attempt, "by_owner": False})
        events.append({"state": e.state, "created_ms": _ms(e.end if terminal else e.start),
                       "attempt": e.attempt, "by_owner": e.by_owner})
        if len(events) > 1 and _event_order(events[-2]) > _event_order(events[-1]):
            # The owner's PENDING can arrive after the worker's end (separate flushes): keep time order.
            events.sort(key=_event_order)
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
