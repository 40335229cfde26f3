"""Typed messages of every RPC between distcore processes.

Services and their methods (request -> reply):

``Gcs`` (control store, on the head)
    RegisterNode(NodeInfo) -> ClusterView; Heartbeat(Heartbeat) -> ClusterView;
    GetClusterView(None) -> ClusterView; DrainNode(str) -> bool;
    KvPut(KvPut) -> bool; KvGet(KvKey) -> bytes | None; KvDel(KvKey) -> int;
    KvKeys(KvKey) -> list[str]; KvExists(KvKey) -> bool;
    RegisterJob(JobInfo) -> JobInfo; JobFinished(str) -> None; ListJobs(None) -> list[JobInfo];
    RegisterActor(ActorSpec) -> ActorInfo; GetActorInfo(GetActor) -> ActorInfo | None;
    GetNamedActor(NamedActor) -> ActorInfo | None; ListActors(None) -> list[ActorInfo];
    KillActor(KillActor) -> None; ReportWorkerDeath(WorkerDeath) -> None;
    CreatePlacementGroup(PlacementGroupSpec) -> str (state); RemovePlacementGroup(str) -> None;
    GetPlacementGroup(GetPlacementGroup) -> PlacementGroupInfo | None;
    ListPlacementGroups(None) -> list[PlacementGroupInfo];
    AddTaskEvents(list[TaskEvent]) -> None; GetTaskEvents(str | None) -> list[TaskEvent];
    ListTasks(TaskQuery) -> TaskList; GetTask(str) -> TaskRecord | None; SummarizeTasks(TaskQuery) -> dict;
    GetStatus(None) -> dict; GetAutoscalerStatus(None) -> dict | None (``_private/autoscaler/monitor.py``)
    (task events: ``core_worker/task_events.py``; task table messages: ``gcs/tasks.py``)

``NodeManager`` (every node)
    RegisterWorker(RegisterWorker) -> WorkerConfig; RequestWorkerLease(LeaseRequest) -> LeaseReply;
    ReturnWorker(ReturnWorker) -> None; CancelLeases(str) -> None;
    WorkerBlocked(WorkerBlocked) -> None;
    CreateObject(CreateObject) -> str; SealObject(SealObject) -> None;
    GetObjects(list[str]) -> list[tuple[str, int] | None]; FreeObjects(list[str]) -> None;
    ReadObject(str) -> bytes | None; PullObject(PullObject) -> tuple[str, int];
    stream ReadObjectChunks(ReadChunks) -> ObjectChunk... (node-to-node transfer: ``node_manager/object_transfer.py``)
    ReserveBundles(ReserveBundles) -> bool; ReleaseBundles(ReleaseBundles) -> None;
    KillWorker(KillWorker) -> bool; GetNodeStats(None) -> NodeStats;
    GetWorkerDeathReason(str) -> WorkerDeathInfo | None (``_private/worker_death.py``);
    ListLogs(None) -> list[LogFile]; ReadLog(ReadLog) -> LogChunk; GetObjectInfos(list[str]) -> list[dict | None]
    (log and object introspection messages: ``node_manager/introspection.py``)

``CoreWorker`` (every driver and worker)
    PushTask(PushTask) -> TaskReply; GetObject(GetObject) -> ObjectStatus;
    UpdateBorrowers(UpdateBorrowers) -> None; ReportGeneratorItem(GeneratorItem) -> None;
    CancelTask(CancelTask) -> None; Exit(ExitWorker) -> None;
    GetObjectRefs(None) -> WorkerRefs (``core_worker/ref_table.py``)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Task kinds.
NORMAL_TASK = 0
ACTOR_CREATION_TASK = 1
ACTOR_TASK = 2

# Actor states.
ACTOR_PENDING = "PENDING_CREATION"
ACTOR_ALIVE = "ALIVE"
ACTOR_RESTARTING = "RESTARTING"
ACTOR_DEAD = "DEAD"


@dataclass(slots=True)
class Address:
    """Where a core worker (driver or worker) listens."""

    ip: str
    port: int
    worker_id: str
    node_id: str

    @property
    def target(self) -> str:
        return f"{self.ip}:{self.port}"


# ----------------------------------------------------------------- objects


@dataclass(slots=True)
class SerializedValue:
    """A serialized object travelling inline, with the refs it contains."""

    data: bytes
    contained: list[tuple[str, Address]] = field(default_factory=list)


@dataclass(slots=True)
class TaskArg:
    """A task argument: a value inline, or a ref the worker must fetch."""

    value: SerializedValue | None = None
    object_id: str | None = None
    owner: Address | None = None
    in_plasma_node: str | None = None  # set when the value is in a node's store


@dataclass(slots=True)
class ReturnObject:
    object_id: str
    value: SerializedValue | None = None  # inline value
    plasma_node: str | None = None  # or: sealed in this node's store
    size: int = 0
    is_error: bool = False
    # Refs inside a value sealed in a store (inline values carry their own).
    contained: list[tuple[str, Address]] = field(default_factory=list)


@dataclass(slots=True)
class GetObject:
    object_id: str
    timeout: float | None
    requester: Address | None = None
    # The requester found no copy on this node, where the owner said it was:
    # the owner recovers it (``core_worker/reconstruction.py``) and answers once it is back.
    lost_node: str | None = None


@dataclass(slots=True)
class ObjectStatus:
    """The owner's answer about an object: ready inline, in a store, or not."""

    ready: bool
    value: SerializedValue | None = None
    plasma_node: str | None = None
    plasma_node_address: str | None = None
    size: int = 0
    freed: bool = False


