"""The rows of the state API (Ray's ``ray.util.state.common`` field names).

Each row is a small dataclass whose fields also read as ``row["field"]``;
``asdict()`` gives a JSON-ready dict. Fields marked ``table`` are the columns
``distcore list`` prints by default; fields marked ``detail`` are filled only
when ``detail=True`` (they are large).

Example::

    node = NodeState(node_id="ab12", node_ip="127.0.0.1", is_head_node=True, state="ALIVE")
    assert node["state"] == node.state == "ALIVE"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

_TABLE = {"table": True}
_DETAIL = {"detail": True}


class StateSchema:
    """Base of every state row: attribute or item access, ``asdict``, columns."""

    RESOURCE: ClassVar[str] = ""

    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(f"{type(self).__name__} has no field {key!r}; fields: {', '.join(self.field_names())}")
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.field_names() else default

    def keys(self) -> list[str]:
        return self.field_names()

    def __contains__(self, key: object) -> bool:
        return key in self.field_names()

    def asdict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def table_columns(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("table")]  # type: ignore[arg-type]

    @classmethod
    def detail_fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("detail")]  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class NodeState(StateSchema):
    """A node of the cluster (``list_nodes``)."""

    RESOURCE: ClassVar[str] = "nodes"
    node_id: str = field(metadata=_TABLE)
    node_ip: str = field(default="", metadata=_TABLE)
    is_head_node: bool = field(default=False, metadata=_TABLE)
    state: str = field(default="ALIVE", metadata=_TABLE)
    state_message: str | None = field(default=None, metadata=_TABLE)
    node_name: str = ""
    resources_total: dict[str, float] = field(default_factory=dict, metadata=_TABLE)
    resources_available: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    node_manager_address: str = ""
    object_store_memory: int = 0
    session_dir: str = ""
    metrics_address: str = ""  # host:port of the node's Prometheus endpoint ("": metrics off)


@dataclass
class JobState(StateSchema):
    """A job: a driver connected to the cluster (``list_jobs``)."""

    RESOURCE: ClassVar[str] = "jobs"
    job_id: str = field(metadata=_TABLE)
    submission_id: str | None = field(default=None, metadata=_TABLE)
    type: str = field(default="DRIVER", metadata=_TABLE)
    status: str = field(default="RUNNING", metadata=_TABLE)
    entrypoint: str = field(default="", metadata=_TABLE)
    start_time: int | None = field(default=None, metadata=_TABLE)  # ms since the epoch
    end_time: int | None = field(default=None, metadata=_TABLE)
    namespace: str = ""
    driver_info: dict[str, Any] | None = None
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    message: str | None = None
    error_type: str | None = None
    driver_exit_code: int | None = None


@dataclass
class ActorState(StateSchema):
    """An actor (``list_actors``)."""

    RESOURCE: ClassVar[str] = "actors"
    actor_id: str = field(metadata=_TABLE)
    class_name: str = field(default="", metadata=_TABLE)
    state: str = field(default="", metadata=_TABLE)
    job_id: str = field(default="", metadata=_TABLE)
    name: str | None = field(default=None, metadata=_TABLE)
    node_id: str | None = field(default=None, metadata=_TABLE)
    pid: int | None = field(default=None, metadata=_TABLE)
    ray_namespace: str = field(default="", metadata=_TABLE)
    worker_id: str | None = None
    death_cause: str | None = None
    is_detached: bool = False
    num_restarts: int = 0
    max_restarts: int = 0
    repr_name: str = ""
    is_asyncio: bool = False
    address: str | None = None


@dataclass
class TaskState(StateSchema):
    """A task, actor task or actor creation task (``list_tasks``)."""

    RESOURCE: ClassVar[str] = "tasks"
    task_id: str = field(metadata=_TABLE)
    attempt_number: int = field(default=0, metadata=_TABLE)
    name: str = field(default="", metadata=_TABLE)
    state: str = field(default="", metadata=_TABLE)
    job_id: str = field(default="", metadata=_TABLE)
    actor_id: str | None = None
    type: str = field(default="NORMAL_TASK", metadata=_TABLE)
    func_or_class_name: str = ""
    parent_task_id: str | None = None
    node_id: str | None = field(default=None, metadata=_TABLE)
    worker_id: str | None = None
    worker_pid: int | None = field(default=None, metadata=_TABLE)
    error_type: str | None = field(default=None, metadata=_TABLE)
    error_message: str | None = None
    language: str = "PYTHON"
    required_resources: dict[str, float] | None = None
    placement_group_id: str | None = None
    creation_time_ms: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    events: list[dict[str, Any]] | None = field(default=None, metadata=_DETAIL)


@dataclass
class ObjectState(StateSchema):
    """One object as one process refers to it (``list_objects``).

    An object held by several processes (its owner and borrowers) has one
    row per process, as in Ray.
    """

    RESOURCE: ClassVar[str] = "objects"
    object_id: str = field(metadata=_TABLE)
    object_size: int = field(default=-1, metadata=_TABLE)  # bytes, -1 if unknown
    task_status: str = field(default="NIL", metadata=_TABLE)
    reference_type: str = field(default="", metadata=_TABLE)
    call_site: str = "disabled"
    type: str = field(default="WORKER", metadata=_TABLE)  # the referring process: DRIVER or WORKER
    pid: int = field(default=0, metadata=_TABLE)
    ip: str = field(default="", metadata=_TABLE)
    node_id: str = ""  # the referring process's node
    worker_id: str = ""
    job_id: str = ""
    actor_id: str | None = None
    is_owner: bool = False
    owner_worker_id: str = ""
    owner_address: str = ""
    location: str = field(default="", metadata=_TABLE)  # INLINE (in the owner's memory) or the id of the node storing it
    spilled: bool | None = None  # None when not known (inline, or the store did not say)
    pinned: bool | None = None
    local_refs: int = 0
    submitted_task_refs: int = 0
    num_borrowers: int = 0


@dataclass
class PlacementGroupState(StateSchema):
    """A placement group (``list_placement_groups``)."""

    RESOURCE: ClassVar[str] = "placement_groups"
    placement_group_id: str = field(metadata=_TABLE)
    name: str = field(default="", metadata=_TABLE)
    creator_job_id: str = field(default="", metadata=_TABLE)
    state: str = field(default="", metadata=_TABLE)
    strategy: str = field(default="", metadata=_TABLE)
    bundles: list[dict[str, Any]] = field(default_factory=list)
    is_detached: bool = False
    ray_namespace: str = ""
    state_message: str | None = None


@dataclass
class WorkerState(StateSchema):
    """A worker process or a driver (``list_workers``)."""

    RESOURCE: ClassVar[str] = "workers"
    worker_id: str = field(metadata=_TABLE)
    is_alive: bool = field(default=True, metadata=_TABLE)
    worker_type: str = field(default="WORKER", metadata=_TABLE)
    exit_type: str | None = None
    node_id: str = field(default="", metadata=_TABLE)
    ip: str = field(default="", metadata=_TABLE)
    pid: int = field(default=0, metadata=_TABLE)
    exit_detail: str | None = None
    worker_launch_time_ms: int | None = None
    job_id: str = field(default="", metadata=_TABLE)
    actor_id: str | None = None
    state: str = field(default="", metadata=_TABLE)  # IDLE, LEASED, ACTOR, DRIVER, STARTING
    address: str | None = None
    log_file: str | None = None


SCHEMAS: dict[str, type[StateSchema]] = {
    cls.RESOURCE: cls
    for cls in (NodeState, JobState, ActorState, TaskState, ObjectState, PlacementGroupState, WorkerState)
}
