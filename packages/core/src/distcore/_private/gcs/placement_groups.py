"""The placement-group table: place bundles on nodes, reserve, remove.

Placement is decided by the pure :mod:`scheduling.placement` module over the
cluster view; reservation is two-phase in effect: every chosen node manager
reserves its bundles, and if one refuses (its resources moved on), the
others are released and placement is tried again.

The head's own node manager runs in the control store's process: its
reservations and releases are plain calls (the client pool's
:meth:`~distcore._private.rpc.ClientPool.set_local`), not gRPC round trips to
the same process.

A new group's row is written before the reply to its creation leaves and
before any of its bundles is reserved outside this process, not before: a
group whose bundles all fit on the head is written once, ``CREATED``. (A
reservation on the head's own node manager dies with this process, so a
head that crashed before the row was written leaves no bundle behind that
its successor would not know of; the caller's retry creates the group.)
"""

from __future__ import annotations

import asyncio
import logging

from distcore._private import protocol as p
from distcore._private.gcs.nodes import NodeTable
from distcore._private.gcs.storage import Storage
from distcore._private.rpc import ClientPool, RpcError
from distcore._private.scheduling.placement import place_bundles
from distcore._private.scheduling.policy import NodeView
from distcore._private.scheduling.resources import ResourceSet

logger = logging.getLogger(__name__)


class _Group:
    __slots__ = ("info", "changed", "task", "saved")

    def __init__(self, info: p.PlacementGroupInfo, saved: bool = True) -> None:
        self.info = info
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.saved = saved  # its row is in storage