@dataclass(slots=True)
class UpdateBorrowers:
    borrower: Address
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GeneratorItem:
    task_id: str
    index: int
    obj: ReturnObject | None
    finished: bool = False
    error: SerializedValue | None = None


# ------------------------------------------------------------------- tasks


@dataclass(slots=True)
class TaskSpec:
    task_id: str
    job_id: str
    kind: int
    name: str
    function_id: str  # key of the pickled function or class in the GCS KV
    args: list[TaskArg]
    kwargs: dict[str, TaskArg]
    num_returns: int | str
    return_ids: list[str]
    owner: Address
    resources: dict[str, float]
    placement_resources: dict[str, float] | None = None  # needed to schedule (actors), if not ``resources``
    max_retries: int = 0
    retry_exceptions: Any = False
    attempt: int = 0
    runtime_env: dict | None = None
    runtime_env_key: str = ""
    strategy: Any = None
    placement: tuple[str, int] | None = None
    capture_child_tasks: bool = False  # tasks created inside default to ``placement``'s group
    namespace: str = ""
    # actor creation
    actor_id: str | None = None
    max_concurrency: int = 1
    is_asyncio: bool = False
    # actor method calls
    method_name: str | None = None
    caller_id: str | None = None
    seq_no: int = 0
    incarnation: int = 0
    parent_task_id: str | None = None
    max_calls: int = 0  # normal tasks: the worker exits after running this function so often (0: never)


@dataclass(slots=True)
class PushTask:
    spec: TaskSpec
    assigned: dict[str, float] = field(default_factory=dict)
    gpu_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class TaskReply:
    returns: list[ReturnObject]
    # An error that is not the user's (the task could not run at all).
    system_error: str | None = None
    is_application_error: bool = False
    retryable_error_type: str | None = None
    worker_exiting: bool = False
    borrowed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CancelTask:
    task_id: str
    force: bool = False
    recursive: bool = True


@dataclass(slots=True)
class ExitWorker:
    force: bool = False
    reason: str = ""


# ------------------------------------------------------------------- leases


@dataclass(slots=True)
class LeaseRequest:
    lease_id: str
    resources: dict[str, float]
    runtime_env: dict | None
    runtime_env_key: str
    job_id: str
    owner: Address | None
    strategy: Any = None  # a scheduling policy strategy object
    placement: tuple[str, int] | None = None
    for_actor: str | None = None
    preferred_nodes: list[str] = field(default_factory=list)
    spilled_from: str | None = None
    name: str = ""
    placement_resources: dict[str, float] | None = None  # must fit to schedule; ``resources`` are held
    backlog: int = 0  # tasks of this shape queued at the owner (autoscaler demand); 0: unknown
    retriable: bool = False  # a task with retries left / an actor with restarts left: the memory monitor kills these first


@dataclass(slots=True)
class LeaseReply:
    granted: bool
    worker: Address | None = None
    lease_id: str = ""
    gpu_ids: list[int] = field(default_factory=list)
    assigned: dict[str, float] = field(default_factory=dict)
    retry_at_node: str | None = None  # spillback: ask this node's manager instead
    retry_at_address: str | None = None
    infeasible: bool = False
    rejected: bool = False
    failed: bool = False  # the worker could not start (e.g. runtime_env setup failed)
    reason: str = ""


@dataclass(slots=True)
class ReturnWorker:
    lease_id: str
    worker_exiting: bool = False
    disconnect: bool = False


@dataclass(slots=True)
class WorkerBlocked:
    worker_id: str
    blocked: bool


@dataclass(slots=True)
class RegisterWorker:
    worker_id: str
    pid: int
    address: Address
    runtime_env_key: str = ""
    is_driver: bool = False
    job_id: str = ""


@dataclass(slots=True)
class WorkerConfig:
    session_name: str
    node_id: str
    gcs_address: str
    session_dir: str


@dataclass(slots=True)
class JobCleanup:
    """A job ended: its workers go, except those hosting ``keep_actor_ids``."""

    job_id: str
    keep_actor_ids: list[str] = field(default_factory=list)
    driver_worker_id: str = ""  # the job's driver: its objects are freed and its pending lease requests refused


