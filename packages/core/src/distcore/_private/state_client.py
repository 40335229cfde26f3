"""Gathering the cluster's state over RPC, for ``distcore.util.state`` and the CLI.

Sources: the control store for nodes, jobs, actors, placement groups and
tasks; every node manager's ``GetNodeStats`` for workers, ``ListLogs`` /
``ReadLog`` for logs and ``GetObjectInfos`` for spilling; every live worker's
and driver's ``GetObjectRefs`` for objects (drivers' addresses come from the
job table).

From a connected driver or worker, calls go through its core worker; with
an ``address`` of another cluster (or none connected), a private event loop
and clients carrying the token of ``DISTCORE_AUTH_TOKEN`` or the local session.

Example::

    client = StateClient(address="127.0.0.1:6379", timeout=10)
    rows, total = client.list_rows("actors", [("state", "=", "ALIVE")], limit=10)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.core_worker.ref_table import INLINE, WorkerRefs
from distcore._private.gcs.tasks import FILTER_KEYS as TASK_FILTER_KEYS
from distcore._private.gcs.tasks import TaskList, TaskQuery, TaskRecord
from distcore._private.node_manager.introspection import LogChunk, LogFile, ReadLog, worker_log_name
from distcore._private.rpc import ClientPool, RpcError, RpcUnavailable
from distcore._private.state_filters import check_filters, matches
from distcore._private.state_schema import (
    SCHEMAS,
    ActorState,
    JobState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateSchema,
    TaskState,
    WorkerState,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_TASKS_FETCH = 100_000
PER_PROCESS_TIMEOUT_S = 10.0


class StateApiError(RuntimeError):
    """Part of the cluster's state could not be gathered."""


def _ms(t: float | None) -> int | None:
    return int(t * 1000) if t else None


