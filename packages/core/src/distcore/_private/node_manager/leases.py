"""Worker leases: grant a worker with resources, queue, spill back, release.

An owner asks for a lease for one resource shape; the lease manager decides
(with the scheduling policy over the cluster view) whether to run here, to
send the owner to another node, or to report the request infeasible; a
granted lease holds the resources until the owner returns the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from distcore._private import protocol as p
from distcore._private.metrics.stats import LeaseStats
from distcore._private.node_manager.worker_pool import WorkerPool, WorkerProc
from distcore._private.scheduling.policy import (
    DefaultStrategy,
    NodeAffinityStrategy,
    NodeView,
    SchedulingPolicy,
    SpreadStrategy,
)
from distcore._private.scheduling.resources import Allocation, NodeResources, ResourceSet

logger = logging.getLogger(__name__)

RESPILL_AFTER_S = 1.0  # a spilled-back request waiting this long may move to a node that can run it now


@dataclass
class Lease:
    lease_id: str
    request: p.LeaseRequest
    allocation: Allocation | None
    worker: WorkerProc
    blocked: bool = False
    running: Allocation | None = None  # while blocked: what the lease held before lending its CPUs


class LeaseManager:
    def __init__(
        self,
        node_id: str,
        resources: NodeResources,
        pool: WorkerPool,
        cluster_view: Callable[[], p.ClusterView | None],
    ) -> None:
        self.node_id = node_id
        self.resources = resources
        self.pool = pool
        self._cluster_view = cluster_view
        self.refresh_view: Callable[[], Awaitable[None]] | None = None
        self.policy = SchedulingPolicy()
        self.leases: dict[str, Lease] = {}
        # Shapes recently refused as infeasible (owners retry them), for status.
        # Keyed by (shape, owner): (shape, when, how many tasks the owner has queued for it).
        self._infeasible: dict[tuple, tuple[dict[str, float], float, int]] = {}
        self.pending: dict[str, p.LeaseRequest] = {}
        # Set (and replaced) whenever resources free up; waiters re-check.
        self._changed = asyncio.Event()
        self.dead_owners: dict[str, None] = {}  # owners that died (oldest first, bounded): their requests are refused
        self.stats = LeaseStats()  # outcome counters and grant latency, read by the metrics endpoint

    # ------------------------------------------------------------ views

    def _nodes(self) -> dict[str, NodeView]:
        view = self._cluster_view()
        nodes: dict[str, NodeView] = {}
        if view is not None:
            for n, v in view.nodes.items():
                nodes[n] = NodeView(n, ResourceSet.from_dict(v.total), ResourceSet.from_dict(v.available), v.alive, v.labels)
        # Our own numbers are exact; the view's may be a heartbeat old.
        nodes[self.node_id] = NodeView(self.node_id, self.resources.total, self.resources.available, True)
        return nodes

    def pending_demand(self) -> list[dict[str, float]]:
        """One shape per task waiting here (the autoscaler's demand); bundle leases are their group's demand.

        An owner's local request also stands for the tasks it has queued
        behind it (``backlog``), as Ray's lease backlog does.
        """
        out: list[dict[str, float]] = []
        local: dict[tuple, list[int]] = {}  # (owner, shape) -> [requests here, largest backlog]
        for r in self.pending.values():
            if r.placement is not None:
                continue
            shape = dict(r.placement_resources or r.resources)
            out.append(shape)
            if r.spilled_from is None and r.owner is not None:
                entry = local.setdefault((r.owner.worker_id, tuple(sorted(shape.items()))), [0, 0])
                entry[0] += 1
                entry[1] = max(entry[1], r.backlog)
        for (_, shape_key), (requests, backlog) in local.items():
            out += [dict(shape_key) for _ in range(backlog - requests)]
        return out

    def infeasible_demand(self, window_s: float = 5.0) -> list[dict[str, float]]:
        now = time.monotonic()
        self._infeasible = {k: v for k, v in self._infeasible.items() if now - v[1] < window_s}
        return [dict(v[0]) for v in self._infeasible.values() for _ in range(v[2])]

    def _infeasible_key(self, resources: dict[str, float], req: p.LeaseRequest) -> tuple:
        return (tuple(sorted(resources.items())), req.owner.worker_id if req.owner else req.lease_id)

    def _note_infeasible(self, resources: dict[str, float], req: p.LeaseRequest) -> None:
        self._infeasible[self._infeasible_key(resources, req)] = (dict(resources), time.monotonic(), max(1, req.backlog))

    async def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def owner_died(self, worker_id: str) -> None:
        """Refuse the queued and later lease requests of an owner (driver or worker) that died."""
        self.dead_owners[worker_id] = None
        while len(self.dead_owners) > 10_000:
            del self.dead_owners[next(iter(self.dead_owners))]
        # Its granted leases run tasks whose results nobody waits for: end them, free their resources.
        for lease in [x for x in self.leases.values() if x.request.owner and x.request.owner.worker_id == worker_id]:
            del self.leases[lease.lease_id]
            self._free(lease)
            self.pool.kill(lease.worker, "the owner of its lease died")
        await self._notify()

    # ------------------------------------------------------------ requests

    async def request(self, req: p.LeaseRequest) -> p.LeaseReply:
        arrived = time.monotonic()
        request = ResourceSet.from_dict(req.resources)
        # Actors may need more to be placed than they hold while running.
        needed = ResourceSet.from_dict(req.placement_resources) if req.placement_resources else request
        bundle = req.placement
        if bundle is not None and not self._has_bundle(bundle):
            return p.LeaseReply(False, rejected=True, reason=f"placement group {bundle[0][:8]} has no such bundle on this node")
        self.pending[req.lease_id] = req
        try:
            while True:
                if req.owner is not None and req.owner.worker_id in self.dead_owners:
                    return p.LeaseReply(False, rejected=True, reason="the owner of the lease request died")
                if bundle is None and req.for_actor is None:
                    respill = time.monotonic() - arrived >= RESPILL_AFTER_S
                    reply = self._maybe_elsewhere(needed, req, respill)
                    if reply is not None and reply.infeasible and self.refresh_view is not None:
                        # The view may predate a node that just joined: ask once more.
                        await self.refresh_view()
                        reply = self._maybe_elsewhere(needed, req, respill)
                    if reply is None or not reply.infeasible:
                        self._infeasible.pop(self._infeasible_key(needed.to_dict(), req), None)
                    if reply is not None:
                        if reply.infeasible:
                            self._note_infeasible(needed.to_dict(), req)
                        self.stats.count("infeasible" if reply.infeasible else "spilled_back", req.job_id)
                        return reply
                elif not self.resources.is_feasible(needed, bundle):
                    where = f"bundle {bundle}" if bundle else "this node"
                    self.stats.count("infeasible", req.job_id)
                    return p.LeaseReply(False, infeasible=True, reason=f"{needed} never fits {where}")
                allocation = self._allocate(needed, request, bundle)
                if allocation is not None:
                    break
                # An Event, not a Condition: a timed-out Condition.wait can leave
                # its lock released under us ("Lock is not acquired").
                try:
                    await asyncio.wait_for(self._changed.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            self.pending.pop(req.lease_id, None)
        try:
            worker = await self.pool.pop(req.job_id, req.runtime_env_key, req.runtime_env)
        except BaseException as exc:
            self.resources.release(allocation)
            await self._notify()
            if isinstance(exc, Exception):
                return p.LeaseReply(False, failed=True, reason=str(exc))
            raise
        worker.lease_id = req.lease_id
        worker.actor_id = req.for_actor
        self.leases[req.lease_id] = Lease(req.lease_id, req, allocation, worker)
        if req.owner is not None and req.owner.worker_id in self.dead_owners:  # it died while the worker started
            await self.owner_died(req.owner.worker_id)
            return p.LeaseReply(False, rejected=True, reason="the owner of the lease request died")
        self.stats.on_granted(req.job_id, time.monotonic() - arrived)
        return p.LeaseReply(
            True, worker=worker.address, lease_id=req.lease_id, gpu_ids=list(allocation.gpu_ids),
            assigned=allocation.resources.to_dict(),
        )

    def _allocate(self, needed: ResourceSet, request: ResourceSet, bundle: tuple[str, int] | None) -> Allocation | None:
        if needed == request:
            return self.resources.allocate(request, bundle)
        # Check that ``needed`` fits now, then hold only ``request``.
        probe = self.resources.allocate(needed, bundle)
        if probe is None:
            return None
        self.resources.release(probe)
        return self.resources.allocate(request, bundle)

    def _has_bundle(self, bundle: tuple[str, int]) -> bool:
        return any(
            b.pg_id == bundle[0] and (bundle[1] == -1 or b.index == bundle[1]) for b in self.resources.bundles()
        )

    def _maybe_elsewhere(self, request: ResourceSet, req: p.LeaseRequest, respill: bool = False) -> p.LeaseReply | None:
        """Where else the request should go, if anywhere.

        A request spilled here stays, except that after waiting
        ``RESPILL_AFTER_S`` it moves to a node that can run it now (say, one
        the autoscaler just added) instead of queueing behind busy workers.
        """
        strategy = req.strategy or DefaultStrategy()
        if not isinstance(strategy, (DefaultStrategy, SpreadStrategy, NodeAffinityStrategy)):
            strategy = DefaultStrategy()
        nodes = self._nodes()
        decision = self.policy.decide(request, nodes, strategy, self.node_id, req.preferred_nodes)
        if decision.kind == "infeasible":
            return p.LeaseReply(False, infeasible=True, reason=decision.reason)
        moves = req.spilled_from is None or (respill and decision.kind == "run")
        if decision.node_id and decision.node_id != self.node_id and moves:
            view = self._cluster_view()
            address = view.nodes[decision.node_id].address if view and decision.node_id in view.nodes else None
            if address:
                return p.LeaseReply(False, retry_at_node=decision.node_id, retry_at_address=address, reason=decision.reason)
        return None

    # ------------------------------------------------------------ release

    async def release(self, req: p.ReturnWorker) -> None:
        lease = self.leases.pop(req.lease_id, None)
        if lease is None:
            return
        self._free(lease)
        if req.worker_exiting or req.disconnect or lease.request.for_actor:
            self.pool.kill(lease.worker, "lease returned with the worker exiting")
        else:
            self.pool.push_idle(lease.worker)
        await self._notify()

    def _free(self, lease: Lease) -> None:
        if lease.allocation is not None:
            self.resources.release(lease.allocation)
        lease.allocation = None

    async def on_worker_death(self, worker: WorkerProc) -> Lease | None:
        lease = self.leases.pop(worker.lease_id, None) if worker.lease_id else None
        if lease is not None:
            self._free(lease)
            await self._notify()
        return lease

    async def set_blocked(self, worker_id: str, blocked: bool) -> None:
        """A worker blocked in ``get`` lends its CPUs back until it resumes.

        Only the CPUs are lent, as in Ray: custom resources, memory and GPUs
        stay held (a lease with GPUs keeps everything, so its GPU ids stay).
        ``lease.allocation`` is always what the lease holds right now.
        """
        worker = self.pool.workers.get(worker_id)
        lease = self.leases.get(worker.lease_id) if worker and worker.lease_id else None
        if lease is None or lease.blocked == blocked:
            return
        held = lease.allocation
        if blocked:
            if held is None or held.gpu_ids or not held.resources.units("CPU"):
                return
            self.resources.release(held)
            # Just released, so the rest fits again.
            lease.allocation = self.resources.allocate(_without_cpu(held.resources), held.bundle)
            lease.running = held
            lease.blocked = True
            await self._notify()
            return
        lease.blocked = False
        running, lease.running = lease.running, None
        if held is None or running is None:
            return  # its bundle was removed meanwhile
        self.resources.release(held)
        again = self.resources.allocate(running.resources, running.bundle)
        # Oversubscribe the CPUs briefly rather than stall a running task.
        lease.allocation = again if again is not None else self.resources.allocate(held.resources, held.bundle)

    def leases_of_bundle(self, pg_id: str) -> list[Lease]:
        return [
            lease for lease in self.leases.values()
            if lease.allocation is not None and lease.allocation.bundle and lease.allocation.bundle[0] == pg_id
        ]


def _without_cpu(resources: ResourceSet) -> ResourceSet:
    return ResourceSet.from_units({n: resources.units(n) for n in resources if n != "CPU"})
