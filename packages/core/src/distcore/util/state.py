"""The state API: what runs in the cluster, as Ray's ``ray.util.state`` shows it.

Every function takes ``address`` (default: the cluster this process is
connected to, else this machine's running cluster), ``timeout`` in seconds
and, for lists, ``filters`` (``[("key", "=", value)]`` or ``"!="``; values
compare case-insensitively), ``limit`` and ``detail``. Rows are small
dataclasses with Ray's field names that also read as ``row["field"]``.
Without a connected driver, the cluster token comes from
``DISTCORE_AUTH_TOKEN`` or this machine's latest session.

Example::

    from distcore.util.state import list_actors, list_tasks, summarize_tasks

    alive = list_actors(filters=[("state", "=", "ALIVE")])
    failed = list_tasks(filters=[("state", "=", "FAILED")], limit=10)
    counts = summarize_tasks()["cluster"]["summary"]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from distcore._private.state_client import StateApiError, StateClient, iter_logs
from distcore._private.state_client import summarize_actors as _summarize_actors
from distcore._private.state_client import summarize_objects as _summarize_objects
from distcore._private.state_schema import (
    ActorState,
    JobState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateSchema,
    TaskState,
    WorkerState,
)

__all__ = [
    "ActorState",
    "JobState",
    "NodeState",
    "ObjectState",
    "PlacementGroupState",
    "StateApiError",
    "StateSchema",
    "TaskState",
    "WorkerState",
    "get_actor",
    "get_job",
    "get_log",
    "get_node",
    "get_objects",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_jobs",
    "list_logs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]

DEFAULT_LIMIT = 100
DEFAULT_RPC_TIMEOUT = 30
Filters = list[tuple[str, str, Any]] | None
_Row = TypeVar("_Row", bound=StateSchema)


def _list(resource: str, address: str | None, filters: Filters, limit: int, timeout: float, detail: bool,
          raise_on_missing_output: bool) -> list[Any]:
    client = StateClient(address, timeout, raise_on_missing_output)
    return client.list_rows(resource, filters, limit, detail)[0]


def list_nodes(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True) -> list[NodeState]:
    """Nodes, alive and dead, the head first.

    Example::

        [n.node_id for n in list_nodes(filters=[("state", "=", "ALIVE")])]
    """
    return _list("nodes", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_jobs(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
              timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
              raise_on_missing_output: bool = True) -> list[JobState]:
    """Jobs (drivers), running and finished.

    Example::

        running = list_jobs(filters=[("status", "=", "RUNNING")])
    """
    return _list("jobs", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_actors(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                raise_on_missing_output: bool = True) -> list[ActorState]:
    """Actors in every state (PENDING_CREATION, ALIVE, RESTARTING, DEAD).

    Example::

        list_actors(filters=[("class_name", "=", "Counter"), ("state", "!=", "DEAD")])
    """
    return _list("actors", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_tasks(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
               raise_on_missing_output: bool = True) -> list[TaskState]:
    """Tasks, oldest first (the control store keeps the latest 100k); ``detail`` adds each one's events.

    States: PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED.
    Events reach the control store within about a second.

    Example::

        list_tasks(filters=[("name", "=", "train_step"), ("state", "=", "FAILED")])
    """
    return _list("tasks", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_objects(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                 timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                 raise_on_missing_output: bool = True) -> list[ObjectState]:
    """Objects referenced anywhere: one row per (object, process holding a reference).

    Example::

        big = [o for o in list_objects(limit=10_000) if o.object_size > 100 * 2**20]
    """
    return _list("objects", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_placement_groups(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                          timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                          raise_on_missing_output: bool = True) -> list[PlacementGroupState]:
    """Placement groups (PENDING, CREATED, REMOVED) with their bundles.

    Example::

        pending = list_placement_groups(filters=[("state", "=", "PENDING")])
    """
    return _list("placement_groups", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_workers(address: str | None = None, filters: Filters = None, limit: int = DEFAULT_LIMIT,
                 timeout: float = DEFAULT_RPC_TIMEOUT, detail: bool = False,
                 raise_on_missing_output: bool = True) -> list[WorkerState]:
    """Live worker processes of every node, and the drivers of running jobs.

    Example::

        drivers = list_workers(filters=[("worker_type", "=", "DRIVER")])
    """
    return _list("workers", address, filters, limit, timeout, detail, raise_on_missing_output)


def _get(resource: str, id: str, address: str | None, timeout: float, cls: type[_Row]) -> _Row | None:
    row = StateClient(address, timeout).get(resource, id)
    return row if isinstance(row, cls) else None


def get_actor(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> ActorState | None:
    """The actor with this id (or a unique prefix of it), or None.

    Example::

        assert get_actor(handle._actor_id).state == "ALIVE"
    """
    return _get("actors", id, address, timeout, ActorState)


def get_task(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> TaskState | None:
    """The task with this id (``ref.task_id()``), with its events, or None.

    Example::

        ref = f.remote()
        get_task(ref.task_id()).state   # e.g. "RUNNING"
    """
    return _get("tasks", id, address, timeout, TaskState)


def get_node(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> NodeState | None:
    """The node with this id, or None.

    Example::

        get_node(distcore.get_runtime_context().get_node_id()).is_head_node
    """
    return _get("nodes", id, address, timeout, NodeState)


def get_placement_group(id: str, address: str | None = None,
                        timeout: float = DEFAULT_RPC_TIMEOUT) -> PlacementGroupState | None:
    """The placement group with this id, or None.

    Example::

        get_placement_group(pg.id).state   # "CREATED"
    """
    return _get("placement_groups", id, address, timeout, PlacementGroupState)


def get_job(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> JobState | None:
    """The job with this id, or None.

    Example::

        get_job(distcore.get_runtime_context().get_job_id()).status
    """
    return _get("jobs", id, address, timeout, JobState)


def get_worker(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> WorkerState | None:
    """The live worker or driver with this id, or None.

    Example::

        get_worker(worker_id).pid
    """
    return _get("workers", id, address, timeout, WorkerState)


def get_objects(id: str, address: str | None = None, timeout: float = DEFAULT_RPC_TIMEOUT) -> list[ObjectState]:
    """Every process's reference to object ``id`` (``ref.hex()``): its owner's and its borrowers'.

    Example::

        [o.reference_type for o in get_objects(ref.hex())]
    """
    return StateClient(address, timeout).list_rows("objects", [("object_id", "=", id)], limit=1 << 30)[0]


def summarize_tasks(address: str | None = None, filters: Filters = None, timeout: float = DEFAULT_RPC_TIMEOUT,
                    raise_on_missing_output: bool = True) -> dict[str, Any]:
    """Task counts by function (or actor method) and state, in Ray's layout.

    Example::

        s = summarize_tasks()["cluster"]
        s["summary"]["f"]["state_counts"]   # {"FINISHED": 3, "FAILED": 1}
    """
    return StateClient(address, timeout, raise_on_missing_output).summarize_tasks(filters)


def summarize_actors(address: str | None = None, filters: Filters = None, timeout: float = DEFAULT_RPC_TIMEOUT,
                     raise_on_missing_output: bool = True) -> dict[str, Any]:
    """Actor counts by class and state, in Ray's layout.

    Example::

        summarize_actors()["cluster"]["summary"]["Counter"]["state_counts"]   # {"ALIVE": 2}
    """
    client = StateClient(address, timeout, raise_on_missing_output)
    return _summarize_actors(client.list_rows("actors", filters, limit=1 << 30)[0])


def summarize_objects(address: str | None = None, filters: Filters = None, timeout: float = DEFAULT_RPC_TIMEOUT,
                      raise_on_missing_output: bool = True) -> dict[str, Any]:
    """Object counts and sizes by reference type, in Ray's layout.

    Example::

        summarize_objects()["cluster"]["total_size_mb"]
    """
    client = StateClient(address, timeout, raise_on_missing_output)
    return _summarize_objects(client.list_rows("objects", filters, limit=1 << 30)[0])


def list_logs(address: str | None = None, node_id: str | None = None,
              timeout: float = DEFAULT_RPC_TIMEOUT) -> dict[str, list[str]]:
    """Log file names per node id (of ``node_id`` only, if given).

    Example::

        for node, files in list_logs().items():
            print(node, [f for f in files if f.startswith("worker-")])
    """
    logs = StateClient(address, timeout).list_logs(node_id)
    return {node: [f.filename for f in files] for node, files in logs.items()}


def get_log(address: str | None = None, node_id: str | None = None, filename: str | None = None, *,
            actor_id: str | None = None, task_id: str | None = None, worker_id: str | None = None,
            tail: int = 1000, follow: bool = False, timeout: float = DEFAULT_RPC_TIMEOUT) -> Iterator[str]:
    """Text of a log: a node's file, or the log of the worker that ran an actor, a task or a worker id.

    Yields chunks of text; with ``follow``, keeps yielding new text until closed.

    Example::

        for text in get_log(actor_id=handle._actor_id, tail=100):
            print(text, end="")
    """
    client = StateClient(address, timeout)
    if filename is not None:
        if node_id is None:
            raise ValueError("get_log(filename=...) needs node_id= too (list_logs() shows which node has it)")
        targets = [(client.node(node_id).node_id, filename, filename)]
    else:
        targets = client.worker_logs(worker_id=worker_id, actor_id=actor_id, task_id=task_id)
    return iter_logs(client, targets, tail=tail, follow=follow)