class StateClient:
    """Calls the cluster's processes for state; one instance per request is fine."""

    def __init__(self, address: str | None = None, timeout: float = 30.0, raise_on_missing_output: bool = True) -> None:
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.raise_on_missing_output = raise_on_missing_output
        self.missing: list[str] = []  # sources that did not answer (logged; raised if asked)
        self._nodes_seen: dict[str, p.NodeInfo] = {}
        core = worker_state.core_worker()
        from distcore._private.api.runtime import _resolve_address, _token_for

        if core is not None and (address in (None, "auto") or _resolve_address(address) == core.gcs_address):
            self._core = core
            self.address = core.gcs_address
            self._token = core.token
        else:
            self._core = None
            # No address and none in DISTCORE_ADDRESS: this machine's running cluster (or a clear error).
            resolved = _resolve_address(address) or _resolve_address("auto")
            assert resolved is not None
            self.address = resolved
            self._token = _token_for(resolved)

    # ------------------------------------------------------------ plumbing

    def _run(self, fn: Callable[[ClientPool], Awaitable[T]]) -> T:
        async def bounded(pool: ClientPool) -> T:
            try:
                return await asyncio.wait_for(fn(pool), self.timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"the state API did not get an answer from the cluster at {self.address} within "
                    f"{self.timeout:g} s; pass a larger timeout"
                ) from None
            except RpcUnavailable as exc:
                raise ConnectionError(f"cannot reach the distcore cluster at {self.address}: {exc}") from None

        if self._core is not None:
            return self._core.run(bounded(self._core.clients))

        async def standalone() -> T:
            pool = ClientPool(self._token)
            try:
                return await bounded(pool)
            finally:
                await pool.close()

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="distcore-state") as pool:
            return pool.submit(asyncio.run, standalone()).result()

    async def _gcs(self, pool: ClientPool, method: str, request: Any = None) -> Any:
        return await pool.get(self.address).call("Gcs", method, request, timeout=self.timeout)

    def _missing(self, what: str) -> None:
        self.missing.append(what)
        logger.warning("state API: %s", what)

    def _check_missing(self) -> None:
        if self.missing and self.raise_on_missing_output:
            raise StateApiError(
                "part of the cluster's state is missing: " + "; ".join(self.missing)
                + " (pass raise_on_missing_output=False to get what answered)"
            )

    async def _alive_nodes(self, pool: ClientPool) -> list[p.NodeInfo]:
        return [n for n in await self._gcs(pool, "ListNodes") if n.state == "ALIVE"]

    async def _node_stats(self, pool: ClientPool) -> list[tuple[p.NodeInfo, p.NodeStats]]:
        nodes = await self._alive_nodes(pool)

        async def one(node: p.NodeInfo) -> p.NodeStats | None:
            try:
                return await pool.get(node.address).call("NodeManager", "GetNodeStats", None, timeout=PER_PROCESS_TIMEOUT_S)
            except (RpcError, TimeoutError) as exc:
                self._missing(f"node {node.node_id[:12]} at {node.address} did not answer ({exc})")
                return None

        stats = await asyncio.gather(*(one(n) for n in nodes))
        return [(n, s) for n, s in zip(nodes, stats, strict=True) if s is not None]

    # ------------------------------------------------------------ rows per resource

    async def _nodes(self, pool: ClientPool) -> list[NodeState]:
        nodes: list[p.NodeInfo] = await self._gcs(pool, "ListNodes")
        view: p.ClusterView = await self._gcs(pool, "GetClusterView")
        nodes.sort(key=lambda n: (not n.is_head, n.start_time))
        out = []
        for n in nodes:
            v = view.nodes.get(n.node_id)
            out.append(NodeState(
                node_id=n.node_id, node_ip=n.ip, is_head_node=n.is_head, state=n.state,
                state_message=n.death_reason or None, node_name=n.ip, resources_total=dict(n.resources),
                resources_available=dict(v.available) if v is not None and n.state == "ALIVE" else {},
                labels=dict(n.labels), start_time_ms=_ms(n.start_time), node_manager_address=n.address,
                object_store_memory=n.object_store_memory, session_dir=n.session_dir,
                metrics_address=n.metrics_address,
            ))
        return out

    async def _jobs(self, pool: ClientPool) -> list[JobState]:
        submissions = await self._submissions(pool)
        out = []
        for job in await self._gcs(pool, "ListJobs"):
            driver = job.driver_address
            sid = getattr(job, "submission_id", "") or None
            record = submissions.pop(sid, {}) if sid else {}
            out.append(JobState(
                job_id=job.job_id, submission_id=sid, type="SUBMISSION" if sid else "DRIVER",
                status=record.get("status") or ("SUCCEEDED" if job.is_dead else "RUNNING"),
                entrypoint=record.get("entrypoint") or job.entrypoint, start_time=_ms(job.start_time),
                end_time=_ms(job.end_time), namespace=job.namespace, runtime_env=job.runtime_env,
                driver_info={"id": driver.worker_id, "node_id": driver.node_id, "node_ip_address": driver.ip,
                             "pid": job.driver_pid} if driver is not None else None,
                metadata=record.get("metadata"), message=record.get("message"), error_type=record.get("error_type"),
                driver_exit_code=record.get("driver_exit_code"),
            ))
        for sid, record in submissions.items():  # submitted, but no driver connected (yet, or ever)
            out.append(JobState(
                job_id=record.get("job_id") or "", submission_id=sid, type="SUBMISSION",
                status=record.get("status") or "PENDING", entrypoint=record.get("entrypoint") or "",
                start_time=record.get("start_time"), end_time=record.get("end_time"),
                runtime_env=record.get("runtime_env"), metadata=record.get("metadata"),
                message=record.get("message"), error_type=record.get("error_type"),
                driver_exit_code=record.get("driver_exit_code"),
            ))
        return out

    async def _submissions(self, pool: ClientPool) -> dict[str, dict[str, Any]]:
        """Jobs submitted through the jobs API: their JSON records in the control store's key-value store."""
        import json

        from distcore._private.jobs.common import KV_NAMESPACE

        keys = await self._gcs(pool, "KvKeys", p.KvKey(KV_NAMESPACE, ""))
        blobs = await asyncio.gather(*(self._gcs(pool, "KvGet", p.KvKey(KV_NAMESPACE, k)) for k in keys))
        out = {}
        for key, blob in zip(keys, blobs, strict=True):
            try:
                record = json.loads(blob) if blob else None
            except ValueError:
                record = None
            if isinstance(record, dict):
                out[record.get("submission_id") or key] = record
        return out

    async def _creation_tasks(self, pool: ClientPool) -> dict[str, TaskRecord]:
        query = TaskQuery([("type", "=", "ACTOR_CREATION_TASK")], MAX_TASKS_FETCH)
        listed: TaskList = await self._gcs(pool, "ListTasks", query)
        return {t.actor_id: t for t in listed.tasks if t.actor_id}

    async def _actors(self, pool: ClientPool) -> list[ActorState]:
        infos: list[p.ActorInfo] = await self._gcs(pool, "ListActors")
        creations = await self._creation_tasks(pool)
        out = []
        for a in infos:
            created = creations.get(a.actor_id)
            worker_id = a.address.worker_id if a.address else (created.worker_id if created else None)
            pid = a.pid or (created.worker_pid if created and created.worker_id == worker_id else None)
            out.append(ActorState(
                actor_id=a.actor_id, class_name=a.class_name, state=a.state, job_id=a.job_id, name=a.name or None,
                node_id=a.node_id or (created.node_id if created else None), pid=pid, ray_namespace=a.namespace,
                worker_id=worker_id, death_cause=a.death_cause or None, is_detached=a.detached,
                num_restarts=a.num_restarts, max_restarts=a.max_restarts,
                repr_name=f"{a.class_name}({a.actor_id[:8]})", is_asyncio=a.is_asyncio,
                address=a.address.target if a.address else None,
            ))
        return out

    async def _placement_groups(self, pool: ClientPool) -> list[PlacementGroupState]:
        out = []
        for g in await self._gcs(pool, "ListPlacementGroups"):
            bundles = [{"bundle_index": i, "unit_resources": dict(b), "node_id": g.bundle_nodes.get(i)}
                       for i, b in enumerate(g.bundles)]
            out.append(PlacementGroupState(
                placement_group_id=g.pg_id, name=g.name, creator_job_id=g.job_id, state=g.state,
                strategy=g.strategy, bundles=bundles, is_detached=g.detached, ray_namespace=g.namespace,
                state_message=g.reason or None,
            ))
        return out

    async def _workers(self, pool: ClientPool) -> list[WorkerState]:
        out = []
        for node, stats in await self._node_stats(pool):
            for w in stats.workers:
                if w.get("actor_id"):
                    state = "ACTOR"
                elif w.get("idle"):
                    state = "IDLE"
                elif not w.get("address"):
                    state = "STARTING"
                else:
                    state = "LEASED" if w.get("lease_id") else "IDLE"
                log_path = w.get("log_path") or ""
                out.append(WorkerState(
                    worker_id=w["worker_id"], is_alive=True, worker_type="WORKER", node_id=node.node_id, ip=node.ip,
                    pid=w["pid"], worker_launch_time_ms=_ms(w.get("start_time")), job_id=w.get("job_id") or "",
                    actor_id=w.get("actor_id"), state=state, address=w.get("address"),
                    log_file=log_path.rsplit("/", 1)[-1] or None,
                ))
        for job in await self._gcs(pool, "ListJobs"):
            if job.is_dead or job.driver_address is None:
                continue
            d = job.driver_address
            out.append(WorkerState(
                worker_id=d.worker_id, is_alive=True, worker_type="DRIVER", node_id=d.node_id, ip=d.ip,
                pid=job.driver_pid, worker_launch_time_ms=_ms(job.start_time), job_id=job.job_id,
                state="DRIVER", address=d.target,
            ))
        return out

    async def _objects(self, pool: ClientPool) -> list[ObjectState]:
        targets: dict[str, str] = {}  # address -> worker id
        for _node, stats in await self._node_stats(pool):
            for w in stats.workers:
                if w.get("address"):
                    targets[w["address"]] = w["worker_id"]
        for job in await self._gcs(pool, "ListJobs"):
            if not job.is_dead and job.driver_address is not None:
                targets[job.driver_address.target] = job.driver_address.worker_id

        async def one(target: str) -> WorkerRefs | None:
            try:
                return await pool.get(target).call("CoreWorker", "GetObjectRefs", None, timeout=PER_PROCESS_TIMEOUT_S)
            except RpcUnavailable:
                return None  # the process exited meanwhile: it holds nothing any more
            except (RpcError, TimeoutError) as exc:
                self._missing(f"worker {targets[target][:12]} at {target} did not answer ({exc})")
                return None

        answers = [a for a in await asyncio.gather(*(one(t) for t in targets)) if a is not None]
        rows: list[ObjectState] = []
        for ans in answers:
            for r in ans.refs:
                rows.append(ObjectState(
                    object_id=r.object_id, object_size=r.object_size, reference_type=r.reference_type,
                    task_status="FINISHED" if r.ready else ("PENDING" if r.owned else "NIL"),
                    type="DRIVER" if ans.is_driver else "WORKER", pid=ans.pid, ip=ans.ip, node_id=ans.node_id,
                    worker_id=ans.worker_id, job_id=ans.job_id, actor_id=ans.actor_id, is_owner=r.owned,
                    owner_worker_id=r.owner_worker_id, owner_address=r.owner_address, location=r.location,
                    local_refs=r.local_refs, submitted_task_refs=r.submitted_task_refs, num_borrowers=r.num_borrowers,
                ))
        await self._fill_object_locations(pool, rows)
        return rows

    async def _fill_object_locations(self, pool: ClientPool, rows: list[ObjectState]) -> None:
        """Borrowers learn size and place from owners; stores say what is spilled or pinned."""
        owners = {r.object_id: r for r in rows if r.is_owner}
        for r in rows:
            owner = owners.get(r.object_id)
            if owner is not None and r is not owner:
                if r.object_size < 0:
                    r.object_size = owner.object_size
                r.location = r.location or owner.location
                r.task_status = owner.task_status
        by_node: dict[str, set[str]] = {}
        for r in rows:
            if r.location and r.location != INLINE:
                by_node.setdefault(r.location, set()).add(r.object_id)
        if not by_node:
            return
        nodes = {n.node_id: n for n in await self._alive_nodes(pool)}

        async def one(node_id: str, ids: list[str]) -> dict[str, dict | None]:
            node = nodes.get(node_id)
            if node is None:
                return {}
            try:
                infos = await pool.get(node.address).call("NodeManager", "GetObjectInfos", ids, timeout=PER_PROCESS_TIMEOUT_S)
            except (RpcError, TimeoutError) as exc:
                self._missing(f"node {node_id[:12]} did not say which objects are spilled ({exc})")
                return {}
            return dict(zip(ids, infos, strict=True))

        found: dict[str, dict | None] = {}
        for part in await asyncio.gather(*(one(n, sorted(ids)) for n, ids in by_node.items())):
            found.update(part)
        for r in rows:
            info = found.get(r.object_id)
            if info is not None:
                r.spilled, r.pinned = info["spilled"], info["pinned"]
                if r.object_size < 0:
                    r.object_size = info["size"]

    # ------------------------------------------------------------ public entry points

    def list_rows(
        self, resource: str, filters: Any = None, limit: int = 100, detail: bool = False
    ) -> tuple[list[Any], int]:
        """Rows of ``resource`` passing ``filters``: (at most ``limit`` rows, number that matched)."""
        checked = check_filters(filters, filter_keys(resource), resource)
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        if resource == "tasks":
            listed: TaskList = self._run(
                lambda pool: self._gcs(pool, "ListTasks", TaskQuery(checked, limit, detail))
            )
            rows: list = [_task_state(t, detail) for t in listed.tasks]
            if listed.num_evicted:
                logger.info("the task table dropped its %d oldest tasks (it keeps the latest 100k)", listed.num_evicted)
            return rows, listed.total
        gather = {
            "nodes": self._nodes, "jobs": self._jobs, "actors": self._actors,
            "placement_groups": self._placement_groups, "workers": self._workers, "objects": self._objects,
        }[resource]
        every = self._run(gather)
        self._check_missing()
        selected = [r for r in every if matches(r, checked)]
        return selected[:limit], len(selected)

    def get(self, resource: str, id_: str) -> StateSchema | None:
        """One row by its id (or a unique prefix of it); None when there is none."""
        if not isinstance(id_, str) or not id_:
            raise ValueError(f"an id must be a non-empty string, got {id_!r}")
        if resource == "tasks":
            rec = self._run(lambda pool: self._gcs(pool, "GetTask", id_))
            return _task_state(rec, True) if rec is not None else None
        schema = _schema(resource)
        key = schema.field_names()[0]
        rows, _ = self.list_rows(resource, limit=1 << 30, detail=True)
        return _by_id(rows, key, id_, resource)

    def summarize_tasks(self, filters: Any = None) -> dict[str, Any]:
        checked = check_filters(filters, TASK_FILTER_KEYS, "tasks")
        return {"cluster": self._run(lambda pool: self._gcs(pool, "SummarizeTasks", TaskQuery(checked)))}

    def task(self, task_id: str) -> TaskRecord | None:
        return self._run(lambda pool: self._gcs(pool, "GetTask", task_id))

    def tasks_where(self, filters: list, limit: int = MAX_TASKS_FETCH) -> list[TaskRecord]:
        return self._run(lambda pool: self._gcs(pool, "ListTasks", TaskQuery(filters, limit))).tasks

    def task_events(self, job_id: str | None = None) -> list:
        return self._run(lambda pool: self._gcs(pool, "GetTaskEvents", job_id))

    def node_stats(self) -> list[tuple[p.NodeInfo, p.NodeStats]]:
        result = self._run(self._node_stats)
        self._check_missing()
        return result

    def nodes(self) -> list[p.NodeInfo]:
        return self._run(lambda pool: self._gcs(pool, "ListNodes"))

    def actor_info(self, actor_id: str) -> p.ActorInfo | None:
        return self._run(lambda pool: self._gcs(pool, "GetActorInfo", p.GetActor(actor_id)))

    # ------------------------------------------------------------ logs

    def node(self, node_id: str) -> p.NodeInfo:
        """The alive node ``node_id`` (or a unique prefix of it); remembered once found."""
        cached = self._nodes_seen.get(node_id)
        if cached is not None:
            return cached
        nodes = [n for n in self.nodes() if n.state == "ALIVE"]
        found = _by_id(nodes, "node_id", node_id, "nodes")
        if found is None:
            raise ValueError(f"no alive node has id {node_id!r}; `distcore list nodes` shows them")
        self._nodes_seen[node_id] = found
        return found

    def list_logs(self, node_id: str | None = None) -> dict[str, list[LogFile]]:
        nodes = [self.node(node_id)] if node_id else [n for n in self.nodes() if n.state == "ALIVE"]

        async def gather(pool: ClientPool) -> dict[str, list[LogFile]]:
            files = await asyncio.gather(*(
                pool.get(n.address).call("NodeManager", "ListLogs", None, timeout=PER_PROCESS_TIMEOUT_S) for n in nodes
            ))
            return {n.node_id: f for n, f in zip(nodes, files, strict=True)}

        return self._run(gather)

    def read_log(self, node_id: str, filename: str, *, tail: int = 1000, offset: int = -1) -> LogChunk:
        node = self.node(node_id)
        request = ReadLog(filename, offset=offset, tail_lines=tail)
        return self._run(lambda pool: pool.get(node.address).call("NodeManager", "ReadLog", request, timeout=self.timeout))

    def worker_logs(self, *, worker_id: str | None = None, actor_id: str | None = None, task_id: str | None = None,
                    job_id: str | None = None) -> list[tuple[str, str, str]]:
        """The (node id, log file, what) of the workers that ran what is asked for."""
        if task_id:
            rec = self.task(task_id)
            if rec is None:
                raise ValueError(f"no task has id {task_id!r}; `distcore list tasks` shows them")
            if not rec.worker_id or not rec.node_id:
                raise ValueError(f"task {rec.task_id} has not started on a worker yet (state {rec.state})")
            return [(rec.node_id, worker_log_name(rec.worker_id), f"task {rec.task_id} ({rec.name})")]
        if actor_id:
            actor = self.get("actors", actor_id)
            if actor is None:
                raise ValueError(f"no actor has id {actor_id!r}; `distcore list actors` shows them")
            assert isinstance(actor, ActorState)
            if not actor.worker_id or not actor.node_id:
                raise ValueError(f"actor {actor.actor_id} has not started on a worker yet (state {actor.state})")
            return [(actor.node_id, worker_log_name(actor.worker_id), f"actor {actor.class_name} {actor.actor_id}")]
        workers = self.list_rows("workers", limit=1 << 30)[0]
        if worker_id:
            found = _by_id([w for w in workers if w.worker_type == "WORKER"], "worker_id", worker_id, "workers")
            if found is not None:
                return [(found.node_id, worker_log_name(found.worker_id), f"worker {found.worker_id}")]
            ran = [t for t in self.tasks_where([]) if t.worker_id and t.worker_id.startswith(worker_id)]
            if not ran:
                raise ValueError(f"no worker has id {worker_id!r}; `distcore list workers` shows the live ones")
            return [(ran[-1].node_id or "", worker_log_name(ran[-1].worker_id or ""), f"worker {ran[-1].worker_id}")]
        if job_id:
            seen: dict[str, tuple[str, str, str]] = {}
            for w in workers:
                if w.worker_type == "WORKER" and w.job_id == job_id:
                    seen[w.worker_id] = (w.node_id, worker_log_name(w.worker_id), f"worker {w.worker_id} of job {job_id}")
            for t in self.tasks_where([("job_id", "=", job_id)]):
                if t.worker_id and t.node_id and t.worker_id not in seen:
                    seen[t.worker_id] = (t.node_id, worker_log_name(t.worker_id), f"worker {t.worker_id} of job {job_id}")
            if not seen:
                raise ValueError(f"no worker has run anything of job {job_id!r}; `distcore list jobs` shows the jobs")
            return list(seen.values())
        raise ValueError("say whose logs: --node-id, --actor-id, --task-id, --job-id or --worker-id")


