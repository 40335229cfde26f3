"""The node manager's gRPC service: leases, workers, objects, bundles, logs."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from distcore._private import protocol as p
from distcore._private.node import store_session
from distcore._private.node_manager import introspection
from distcore._private.node_manager.head_reconnect import HeadLink
from distcore._private.node_manager.leases import LeaseManager
from distcore._private.node_manager.memory_monitor import (
    MemoryMonitor,
    resolve_interval,
    resolve_threshold,
)
from distcore._private.node_manager.object_transfer import (
    ObjectChunk,
    ObjectTransfer,
    PullObject,
    ReadChunks,
)
from distcore._private.node_manager.worker_pool import WorkerPool, WorkerProc
from distcore._private.object_store.state import ObjectState
from distcore._private.object_store.store import LocalObjectStore
from distcore._private.rpc import ClientPool, RpcError
from distcore._private.scheduling.resources import NodeResources, ResourceSet
from distcore._private.worker_death import WorkerDeathInfo
from distcore._version import __version__

logger = logging.getLogger(__name__)

HEARTBEAT_S = 0.5
#: Share of the store's capacity that freed, never-read segments may keep for the next puts.
RECYCLE_FRACTION = 0.25


@dataclass
class NodeConfig:
    node_id: str
    ip: str
    gcs_address: str
    session_dir: str
    session_name: str
    token: str | None
    resources: dict[str, float]
    object_store_memory: int
    is_head: bool = False
    prestart: int | None = None
    labels: dict[str, str] | None = None
    metrics_address: str = ""  # host:port of this node's metrics endpoint, set before start()
    memory_usage_threshold: float | None = None  # memory monitor (None: env DISTCORE_MEMORY_USAGE_THRESHOLD or 0.95)


class NodeManagerService:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.address = ""
        self.clients = ClientPool(config.token)
        self.resources = NodeResources(ResourceSet.from_dict(config.resources))
        self.store = LocalObjectStore(
            store_session(config.session_name, config.node_id), config.object_store_memory,
            os.path.join(config.session_dir, "spill", config.node_id[:12]),
            recycle_bytes=int(config.object_store_memory * RECYCLE_FRACTION),
        )
        self.object_owners: dict[str, p.Address | None] = {}
        self.transfer = ObjectTransfer(self.store, self.clients, self.node_id, lambda: self.view, self._refresh_view)
        self.view: p.ClusterView | None = None
        self.pool: WorkerPool | None = None
        self.leases: LeaseManager | None = None
        self.memory_monitor: MemoryMonitor | None = None
        self._tasks: list[asyncio.Task] = []
        self.dead_worker_logs: deque[str] = deque(maxlen=10_000)  # for ListLogs
        self.head_link = HeadLink(self)  # heartbeats through a head restart (``head_reconnect.py``)

    async def start(self, address: str) -> None:
        """Register with the control store, then start heartbeats and workers."""
        self.address = address
        cfg = self.config
        prestart = cfg.prestart if cfg.prestart is not None else int(cfg.resources.get("CPU", 1))
        self.pool = WorkerPool(
            node_id=cfg.node_id, node_address=address, gcs_address=cfg.gcs_address,
            session_dir=cfg.session_dir, session_name=cfg.session_name, token=cfg.token,
            on_death=self._on_worker_death, soft_limit=int(cfg.resources.get("CPU", 1)), warm_target=prestart,
        )
        self.leases = LeaseManager(self.node_id, self.resources, self.pool, lambda: self.view)
        self.leases.refresh_view = self._refresh_view
        info = p.NodeInfo(
            node_id=cfg.node_id, address=address, ip=cfg.ip, resources=dict(cfg.resources),
            labels=dict(cfg.labels or {}), is_head=cfg.is_head, version=__version__,
            session_dir=cfg.session_dir, object_store_memory=cfg.object_store_memory, pid=os.getpid(),
            start_time=time.time(), metrics_address=cfg.metrics_address,
        )
        self.node_info = info  # registered again after a head restart that lost the tables
        self.view = await self._gcs().call("Gcs", "RegisterNode", info)
        self.pool.start_monitor()
        self.pool.prestart(prestart)
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        self._tasks.append(asyncio.ensure_future(self._watch_view()))
        self.memory_monitor = MemoryMonitor(
            node_id=cfg.node_id, node_ip=cfg.ip, pool=self.pool, leases=self.leases,
            threshold=resolve_threshold(cfg.memory_usage_threshold), interval_s=resolve_interval(),
        )
        self._tasks.append(asyncio.ensure_future(self.memory_monitor.run()))

    async def _watch_view(self) -> None:
        """Follow cluster changes (nodes joining, leaving) as they happen."""
        while True:
            version = self.view.version if self.view is not None else -1
            try:
                self.view = await self._gcs().call("Gcs", "WatchClusterView", version, timeout=30)
            except (RpcError, TimeoutError):
                await asyncio.sleep(1.0)

    async def _refresh_view(self) -> None:
        try:
            self.view = await self._gcs().call("Gcs", "GetClusterView", None, timeout=5)
        except (RpcError, TimeoutError):
            pass

    def _gcs(self):
        return self.clients.get(self.config.gcs_address)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            assert self.leases is not None
            self.store.expire_recycled()  # kept segments unused for a while give their memory back
            hb = p.Heartbeat(
                self.node_id, self.resources.available.to_dict(), self.leases.pending_demand(),
                self.store.stats().get("used", 0), self.leases.infeasible_demand(),
            )
            try:
                view = await self._gcs().call("Gcs", "Heartbeat", hb, timeout=10)
            except (RpcError, TimeoutError) as exc:
                self.head_link.heartbeat_failed(exc)  # the head may be restarting: retry, keep serving
                continue
            self.head_link.heartbeat_ok()
            if view is not None:
                self.view = view
            elif not self.config.is_head:
                await self.head_link.unknown_node()  # a restarted head without this node's record

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if not self.config.is_head:
            try:  # tell the head at once instead of letting heartbeats time out
                await self._gcs().call("Gcs", "DrainNode", self.node_id, timeout=2)
            except (RpcError, TimeoutError):
                pass
        if self.pool is not None:
            self.pool.shutdown()
        self.store.close()
        await self.clients.close()

    # ------------------------------------------------------------ workers

    async def rpc_RegisterWorker(self, req: p.RegisterWorker) -> p.WorkerConfig:
        assert self.pool is not None
        if not req.is_driver and self.pool.on_registered(req) is None:
            raise ValueError(f"unknown worker {req.worker_id[:8]}: it was not started by this node")
        cfg = self.config
        return p.WorkerConfig(cfg.session_name, self.node_id, cfg.gcs_address, cfg.session_dir)

    async def rpc_RequestWorkerLease(self, req: p.LeaseRequest) -> p.LeaseReply:
        assert self.leases is not None
        return await self.leases.request(req)

    async def rpc_ReturnWorker(self, req: p.ReturnWorker) -> None:
        assert self.leases is not None
        await self.leases.release(req)

    async def rpc_WorkerBlocked(self, req: p.WorkerBlocked) -> None:
        assert self.leases is not None
        await self.leases.set_blocked(req.worker_id, req.blocked)

    async def rpc_JobFinished(self, req: p.JobCleanup) -> int:
        """End the workers of a finished job; returns how many were ended."""
        assert self.pool is not None and self.leases is not None
        if req.driver_worker_id:  # the driver is gone: its objects and lease requests go with it
            self._free_objects_of(req.driver_worker_id)
            await self.leases.owner_died(req.driver_worker_id)
        ended = 0
        for worker in self.pool.job_workers(req.job_id):
            if worker.actor_id and worker.actor_id in req.keep_actor_ids:
                continue
            self.pool.kill(worker, f"its job {req.job_id} finished")
            ended += 1
        self.pool.top_up()  # keep warm workers for the next job, as at start-up
        return ended

    async def rpc_GetWorkerDeathReason(self, worker_id: str) -> WorkerDeathInfo | None:
        """Why this node ended ``worker_id`` (memory monitor, kill request); None if it did not."""
        return self.memory_monitor.death_info(worker_id) if self.memory_monitor is not None else None

    async def rpc_KillWorker(self, req: p.KillWorker) -> bool:
        assert self.pool is not None
        worker = self.pool.workers.get(req.worker_id)
        if worker is None:
            return False
        self.pool.kill(worker, req.reason or "killed on request", force=req.force)
        return True

    async def _on_worker_death(self, worker: WorkerProc, code: int | None) -> None:
        assert self.leases is not None
        self._free_objects_of(worker.worker_id)
        self.dead_worker_logs.append(os.path.basename(worker.log_path))
        lease = await self.leases.on_worker_death(worker)
        await self.leases.owner_died(worker.worker_id)  # the leases it held for its own tasks
        actor_id = worker.actor_id or (lease.request.for_actor if lease else None)
        if actor_id is None:
            # The control store fails the tasks this worker ran or submitted whose end it never heard of.
            reason = worker.killed_reason or f"the worker process (pid {worker.pid}) exited with code {code}"
            intended = code == 0 and not worker.killed_reason
        else:
            reason = worker.killed_reason or f"the actor's worker process (pid {worker.pid}) exited with code {code}"
            intended = code == 0 and not worker.killed_reason
            if intended:
                reason = "the actor exited (exit_actor was called)"
        try:
            await self._gcs().call(
                "Gcs", "ReportWorkerDeath",
                p.WorkerDeath(worker.worker_id, self.node_id, actor_id, reason, code, intended),
            )
        except RpcError as exc:
            logger.warning("could not report the death of worker %s: %s", worker.worker_id[:8], exc)

    async def rpc_GetNodeId(self, _: None) -> str:
        """This node's id (a driver on a restarted head follows it: ``head_restart.follow_local_node``)."""
        return self.node_id

    # ------------------------------------------------------------ objects

    async def rpc_CreateObject(self, req: p.CreateObject) -> str | tuple[str, bool]:
        earlier = self.store.info(req.object_id)
        if earlier is not None:
            # A retried task writes the same return id again: the earlier
            # attempt's copy (sealed, or left unsealed by a killed writer) goes.
            if earlier.state is ObjectState.CREATING:
                self.store.abort(req.object_id)
            else:
                self.store.delete([req.object_id])
        if req.recycle:
            return self.store.create_recyclable(req.object_id, req.size)
        return self.store.create(req.object_id, req.size)

    async def rpc_SealObject(self, req: p.SealObject) -> None:
        self.store.seal(req.object_id, pinned=req.pinned)
        self.object_owners[req.object_id] = req.owner

    async def rpc_GetObjects(self, ids: list[str]) -> list[tuple[str, int] | None]:
        return [self.store.ensure_local(i) for i in ids]

    async def rpc_FreeObjects(self, ids: list[str]) -> None:
        self.store.delete(ids)
        for i in ids:
            self.object_owners.pop(i, None)

    def _free_objects_of(self, worker_id: str) -> None:
        """An owner died: its objects are lost (gets raise OwnerDiedError), so their copies here go."""
        dead = [i for i, owner in self.object_owners.items() if owner is not None and owner.worker_id == worker_id]
        if dead:
            self.store.delete(dead)
            for i in dead:
                del self.object_owners[i]

    async def rpc_PullObject(self, req: PullObject) -> tuple[str, int]:
        """Make an object of another node local (streamed, deduplicated): ``(segment name, size)``."""
        return await self.transfer.pull(req)

    def stream_ReadObjectChunks(self, req: ReadChunks) -> AsyncIterator[ObjectChunk]:
        """Stream an object of this node to a node manager pulling it."""
        return self.transfer.read_chunks(req)

    async def rpc_ReadObject(self, object_id: str) -> bytes | None:
        from distcore._private.object_store.shm import open_segment

        found = self.store.ensure_local(object_id)
        if found is None:
            return None
        seg = open_segment(found[0])
        try:
            return bytes(seg.buffer)
        finally:
            seg.close()

    # ------------------------------------------------------------ placement groups

    async def rpc_ReserveBundles(self, req: p.ReserveBundles) -> bool:
        done: list[int] = []
        for index, resources in sorted(req.bundles.items()):
            if not self.resources.add_bundle(req.pg_id, index, ResourceSet.from_dict(resources)):
                for i in done:
                    self.resources.remove_bundle(req.pg_id, i)
                return False
            done.append(index)
        return True

    async def rpc_ReleaseBundles(self, req: p.ReleaseBundles) -> None:
        assert self.leases is not None and self.pool is not None
        indexes = req.indexes
        if indexes is None:
            indexes = [b.index for b in self.resources.bundles() if b.pg_id == req.pg_id]
        # Workers still running inside the bundles are killed, as in Ray.
        for lease in self.leases.leases_of_bundle(req.pg_id):
            if lease.allocation and lease.allocation.bundle and lease.allocation.bundle[1] in indexes:
                self.resources.release(lease.allocation)
                lease.allocation = None
                self.pool.kill(lease.worker, "its placement group was removed")
        for index in indexes:
            self.resources.remove_bundle(req.pg_id, index)
        await self.leases._notify()

    # ------------------------------------------------------------ stats and logs

    async def rpc_GetNodeStats(self, _: None) -> p.NodeStats:
        assert self.pool is not None
        workers = [
            {"worker_id": w.worker_id, "pid": w.pid, "job_id": w.job_id, "actor_id": w.actor_id,
             "lease_id": w.lease_id, "idle": w in self.pool.idle, "log_path": w.log_path,
             "address": w.address.target if w.address else None, "start_time": w.start_time}
            for w in self.pool.workers.values()
        ]
        return p.NodeStats(
            self.node_id, len(self.pool.workers), {**self.store.stats(), **self.transfer.stats()},
            self.resources.available.to_dict(), self.resources.total.to_dict(), workers,
        )

    async def rpc_ListLogs(self, _: None) -> list[introspection.LogFile]:
        """The files in this node's log directory (for ``distcore logs``)."""
        assert self.pool is not None
        own = {os.path.basename(w.log_path) for w in self.pool.workers.values()} | set(self.dead_worker_logs)
        return introspection.list_logs(os.path.join(self.config.session_dir, "logs"), self.node_id, own)

    async def rpc_ReadLog(self, req: introspection.ReadLog) -> introspection.LogChunk:
        """A tail or a slice of one of this node's log files."""
        log_dir = os.path.join(self.config.session_dir, "logs")
        return await asyncio.to_thread(introspection.read_log, log_dir, req, self.node_id)

    async def rpc_GetObjectInfos(self, object_ids: list[str]) -> list[dict | None]:
        """Size and in-memory / spilled / pinned state of objects in this node's store."""
        return introspection.object_infos(self.store, object_ids)

    async def stream_StreamLogs(self, job_id: str) -> AsyncIterator[list[str]]:
        """Yield batches of new output lines from this job's workers."""
        assert self.pool is not None
        offsets: dict[str, int] = {}
        while True:
            lines: list[str] = []
            for worker in self.pool.log_sources(job_id) + [w for w in self.pool.workers.values() if not w.job_id]:
                if not worker.job_id:
                    # Not yet serving a job: skip its startup output.
                    offsets[worker.log_path] = _size(worker.log_path)
                    continue
                lines.extend(_read_new(worker.log_path, offsets))
            if lines:
                yield lines
            await asyncio.sleep(0.1)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_new(path: str, offsets: dict[str, int]) -> list[str]:
    start = offsets.get(path, 0)
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    cut = data.rfind(b"\n")
    if cut < 0:
        return []
    offsets[path] = start + cut + 1
    return data[: cut + 1].decode("utf-8", "replace").splitlines()
