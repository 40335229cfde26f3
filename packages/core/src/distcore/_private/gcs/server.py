"""The control store's gRPC service: one thin handler per RPC.

State lives in the tables (:mod:`nodes`, :mod:`actors`,
:mod:`placement_groups`), the key-value store and the job table here; each
handler validates and delegates.
"""

from __future__ import annotations

import asyncio
import logging
import time

from distcore._private import protocol as p
from distcore._private.gcs import recovery
from distcore._private.gcs.actors import ActorTable
from distcore._private.gcs.driver_watch import watch_drivers
from distcore._private.gcs.idempotency import WRITE_METHODS, OnceCall, ReplyCache
from distcore._private.gcs.node_health import NodeHealthChecker
from distcore._private.gcs.nodes import NodeTable
from distcore._private.gcs.placement_groups import PlacementGroupTable
from distcore._private.gcs.storage import Storage
from distcore._private.gcs.tasks import TaskList, TaskQuery, TaskRecord, TaskTable, record_to_row
from distcore._private.rpc import ClientPool
from distcore._private.scheduling.policy import (
    DefaultStrategy,
    NodeView,
    PlacementGroupStrategy,
    SchedulingPolicy,
)
from distcore._private.scheduling.resources import ResourceSet

logger = logging.getLogger(__name__)

TASKS_TABLE = "tasks"
#: Ended task records kept in ``gcs.sqlite`` (the newest; older ones are trimmed).
MAX_PERSISTED_TASKS = 20_000
#: Seconds after a driver exits before its job's unfinished task rows are failed (late events land first).
JOB_TASKS_GRACE_S = 3.0