def filter_keys(resource: str) -> list[str]:
    """The keys ``resource`` can be filtered on."""
    return list(TASK_FILTER_KEYS) if resource == "tasks" else _schema(resource).field_names()


def _schema(resource: str) -> type[StateSchema]:
    schema = SCHEMAS.get(resource)
    if schema is None:
        raise ValueError(f"unknown resource {resource!r}; one of: {', '.join(sorted(SCHEMAS))}")
    return schema


def _by_id(rows: list, key: str, id_: str, what: str) -> Any:
    exact = [r for r in rows if getattr(r, key) == id_]
    if exact:
        return exact[0]
    found = [r for r in rows if str(getattr(r, key)).startswith(id_)] if len(id_) >= 4 else []
    if len(found) > 1:
        raise ValueError(f"id prefix {id_!r} is ambiguous: it matches {len(found)} {what}; give more of it")
    return found[0] if found else None


def _task_state(rec: TaskRecord, detail: bool) -> TaskState:
    return TaskState(
        task_id=rec.task_id, attempt_number=rec.attempt_number, name=rec.name, state=rec.state, job_id=rec.job_id,
        actor_id=rec.actor_id, type=rec.type, func_or_class_name=rec.func_or_class_name,
        parent_task_id=rec.parent_task_id, node_id=rec.node_id, worker_id=rec.worker_id, worker_pid=rec.worker_pid,
        error_type=rec.error_type, error_message=rec.error_message, required_resources=rec.required_resources,
        placement_group_id=rec.placement_group_id, creation_time_ms=rec.creation_time_ms,
        start_time_ms=rec.start_time_ms, end_time_ms=rec.end_time_ms,
        events=list(rec.events) if detail else None,
    )


