"""A snapshot of one process's reference table (``CoreWorker.GetObjectRefs``).

Each object this process owns or borrows becomes one :class:`ObjectRefInfo`
with Ray's reference type: why the object is kept alive *here*.

- ``USED_BY_PENDING_TASK``: a task this process submitted takes it as an argument;
- ``LOCAL_REFERENCE``: this process owns it and holds an ``ObjectRef`` to it;
- ``BORROWED``: this process holds a ref to an object another process owns;
- ``CAPTURED_IN_OBJECT``: only another object that contains it keeps it alive;
- ``PINNED_IN_MEMORY``: the owner keeps the value only because other
  processes (borrowers) still hold refs to it;
- ``UNKNOWN_STATUS``: none of these (an entry on its way out).

Example::

    refs = await client.call("CoreWorker", "GetObjectRefs", None)
    [(r.object_id, r.object_size, r.reference_type) for r in refs.refs]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from distcore._private.core_worker.references import RefEntry

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

MAX_REFS = 100_000

USED_BY_PENDING_TASK = "USED_BY_PENDING_TASK"
LOCAL_REFERENCE = "LOCAL_REFERENCE"
BORROWED = "BORROWED"
CAPTURED_IN_OBJECT = "CAPTURED_IN_OBJECT"
PINNED_IN_MEMORY = "PINNED_IN_MEMORY"
UNKNOWN_STATUS = "UNKNOWN_STATUS"

INLINE = "INLINE"


@dataclass(slots=True)
class ObjectRefInfo:
    """One object as one process refers to it."""

    object_id: str
    object_size: int  # bytes; -1 when this process does not know
    reference_type: str
    owned: bool
    owner_worker_id: str
    owner_address: str
    location: str  # INLINE, the id of the node whose store holds it, or "" (not known or not ready)
    ready: bool
    local_refs: int = 0
    submitted_task_refs: int = 0
    num_borrowers: int = 0
    contained_in: int = 0


@dataclass(slots=True)
class WorkerRefs:
    """``CoreWorker.GetObjectRefs`` reply: who answered, and its references."""

    worker_id: str
    node_id: str
    pid: int
    ip: str
    is_driver: bool
    job_id: str
    actor_id: str | None
    refs: list[ObjectRefInfo] = field(default_factory=list)
    num_truncated: int = 0


def reference_type(entry: RefEntry) -> str:
    if entry.submitted:
        return USED_BY_PENDING_TASK
    if entry.local:
        return LOCAL_REFERENCE if entry.owned else BORROWED
    if entry.contained_in:
        return CAPTURED_IN_OBJECT
    if entry.owned and entry.borrowers:
        return PINNED_IN_MEMORY
    if not entry.owned:
        return BORROWED
    return UNKNOWN_STATUS


def snapshot(core: CoreWorker, limit: int = MAX_REFS) -> WorkerRefs:
    """The reference table of ``core``'s process (call on its io loop)."""
    address = core.address
    out = WorkerRefs(
        worker_id=core.worker_id, node_id=core.node_id, pid=os.getpid(), ip=core.ip, is_driver=core.is_driver,
        job_id=core.job_id, actor_id=core.current_actor_id,
    )
    entries = core.refs.snapshot()
    for object_id, entry in entries.items():
        if len(out.refs) >= limit:
            out.num_truncated = len(entries) - limit
            break
        stored = core.memory.get(object_id)
        location, size = "", -1
        if entry.plasma_node:
            location, size = entry.plasma_node, entry.size
        elif stored is not None:
            location = stored.plasma_node or INLINE
            size = stored.size if stored.size or stored.value is None else len(stored.value.data)
        owner = entry.owner if entry.owner is not None else address
        out.refs.append(ObjectRefInfo(
            object_id=object_id, object_size=size, reference_type=reference_type(entry), owned=entry.owned,
            owner_worker_id=owner.worker_id if owner else "", owner_address=owner.target if owner else "",
            location=location, ready=stored is not None or bool(entry.plasma_node),
            local_refs=entry.local, submitted_task_refs=entry.submitted, num_borrowers=len(entry.borrowers),
            contained_in=len(entry.contained_in),
        ))
    return out