class GcsService:
    def __init__(self, storage_path: str | None, token: str | None, dead_timeout_s: float = 30.0) -> None:
        self.storage = Storage(storage_path)
        # Calls to workers (actor constructors) take the framed transport where they can (same node).
        self.clients = ClientPool(token, framed=True)
        self.nodes = NodeTable(self.storage, dead_timeout_s)
        self.pgs = PlacementGroupTable(self.storage, self.nodes, self.clients)
        self.actors = ActorTable(self.storage, self.nodes, self.clients, self._pick_node)
        self.policy = SchedulingPolicy()
        self.kv: dict[tuple[str, str], bytes] = {
            tuple(k.split("\x00", 1)): v for k, v in self.storage.load("kv").items()  # type: ignore[misc]
        }
        self.jobs: dict[str, p.JobInfo] = self.storage.load("jobs")
        self.replies = ReplyCache(self.storage)  # retried writes apply once (``idempotency.py``)
        self._next_job = 1 + max((int(j, 16) for j in self.jobs), default=0)
        self.nodes.on_node_dead.append(self.actors.on_node_death)
        self.nodes.on_node_dead.append(self.pgs.on_node_death)
        self.nodes.on_node_dead.append(self._fail_tasks_of_dead_node)
        self._monitor: asyncio.Task | None = None
        self._driver_watch: asyncio.Task | None = None
        # Task events merged into a bounded task table; ended tasks are persisted (the newest
        # MAX_PERSISTED_TASKS), so a restarted head still lists them.
        self.tasks = TaskTable()
        self.tasks.restore([row for _, row in self.storage.load_ordered(TASKS_TABLE)])
        self._persisted_since_trim = 0
        self.autoscaler = None  # set on a head started with an autoscaling config (``autoscaler/monitor.py``)

    def start_background(self) -> None:
        # A head restarted on its session's tables first matches them to the running cluster (``recovery.py``).
        self._recovery = recovery.start(self)
        self._monitor = asyncio.ensure_future(self.nodes.monitor())
        # Nodes whose process tree is gone are dead before the heartbeat timeout (``node_health.py``).
        self._node_health = asyncio.ensure_future(NodeHealthChecker(self.nodes, self.nodes.dead_timeout_s).run())
        # Drivers that die without JobFinished (SIGKILL) end their jobs all the same (``driver_watch.py``).
        self._driver_watch = asyncio.ensure_future(watch_drivers(lambda: self.jobs, self.clients, self.rpc_JobFinished))

    async def close(self) -> None:
        if self._monitor:
            self._monitor.cancel()
        if getattr(self, "_node_health", None) is not None:
            self._node_health.cancel()
        if self._driver_watch:
            self._driver_watch.cancel()
        if getattr(self, "_recovery", None) is not None:
            self._recovery.cancel()
        await self.clients.close()
        self.storage.close()

    # ---------------------------------------------------------------- scheduling helper

    def _pick_node(self, resources: dict[str, float], strategy, placement) -> str | None:
        view = self.nodes.view()
        nodes = {
            n: NodeView(n, ResourceSet.from_dict(v.total), ResourceSet.from_dict(v.available), v.alive, v.labels)
            for n, v in view.nodes.items()
        }
        request = ResourceSet.from_dict(resources)
        if placement is not None:
            group = self.pgs.groups.get(placement[0])
            if group is None or group.info.state != "CREATED":
                return None
            strategy = PlacementGroupStrategy(placement[0], placement[1])
            decision = self.policy.decide(request, nodes, strategy, "", bundle_nodes=group.info.bundle_nodes)
        else:
            decision = self.policy.decide(request, nodes, strategy or DefaultStrategy(), self._head_node_id())
        return decision.node_id if decision.kind in ("run", "wait") else None

    def _head_node_id(self) -> str:
        for node_id, info in self.nodes.nodes.items():
            if info.is_head and info.state == "ALIVE":
                return node_id
        return ""

    # ---------------------------------------------------------------- retried writes

    async def rpc_Once(self, call: OnceCall):
        """A write sent with a request id: applied once however often the client retries it."""
        if call.method not in WRITE_METHODS:
            raise ValueError(f"Gcs.Once carries only writes ({', '.join(sorted(WRITE_METHODS))}), not {call.method!r}")
        return await self.replies.run(call, getattr(self, f"rpc_{call.method}"))

    # ---------------------------------------------------------------- nodes

    async def rpc_RegisterNode(self, info: p.NodeInfo) -> p.ClusterView:
        return self.nodes.register(info)

    async def rpc_Heartbeat(self, hb: p.Heartbeat) -> p.ClusterView | None:
        return self.nodes.heartbeat(hb)

    async def rpc_GetClusterView(self, _: None) -> p.ClusterView:
        return self.nodes.view()

    async def rpc_WatchClusterView(self, version: int) -> p.ClusterView:
        """Long poll: the view once it is newer than ``version`` (or after 10 s)."""
        if self.nodes.version <= version:
            try:
                await asyncio.wait_for(self.nodes.changed.wait(), 10.0)
            except TimeoutError:
                pass
        return self.nodes.view()

    async def rpc_ListNodes(self, _: None) -> list[p.NodeInfo]:
        return list(self.nodes.nodes.values())

    async def rpc_GetStatus(self, _: None) -> dict:
        """Nodes, resources and demands, for ``distcore status``."""
        view = self.nodes.view()
        nodes, total, available = [], {}, {}
        for node_id, info in self.nodes.nodes.items():
            v = view.nodes[node_id]
            nodes.append({"node_id": node_id, "address": info.address, "state": info.state, "is_head": info.is_head,
                          "total": dict(v.total), "available": dict(v.available),
                          "metrics_address": info.metrics_address, "death_reason": info.death_reason})
            if info.state == "ALIVE":
                for k, x in v.total.items():
                    total[k] = total.get(k, 0.0) + x
                for k, x in v.available.items():
                    available[k] = available.get(k, 0.0) + x
        alive = self.nodes.alive()
        pending = [d for n, ds in self.nodes.pending_demand.items() if n in alive for d in ds]
        infeasible = [d for n, ds in self.nodes.infeasible_demand.items() if n in alive for d in ds]
        pending += [g.info.bundles for g in self.pgs.groups.values() if g.info.state == "PENDING"]
        return {"nodes": nodes, "total": total, "available": available, "pending": pending, "infeasible": infeasible,
                "autoscaler": await self.rpc_GetAutoscalerStatus(None)}

    async def rpc_GetAutoscalerStatus(self, _: None) -> dict | None:
        """Node counts per type, nodes, demands and recent decisions; None without an autoscaler."""
        return self.autoscaler.status() if self.autoscaler is not None else None

    async def rpc_DrainNode(self, node_id: str) -> bool:
        await self.nodes.mark_dead(node_id, "removed by request")
        return True

    async def rpc_ReportWorkerDeath(self, death: p.WorkerDeath) -> None:
        if death.actor_id is not None:
            await self.actors.on_worker_death(death)
        self._persist_tasks(self.tasks.fail_unfinished(
            "WORKER_DIED", f"the worker {death.worker_id[:8]} on node {death.node_id[:8]} that ran or submitted this "
            f"task died ({death.reason}) before the task's end was reported", worker_id=death.worker_id))

    async def _fail_tasks_of_dead_node(self, node_id: str) -> None:
        info = self.nodes.nodes.get(node_id)
        why = info.death_reason if info is not None and info.death_reason else "it stopped answering"
        self._persist_tasks(self.tasks.fail_unfinished(
            "NODE_DIED", f"the node {node_id[:8]} that ran or submitted this task died ({why}) before the task's "
            "end was reported", node_id=node_id))

    # ---------------------------------------------------------------- key-value store

    async def rpc_KvPut(self, req: p.KvPut) -> bool:
        key = (req.namespace, req.key)
        if key in self.kv and not req.overwrite:
            return False
        added = key not in self.kv
        self.kv[key] = req.value
        self.storage.put("kv", f"{req.namespace}\x00{req.key}", req.value)
        return added

    async def rpc_KvGet(self, req: p.KvKey) -> bytes | None:
        return self.kv.get((req.namespace, req.key))

    async def rpc_KvDel(self, req: p.KvKey) -> int:
        if self.kv.pop((req.namespace, req.key), None) is None:
            return 0
        self.storage.delete("kv", f"{req.namespace}\x00{req.key}")
        return 1

    async def rpc_KvExists(self, req: p.KvKey) -> bool:
        return (req.namespace, req.key) in self.kv

    async def rpc_KvKeys(self, req: p.KvKey) -> list[str]:
        return [k for ns, k in self.kv if ns == req.namespace and k.startswith(req.key)]

    # ---------------------------------------------------------------- jobs

    async def rpc_RegisterJob(self, job: p.JobInfo) -> p.JobInfo:
        from distcore._version import __version__
        from distcore.exceptions import VersionMismatchError

        if job.version and job.version != __version__:
            raise VersionMismatchError(
                f"this driver runs distcore {job.version} but the cluster's head runs distcore {__version__}: "
                f"install distcore=={__version__} where the driver runs"
            )
        job.job_id = f"{self._next_job:08x}"
        self._next_job += 1
        job.start_time = time.time()
        self.jobs[job.job_id] = job
        self.storage.put("jobs", job.job_id, job)
        return job

    async def rpc_JobFinished(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.is_dead:
            return
        job.is_dead = True
        job.end_time = time.time()
        self.storage.put("jobs", job_id, job)
        await self.actors.on_job_finished(job_id)
        await self.pgs.on_job_finished(job_id)
        await self._cleanup_job_workers(job_id)
        asyncio.get_running_loop().call_later(JOB_TASKS_GRACE_S, self._fail_tasks_of_finished_job, job_id)

    def _fail_tasks_of_finished_job(self, job_id: str) -> None:
        self._persist_tasks(self.tasks.fail_unfinished(
            "WORKER_DIED", f"the driver of job {job_id} exited before this task's end was reported", job_id=job_id))

    async def _cleanup_job_workers(self, job_id: str) -> None:
        """Tell every node to end the finished job's workers (detached actors stay)."""
        keep = [
            a.info.actor_id for a in self.actors.actors.values()
            if a.info.job_id == job_id and a.info.detached and a.info.state != p.ACTOR_DEAD
        ]
        job = self.jobs.get(job_id)
        driver = job.driver_address.worker_id if job is not None and job.driver_address is not None else ""
        for info in self.nodes.alive().values():
            try:
                await self.clients.get(info.address).call(
                    "NodeManager", "JobFinished", p.JobCleanup(job_id, keep, driver), timeout=10
                )
            except Exception:  # noqa: BLE001 - a node that is going away cleans up anyway
                pass

    async def rpc_ListJobs(self, _: None) -> list[p.JobInfo]:
        return list(self.jobs.values())

    # ---------------------------------------------------------------- actors

    async def rpc_RegisterActor(self, spec: p.ActorSpec) -> p.ActorInfo:
        return self.actors.register(spec)

    async def rpc_GetActorInfo(self, req: p.GetActor) -> p.ActorInfo | None:
        return await self.actors.get(req)

    async def rpc_GetNamedActor(self, req: p.NamedActor) -> p.ActorInfo | None:
        return self.actors.get_named(req.name, req.namespace)

    async def rpc_ListActors(self, _: None) -> list[p.ActorInfo]:
        return self.actors.list()

    async def rpc_KillActor(self, req: p.KillActor) -> None:
        await self.actors.kill(req)

    # ---------------------------------------------------------------- task events

    async def rpc_AddTaskEvents(self, events: list) -> None:
        self._persist_tasks(self.tasks.add_events(events))

    def _persist_tasks(self, records: list[TaskRecord]) -> None:
        """Write ended task records through (bounded: the newest MAX_PERSISTED_TASKS stay)."""
        if not records:
            return
        try:
            self.storage.put_many(TASKS_TABLE, [(rec.task_id, record_to_row(rec)) for rec in records])
            self._persisted_since_trim += len(records)
            if self._persisted_since_trim >= MAX_PERSISTED_TASKS // 10:
                self._persisted_since_trim = 0
                self.storage.trim(TASKS_TABLE, MAX_PERSISTED_TASKS)
        except Exception:  # noqa: BLE001 - the task table is observability: never fail the caller
            logger.exception("could not persist %d task records", len(records))

    async def rpc_GetTaskEvents(self, job_id: str | None) -> list:
        """Finished executions (for ``timeline()``), oldest first."""
        return self.tasks.execution_events(job_id)

    async def rpc_ListTasks(self, query: TaskQuery) -> TaskList:
        self._persist_tasks(self.tasks.sweep())
        return self.tasks.list(query)

    async def rpc_GetTask(self, task_id: str) -> TaskRecord | None:
        self._persist_tasks(self.tasks.sweep())
        return self.tasks.get(task_id)

    async def rpc_SummarizeTasks(self, query: TaskQuery) -> dict:
        self._persist_tasks(self.tasks.sweep())
        return self.tasks.summarize(query)

    # ---------------------------------------------------------------- placement groups

    async def rpc_CreatePlacementGroup(self, spec: p.PlacementGroupSpec) -> str:
        """Register the group; its state when the reply leaves: ``CREATED`` when its bundles
        could be reserved at once (every one on the head's own node manager: no round trip), else ``PENDING``.

        A keyed write (``idempotency.KEYED_WRITES``): the group's id is the caller's, new for each
        ``placement_group()`` call, so a known id is this call's retry: it gets the group's state."""
        known = self.pgs.groups.get(spec.pg_id)
        if known is not None:
            return known.info.state
        group = self.pgs.create(spec)
        await asyncio.sleep(0)  # the first placement attempt runs now; in-process reservations finish in it
        self.pgs.persist(group)  # before the reply (a no-op when the attempt saved it CREATED)
        return group.info.state

    async def rpc_RemovePlacementGroup(self, pg_id: str) -> None:
        # A keyed write (``idempotency.KEYED_WRITES``): removing a removed group changes nothing.
        # Actors in the group die with it and are not restarted, as in Ray.
        for actor in list(self.actors.actors.values()):
            placement = actor.spec.creation.placement
            if placement and placement[0] == pg_id and actor.info.state != p.ACTOR_DEAD:
                await self.actors.kill(p.KillActor(
                    actor.info.actor_id, force=True, no_restart=True,
                    reason=f"its placement group {pg_id[:8]} was removed",
                ))
        await self.pgs.remove(pg_id)

    async def rpc_GetPlacementGroup(self, req: p.GetPlacementGroup) -> p.PlacementGroupInfo | None:
        return await self.pgs.get(req)

    async def rpc_ListPlacementGroups(self, _: None) -> list[p.PlacementGroupInfo]:
        return self.pgs.list()