def summarize_actors(rows: list[ActorState]) -> dict[str, Any]:
    """Ray's ``summarize_actors`` layout: counts by class and state."""
    summary: dict[str, dict[str, Any]] = {}
    for a in rows:
        group = summary.setdefault(a.class_name, {"class_name": a.class_name, "state_counts": {}})
        group["state_counts"][a.state] = group["state_counts"].get(a.state, 0) + 1
    return {"cluster": {"summary": summary, "total_actors": len(rows), "summary_by": "class"}}


def summarize_objects(rows: list[ObjectState]) -> dict[str, Any]:
    """Ray's ``summarize_objects`` layout, grouped by reference type (call sites are not recorded)."""
    summary: dict[str, dict[str, Any]] = {}
    for ref_type in sorted({r.reference_type for r in rows}):
        group = [r for r in rows if r.reference_type == ref_type]
        sizes = {r.object_id: max(0, r.object_size) for r in group}
        task_states: dict[str, int] = {}
        for r in group:
            task_states[r.task_status] = task_states.get(r.task_status, 0) + 1
        summary[ref_type] = {
            "total_objects": len(sizes), "total_size_mb": sum(sizes.values()) / 2**20,
            "total_num_workers": len({r.worker_id for r in group}), "total_num_nodes": len({r.node_id for r in group}),
            "task_state_counts": task_states, "ref_type_counts": {ref_type: len(group)},
        }
    sizes = {r.object_id: max(0, r.object_size) for r in rows}
    return {"cluster": {
        "summary": summary, "total_objects": len(sizes), "total_size_mb": sum(sizes.values()) / 2**20,
        "callsite_enabled": False, "summary_by": "reference_type",
    }}


def iter_logs(client: StateClient, targets: list[tuple[str, str, str]], *, tail: int = 1000, follow: bool = False,
              interval: float = 0.5, headers: bool = False) -> Iterator[str]:
    """Yield the text of each target's log (``(node id, file, label)``); with ``follow``, new text as it comes."""
    offsets: dict[tuple[str, str], int] = {}
    for node_id, filename, label in targets:
        chunk = client.read_log(node_id, filename, tail=tail)
        offsets[(node_id, filename)] = chunk.next_offset
        if headers:
            yield f"======== {label}: {filename} on node {node_id[:12]} ========\n"
        if chunk.data:
            yield chunk.data.decode("utf-8", "replace")
    while follow:
        time.sleep(interval)
        for (node_id, filename), offset in list(offsets.items()):
            chunk = client.read_log(node_id, filename, offset=offset)
            offsets[(node_id, filename)] = chunk.next_offset
            if chunk.data:
                yield chunk.data.decode("utf-8", "replace")
