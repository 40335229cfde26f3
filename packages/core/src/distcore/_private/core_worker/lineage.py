"""Lineage: the specs of tasks whose returns may still have to be recomputed.

An owner keeps the :class:`~distcore._private.protocol.TaskSpec` of every
normal task it submitted while one of the task's returns is still
referenced, or while a kept task takes one of those returns as an argument
(so a chain ``a -> b -> c`` can be replayed from ``a`` even after the refs
to ``a`` and ``b`` were dropped: their values are freed, their lineage is
not). Releasing the last return of a task, and the last kept task that
depends on it, drops its spec and, in turn, the specs it pinned.

The table is bounded (entries and approximate bytes); the oldest specs go
first, and their returns then fail with a clear "lineage evicted" reason.

Pure bookkeeping, no I/O: :mod:`reconstruction` drives it from the core
worker's event loop, which is also the only thread that calls it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from distcore._private import protocol as p

MAX_ENTRIES = 100_000
MAX_BYTES = 256 * 1024 * 1024
# Why recent returns have no lineage (actor tasks, evicted specs), for errors.
_MAX_REASONS = 100_000
_SPEC_OVERHEAD_BYTES = 512


@dataclass
class LineageEntry:
    spec: p.TaskSpec
    deps: list[str]  # every id the task depends on (top-level args and refs inside inline args)
    arg_ids: list[str]  # its top-level ref arguments owned by this process
    size: int
    live: set[str] = field(default_factory=set)  # returns still referenced
    pins: int = 0  # kept entries that take one of our returns as an argument
    parents: list[str] = field(default_factory=list)  # task ids of the entries we pin
    reexecuted: int = 0  # how often the owner re-ran it to recover a lost return

    @property
    def task_id(self) -> str:
        return self.spec.task_id


class LineageTable:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, LineageEntry] = OrderedDict()
        self.by_return: dict[str, str] = {}
        self.bytes = 0
        self._reasons: OrderedDict[str, str] = OrderedDict()

    # ------------------------------------------------------------ recording

    def record(self, spec: p.TaskSpec, deps: list[str], arg_ids: list[str], live: set[str]) -> None:
        """Keep ``spec``; ``live`` are its returns still referenced right now."""
        if spec.task_id in self.entries:  # a retry or a re-execution: already kept
            return
        size = _SPEC_OVERHEAD_BYTES + sum(
            len(a.value.data) for a in [*spec.args, *spec.kwargs.values()] if a.value is not None and a.object_id is None
        )
        entry = LineageEntry(spec, list(deps), list(arg_ids), size, live=set(live))
        for dep in deps:
            parent = self.entries.get(self.by_return.get(dep, ""))
            if parent is not None and parent.task_id not in entry.parents:
                parent.pins += 1
                entry.parents.append(parent.task_id)
        self.entries[spec.task_id] = entry
        for rid in spec.return_ids:
            self.by_return[rid] = spec.task_id
            self._reasons.pop(rid, None)
        self.bytes += size
        self._maybe_drop(entry)
        self._evict()

    def note_unreconstructable(self, return_ids: list[str], reason: str) -> None:
        """Remember why these returns cannot be recomputed (for the error a loss raises)."""
        for rid in return_ids:
            self._reasons[rid] = reason
            self._reasons.move_to_end(rid)
        while len(self._reasons) > _MAX_REASONS:
            self._reasons.popitem(last=False)

    # ------------------------------------------------------------ releasing

    def released(self, object_id: str) -> None:
        """Reference counting freed ``object_id`` (a return, or anything else)."""
        entry = self.entries.get(self.by_return.get(object_id, ""))
        if entry is not None and object_id in entry.live:
            entry.live.discard(object_id)
            self._maybe_drop(entry)

    def _maybe_drop(self, entry: LineageEntry) -> None:
        stack = [entry]
        while stack:
            e = stack.pop()
            if e.live or e.pins or self.entries.get(e.task_id) is not e:
                continue
            self._remove(e)
            for parent_id in e.parents:
                parent = self.entries.get(parent_id)
                if parent is not None:
                    parent.pins -= 1
                    stack.append(parent)

    def _remove(self, entry: LineageEntry) -> None:
        del self.entries[entry.task_id]
        self.bytes -= entry.size
        for rid in entry.spec.return_ids:
            if self.by_return.get(rid) == entry.task_id:
                del self.by_return[rid]

    def _evict(self) -> None:
        while self.entries and (len(self.entries) > self.max_entries or self.bytes > self.max_bytes):
            _, oldest = next(iter(self.entries.items()))
            self._remove(oldest)
            self.note_unreconstructable(
                list(oldest.spec.return_ids),
                f"its lineage (the spec of task {oldest.spec.name}) was evicted: an owner keeps at most "
                f"{self.max_entries} task specs ({self.max_bytes // (1024 * 1024)} MiB); keep fewer results alive",
            )
            for parent_id in oldest.parents:
                parent = self.entries.get(parent_id)
                if parent is not None:
                    parent.pins -= 1
                    self._maybe_drop(parent)

    # ------------------------------------------------------------ queries

    def producer(self, object_id: str) -> LineageEntry | None:
        """The kept entry of the task that returns ``object_id``."""
        return self.entries.get(self.by_return.get(object_id, ""))

    def get(self, task_id: str) -> LineageEntry | None:
        return self.entries.get(task_id)

    def reason(self, object_id: str) -> str | None:
        """Why ``object_id`` has no lineage, when known."""
        return self._reasons.get(object_id)

    def __len__(self) -> int:
        return len(self.entries)