class PlacementGroupTable:
    def __init__(self, storage: Storage, nodes: NodeTable, clients: ClientPool) -> None:
        self._storage = storage
        self._nodes = nodes
        self._clients = clients
        self.groups: dict[str, _Group] = {pg: _Group(info) for pg, info in storage.load("pgs").items()}

    def create(self, spec: p.PlacementGroupSpec) -> _Group:
        """Register the group and start placing it; its row is written by :meth:`persist` (the caller,
        before it replies) or by the placement itself, whichever comes first."""
        if spec.name and self._by_name(spec.name, spec.namespace) is not None:
            raise ValueError(
                f"a placement group named {spec.name!r} already exists in namespace {spec.namespace!r}"
            )
        bundles = [ResourceSet.from_dict(b) for b in spec.bundles]  # validates
        del bundles
        info = p.PlacementGroupInfo(
            pg_id=spec.pg_id, bundles=spec.bundles, strategy=spec.strategy, state="PENDING",
            name=spec.name, namespace=spec.namespace, job_id=spec.job_id, detached=spec.detached,
        )
        group = _Group(info, saved=False)
        self.groups[spec.pg_id] = group
        group.task = asyncio.ensure_future(self._place(group))
        return group

    def persist(self, group: _Group) -> None:
        """Write the group's row unless it is written already."""
        if not group.saved:
            self._save(group)

    def _by_name(self, name: str, namespace: str) -> _Group | None:
        for group in self.groups.values():
            info = group.info
            if info.name == name and info.namespace == namespace and info.state != "REMOVED":
                return group
        return None

    def _save(self, group: _Group) -> None:
        self._storage.put("pgs", group.info.pg_id, group.info)
        group.saved = True
        group.changed.set()
        group.changed = asyncio.Event()

    def _node_views(self) -> dict[str, NodeView]:
        view = self._nodes.view()
        return {
            n: NodeView(n, ResourceSet.from_dict(v.total), ResourceSet.from_dict(v.available), v.alive, v.labels)
            for n, v in view.nodes.items()
        }

    async def _place(self, group: _Group) -> None:
        info = group.info
        bundles = [ResourceSet.from_dict(b) for b in info.bundles]
        warned = ""
        while info.state == "PENDING":
            # Bundles still held (a node of the group died: only its bundles move, as in Ray).
            missing = [i for i in range(len(bundles)) if i not in info.bundle_nodes]
            result = place_bundles([bundles[i] for i in missing], info.strategy, self._views_for(info))
            if result.kind != "placed":
                if result.kind == "infeasible" and warned != result.reason:
                    logger.warning("placement group %s cannot be placed: %s", info.pg_id[:8], result.reason)
                    warned = result.reason
                info.reason = result.reason
                await self._wait_change(1.0)
                continue
            assignment = result.assignment or []
            per_node: dict[str, dict[int, dict[str, float]]] = {}
            for index, node_id in zip(missing, assignment, strict=True):
                per_node.setdefault(node_id, {})[index] = info.bundles[index]
            if not group.saved and any(not self._clients.is_local(self._nm_address(n)) for n in per_node):
                self.persist(group)  # a bundle reserved in another process must belong to a known group
            reserved: list[str] = []
            ok = True
            for node_id, node_bundles in per_node.items():
                try:
                    done = await self._nm(node_id).call("NodeManager", "ReserveBundles", p.ReserveBundles(info.pg_id, node_bundles))
                except RpcError:
                    done = False
                if not done:
                    ok = False
                    break
                reserved.append(node_id)
            if info.state != "PENDING":  # removed meanwhile
                await self._release(info.pg_id, reserved)
                return
            if not ok:  # give back only what this round reserved: kept bundles stay
                await self._release(info.pg_id, reserved, {n: list(per_node[n]) for n in reserved})
                await self._wait_change(0.2)
                continue
            info.bundle_nodes = {**info.bundle_nodes, **dict(zip(missing, assignment, strict=True))}
            info.state = "CREATED"
            info.reason = ""
            self._save(group)

    def _views_for(self, info: p.PlacementGroupInfo) -> dict[str, NodeView]:
        """The nodes the group's missing bundles may go to, given the ones it still holds."""
        views = self._node_views()
        kept = set(info.bundle_nodes.values())
        if kept and info.strategy == "STRICT_SPREAD":
            views = {n: v for n, v in views.items() if n not in kept}
        elif kept and info.strategy == "STRICT_PACK":
            views = {n: v for n, v in views.items() if n in kept}
        return views

    def _nm_address(self, node_id: str) -> str:
        return self._nodes.nodes[node_id].address

    def _nm(self, node_id: str):
        return self._clients.get(self._nodes.nodes[node_id].address)

    async def _release(self, pg_id: str, node_ids, indexes: dict[str, list[int]] | None = None) -> None:
        """Release the group's bundles on ``node_ids`` (only ``indexes[node]`` when given)."""
        for node_id in set(node_ids):
            if node_id not in self._nodes.nodes or self._nodes.nodes[node_id].state != "ALIVE":
                continue
            request = p.ReleaseBundles(pg_id, indexes.get(node_id) if indexes is not None else None)
            try:
                await self._nm(node_id).call("NodeManager", "ReleaseBundles", request)
            except RpcError:
                pass

    async def _wait_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._nodes.changed.wait(), timeout)
        except TimeoutError:
            pass

    async def remove(self, pg_id: str) -> None:
        group = self.groups.get(pg_id)
        if group is None or group.info.state == "REMOVED":
            return
        nodes = list(group.info.bundle_nodes.values())
        group.info.state = "REMOVED"
        self._save(group)
        await self._release(pg_id, nodes)

    async def get(self, req: p.GetPlacementGroup) -> p.PlacementGroupInfo | None:
        group = self.groups.get(req.pg_id) if req.pg_id else self._by_name(req.name or "", req.namespace)
        if group is None:
            return None
        if not req.wait_ready:
            return group.info
        loop = asyncio.get_running_loop()
        deadline = None if req.timeout is None else loop.time() + req.timeout
        while group.info.state == "PENDING":
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(group.changed.wait(), remaining)
            except TimeoutError:
                break
        return group.info

    async def on_node_death(self, node_id: str) -> None:
        for group in self.groups.values():
            info = group.info
            if info.state in ("CREATED", "PENDING") and node_id in info.bundle_nodes.values():
                # Only the dead node's bundles are placed again; the others (and what runs in them) stay.
                placing = info.state == "PENDING"  # its _place loop runs already
                info.state = "PENDING"
                info.bundle_nodes = {i: n for i, n in info.bundle_nodes.items() if n != node_id}
                info.reason = f"rescheduling the bundles of dead node {node_id[:8]}"
                self._save(group)
                if not placing:
                    group.task = asyncio.ensure_future(self._place(group))

    async def on_job_finished(self, job_id: str) -> None:
        for group in list(self.groups.values()):
            if group.info.job_id == job_id and not group.info.detached:
                await self.remove(group.info.pg_id)

    def list(self) -> list[p.PlacementGroupInfo]:
        return [g.info for g in self.groups.values()]
