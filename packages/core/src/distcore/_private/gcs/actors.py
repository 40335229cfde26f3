"""The actor table: creation, restarts, death, names and lookups.

The control store schedules actors itself: it picks a node, leases a
dedicated worker from that node's manager, pushes the constructor, and
publishes the actor's address. When the worker dies it restarts the actor
while ``max_restarts`` allows.
"""

from __future__ import annotations

import asyncio
import logging

from distcore._private import protocol as p
from distcore._private.gcs.nodes import NodeTable
from distcore._private.gcs.storage import Storage
from distcore._private.ids import random_hex
from distcore._private.rpc import ClientPool, RpcError

logger = logging.getLogger(__name__)

_LIVE = (p.ACTOR_PENDING, p.ACTOR_ALIVE, p.ACTOR_RESTARTING)


class _Actor:
    __slots__ = ("spec", "info", "lease", "changed", "no_restart", "task")

    def __init__(self, spec: p.ActorSpec, info: p.ActorInfo) -> None:
        self.spec = spec
        self.info = info
        self.lease: tuple[str, str, str] | None = None  # node id, lease id, worker id
        self.changed = asyncio.Event()
        self.no_restart = False
        self.task: asyncio.Task | None = None


class ActorTable:
    def __init__(self, storage: Storage, nodes: NodeTable, clients: ClientPool, pick_node) -> None:
        self._storage = storage
        self._nodes = nodes
        self._clients = clients
        self._pick_node = pick_node  # (resources, strategy, placement) -> node_id | None
        self.actors: dict[str, _Actor] = {}
        self.named: dict[tuple[str, str], str] = {}
        for actor_id, (spec, info) in storage.load("actors").items():
            actor = _Actor(spec, info)
            self.actors[actor_id] = actor
            if info.name and info.state in _LIVE:
                self.named[(info.namespace, info.name)] = actor_id

    # ---------------------------------------------------------------- registry

    def register(self, spec: p.ActorSpec) -> p.ActorInfo:
        if spec.name:
            existing = self.named.get((spec.namespace, spec.name))
            if existing is not None and self.actors[existing].info.state in _LIVE:
                if spec.get_if_exists:
                    return self.actors[existing].info
                raise ValueError(
                    f"The actor name {spec.name!r} is already taken in namespace {spec.namespace!r}; "
                    "pick another name, pass get_if_exists=True, or kill the existing actor first"
                )
        info = p.ActorInfo(
            actor_id=spec.actor_id,
            state=p.ACTOR_PENDING,
            class_name=spec.class_name,
            name=spec.name,
            namespace=spec.namespace,
            max_restarts=spec.max_restarts,
            job_id=spec.job_id,
            detached=spec.detached,
            function_id=spec.creation.function_id,
            is_asyncio=spec.creation.is_asyncio,
            method_meta=spec.method_meta,
        )
        actor = _Actor(spec, info)
        self.actors[spec.actor_id] = actor
        if spec.name:
            self.named[(spec.namespace, spec.name)] = spec.actor_id
        self._save(actor)
        actor.task = asyncio.ensure_future(self._create(actor))
        return info

    def _save(self, actor: _Actor) -> None:
        self._storage.put("actors", actor.info.actor_id, (actor.spec, actor.info))

    def _set_state(self, actor: _Actor, state: str, **fields) -> None:
        info = actor.info
        info.state = state
        for key, value in fields.items():
            setattr(info, key, value)
        if state == p.ACTOR_DEAD and info.name:
            if self.named.get((info.namespace, info.name)) == info.actor_id:
                del self.named[(info.namespace, info.name)]
        self._save(actor)
        actor.changed.set()
        actor.changed = asyncio.Event()

    async def get(self, req: p.GetActor) -> p.ActorInfo | None:
        actor = self.actors.get(req.actor_id)
        if actor is None:
            return None
        if not req.wait_for_alive:
            return actor.info
        loop = asyncio.get_running_loop()
        deadline = None if req.timeout is None else loop.time() + req.timeout
        while True:
            info = actor.info
            if info.state == p.ACTOR_DEAD:
                return info
            if info.state == p.ACTOR_ALIVE and info.incarnation > req.after_incarnation:
                return info
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return info
            try:
                await asyncio.wait_for(actor.changed.wait(), remaining)
            except TimeoutError:
                return actor.info

    def get_named(self, name: str, namespace: str) -> p.ActorInfo | None:
        actor_id = self.named.get((namespace, name))
        return self.actors[actor_id].info if actor_id else None

    # ---------------------------------------------------------------- lifecycle

    async def _create(self, actor: _Actor) -> None:
        creation = actor.spec.creation
        warned = False
        while not actor.no_restart or actor.info.state != p.ACTOR_DEAD:
            node_id = self._pick_node(creation.placement_resources or creation.resources, creation.strategy, creation.placement)
            if node_id is None:
                if not warned:
                    logger.warning(
                        "actor %s (%s) cannot be scheduled yet: no node has %s available",
                        actor.info.class_name, actor.info.actor_id[:8], creation.resources,
                    )
                    warned = True
                await self._wait_cluster_change(1.0)
                continue
            node = self._nodes.nodes[node_id]
            lease_id = random_hex(8)
            request = p.LeaseRequest(
                lease_id=lease_id, resources=creation.resources, runtime_env=creation.runtime_env,
                runtime_env_key=creation.runtime_env_key, job_id=creation.job_id, owner=None,
                strategy=creation.strategy, placement=creation.placement, for_actor=actor.info.actor_id,
                name=actor.info.class_name, placement_resources=creation.placement_resources,
                retriable=actor.info.max_restarts == -1 or actor.info.num_restarts < actor.info.max_restarts,
            )
            try:
                reply: p.LeaseReply = await self._clients.get(node.address).call("NodeManager", "RequestWorkerLease", request)
            except RpcError as exc:
                logger.warning("lease for actor %s on node %s failed: %s", actor.info.actor_id[:8], node_id[:8], exc)
                await asyncio.sleep(0.5)
                continue
            if reply.failed:  # its worker cannot start (e.g. runtime_env setup fails): retrying won't help
                actor.no_restart = True
                self._set_state(actor, p.ACTOR_DEAD, address=None,
                                death_cause=f"the actor's worker could not start: {reply.reason}")
                return
            if not reply.granted:
                await self._wait_cluster_change(0.5)
                continue
            if actor.no_restart:
                await self._release(node.address, lease_id)
                return
            worker = reply.worker
            assert worker is not None
            actor.lease = (node_id, lease_id, worker.worker_id)
            creation.incarnation = actor.info.incarnation
            try:
                task_reply: p.TaskReply = await self._clients.get(worker.target).call(
                    "CoreWorker", "PushTask", p.PushTask(creation, reply.assigned, reply.gpu_ids)
                )
            except RpcError as exc:
                # The worker died while constructing; the death report restarts or buries it.
                logger.warning("actor %s constructor push failed: %s", actor.info.actor_id[:8], exc)
                return
            if task_reply.system_error or (task_reply.returns and task_reply.returns[0].is_error):
                err = task_reply.returns[0].value.data if task_reply.returns and task_reply.returns[0].value else None
                cause = task_reply.system_error or "the actor's constructor raised an exception"
                actor.no_restart = True
                self._set_state(actor, p.ACTOR_DEAD, death_cause=cause, death_error=err, address=None)
                await self._release(node.address, lease_id, disconnect=True)
                return
            self._set_state(actor, p.ACTOR_ALIVE, address=worker, node_id=node_id)
            return

    async def _wait_cluster_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._nodes.changed.wait(), timeout)
        except TimeoutError:
            pass

    async def _release(self, node_address: str, lease_id: str, disconnect: bool = False) -> None:
        try:
            await self._clients.get(node_address).call(
                "NodeManager", "ReturnWorker", p.ReturnWorker(lease_id, worker_exiting=True, disconnect=disconnect)
            )
        except RpcError:
            pass

    async def on_worker_death(self, death: p.WorkerDeath) -> None:
        for actor in self.actors.values():
            if actor.lease and actor.lease[2] == death.worker_id and actor.info.state in _LIVE:
                await self._handle_death(actor, death.reason, death.intended)
                return

    async def on_node_death(self, node_id: str) -> None:
        for actor in list(self.actors.values()):
            if actor.lease and actor.lease[0] == node_id and actor.info.state in _LIVE:
                await self._handle_death(actor, f"the node {node_id[:8]} running the actor died", False)

    async def _handle_death(self, actor: _Actor, reason: str, intended: bool) -> None:
        info = actor.info
        actor.lease = None
        can_restart = not actor.no_restart and not intended and (
            info.max_restarts == -1 or info.num_restarts < info.max_restarts
        )
        if can_restart:
            self._set_state(
                actor, p.ACTOR_RESTARTING, address=None, num_restarts=info.num_restarts + 1,
                incarnation=info.incarnation + 1, death_cause=reason,
            )
            actor.task = asyncio.ensure_future(self._create(actor))
        else:
            if not info.death_cause or info.state != p.ACTOR_DEAD:
                cause = reason
                if info.max_restarts and not actor.no_restart and not intended:
                    cause += f" (after {info.num_restarts} restarts, max_restarts={info.max_restarts})"
                self._set_state(actor, p.ACTOR_DEAD, address=None, death_cause=cause)

    async def kill(self, req: p.KillActor) -> None:
        actor = self.actors.get(req.actor_id)
        if actor is None or actor.info.state == p.ACTOR_DEAD:
            return
        if req.no_restart:
            actor.no_restart = True
        lease = actor.lease
        if req.no_restart:
            self._set_state(actor, p.ACTOR_DEAD, address=None, death_cause=req.reason)
            if actor.task and not actor.task.done():
                actor.task.cancel()
        if lease is not None:
            node = self._nodes.nodes.get(lease[0])
            if node is not None:
                try:
                    await self._clients.get(node.address).call(
                        "NodeManager", "KillWorker", p.KillWorker(lease[2], force=req.force, reason=req.reason)
                    )
                except RpcError:
                    pass

    async def on_job_finished(self, job_id: str) -> None:
        for actor in list(self.actors.values()):
            if actor.info.job_id == job_id and not actor.info.detached and actor.info.state in _LIVE:
                await self.kill(p.KillActor(actor.info.actor_id, force=True, no_restart=True,
                                            reason="the job (driver) that owned the actor exited"))

    def list(self) -> list[p.ActorInfo]:
        return [a.info for a in self.actors.values()]