@dataclass(slots=True)
class KillWorker:
    worker_id: str
    force: bool = True
    reason: str = ""


# ------------------------------------------------------------------- object store


@dataclass(slots=True)
class CreateObject:
    object_id: str
    size: int
    # The writer accepts a recycled segment: the reply is ``(name, recycled)``
    # instead of the name alone (``object_store/recycle.py``).
    recycle: bool = False


@dataclass(slots=True)
class SealObject:
    object_id: str
    owner: Address | None
    pinned: bool = True


# ------------------------------------------------------------------- nodes


@dataclass(slots=True)
class NodeInfo:
    node_id: str
    address: str  # node manager gRPC address
    ip: str
    resources: dict[str, float]
    labels: dict[str, str] = field(default_factory=dict)
    is_head: bool = False
    version: str = ""
    session_dir: str = ""
    object_store_memory: int = 0
    pid: int = 0
    state: str = "ALIVE"
    start_time: float = 0.0
    death_reason: str = ""
    metrics_address: str = ""  # host:port of its Prometheus endpoint ("": metrics off)


@dataclass(slots=True)
class Heartbeat:
    node_id: str
    available: dict[str, float]
    pending_demand: list[dict[str, float]] = field(default_factory=list)
    object_store_used: int = 0
    infeasible_demand: list[dict[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class NodeView:
    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float]
    alive: bool
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ClusterView:
    nodes: dict[str, NodeView]
    version: int = 0


@dataclass(slots=True)
class NodeStats:
    node_id: str
    num_workers: int
    object_store: dict[str, int]
    available: dict[str, float]
    total: dict[str, float]
    workers: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------- kv, jobs


@dataclass(slots=True)
class KvKey:
    namespace: str
    key: str


@dataclass(slots=True)
class KvPut:
    namespace: str
    key: str
    value: bytes
    overwrite: bool = True


@dataclass(slots=True)
class JobInfo:
    job_id: str
    driver_address: Address | None = None
    driver_pid: int = 0
    namespace: str = ""
    entrypoint: str = ""
    start_time: float = 0.0
    end_time: float = 0.0
    is_dead: bool = False
    runtime_env: dict | None = None
    version: str = ""
    submission_id: str = ""  # set when the jobs API started the driver (DISTCORE_JOB_SUBMISSION_ID)


# ------------------------------------------------------------------- actors


@dataclass(slots=True)
class ActorSpec:
    actor_id: str
    job_id: str
    creation: TaskSpec
    class_name: str
    name: str | None = None
    namespace: str = ""
    detached: bool = False
    max_restarts: int = 0
    get_if_exists: bool = False
    owner: Address | None = None
    method_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ActorInfo:
    actor_id: str
    state: str
    class_name: str = ""
    name: str | None = None
    namespace: str = ""
    address: Address | None = None
    node_id: str | None = None
    pid: int = 0
    num_restarts: int = 0
    max_restarts: int = 0
    death_cause: str = ""
    death_error: bytes | None = None  # pickled exception from the constructor
    incarnation: int = 0
    job_id: str = ""
    detached: bool = False
    function_id: str = ""
    is_asyncio: bool = False
    method_meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class GetActor:
    actor_id: str
    wait_for_alive: bool = False
    timeout: float | None = None
    after_incarnation: int = -1


@dataclass(slots=True)
class NamedActor:
    name: str
    namespace: str


@dataclass(slots=True)
class KillActor:
    actor_id: str
    force: bool = True
    no_restart: bool = True
    reason: str = "killed by distcore.kill"


@dataclass(slots=True)
class WorkerDeath:
    worker_id: str
    node_id: str
    actor_id: str | None
    reason: str
    exit_code: int | None = None
    intended: bool = False


# ------------------------------------------------------------------- placement groups


@dataclass(slots=True)
class PlacementGroupSpec:
    pg_id: str
    bundles: list[dict[str, float]]
    strategy: str
    name: str = ""
    namespace: str = ""
    job_id: str = ""
    detached: bool = False


@dataclass(slots=True)
class PlacementGroupInfo:
    pg_id: str
    bundles: list[dict[str, float]]
    strategy: str
    state: str  # PENDING, CREATED, REMOVED, INFEASIBLE
    bundle_nodes: dict[int, str] = field(default_factory=dict)
    name: str = ""
    namespace: str = ""
    job_id: str = ""
    detached: bool = False
    reason: str = ""


@dataclass(slots=True)
class GetPlacementGroup:
    pg_id: str | None = None
    name: str | None = None
    namespace: str = ""
    wait_ready: bool = False
    timeout: float | None = None


@dataclass(slots=True)
class ReserveBundles:
    pg_id: str
    bundles: dict[int, dict[str, float]]


@dataclass(slots=True)
class ReleaseBundles:
    pg_id: str
    indexes: list[int] | None = None
