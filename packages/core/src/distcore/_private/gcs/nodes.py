"""The node table: registration, heartbeats, liveness and the cluster view."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from distcore._private import protocol as p
from distcore._private.gcs.storage import Storage
from distcore._version import __version__
from distcore.exceptions import VersionMismatchError

logger = logging.getLogger(__name__)


class NodeTable:
    def __init__(self, storage: Storage, dead_timeout_s: float) -> None:
        self._storage = storage
        self._dead_timeout_s = dead_timeout_s
        self.dead_timeout_s = dead_timeout_s
        self.nodes: dict[str, p.NodeInfo] = storage.load("nodes")
        self.available: dict[str, dict[str, float]] = {n: dict(i.resources) for n, i in self.nodes.items()}
        self.last_seen: dict[str, float] = {n: time.monotonic() for n in self.nodes}
        self.pending_demand: dict[str, list[dict[str, float]]] = {}
        self.infeasible_demand: dict[str, list[dict[str, float]]] = {}
        self.object_store_used: dict[str, int] = {}
        self.version = 0
        self.changed = asyncio.Event()
        self.on_node_dead: list[Callable[[str], Awaitable[None]]] = []

    def register(self, info: p.NodeInfo) -> p.ClusterView:
        if info.version and info.version != __version__:
            raise VersionMismatchError(
                f"node {info.node_id[:8]} runs distcore {info.version} but the head runs distcore "
                f"{__version__}: install distcore=={__version__} on that node"
            )
        known = self.nodes.get(info.node_id)
        if known is not None and known.state == "DEAD":  # a node declared dead stays dead (its work moved on)
            raise ValueError(
                f"node {info.node_id[:8]} was declared dead ({known.death_reason}); restart it to join again"
            )
        info.state = "ALIVE"
        info.start_time = info.start_time or time.time()
        self.nodes[info.node_id] = info
        # Registering again (after a head restart) is idempotent: the node's heartbeats correct availability.
        if known is None or info.node_id not in self.available:
            self.available[info.node_id] = dict(info.resources)
        self.last_seen[info.node_id] = time.monotonic()
        self._storage.put("nodes", info.node_id, info)
        self._bump()
        logger.info("node %s registered at %s with %s", info.node_id[:8], info.address, info.resources)
        return self.view()

    def heartbeat(self, hb: p.Heartbeat) -> p.ClusterView | None:
        info = self.nodes.get(hb.node_id)
        if info is None or info.state != "ALIVE":
            return None
        self.last_seen[hb.node_id] = time.monotonic()
        if self.available.get(hb.node_id) != hb.available:
            self.available[hb.node_id] = dict(hb.available)
            self._bump()
        self.pending_demand[hb.node_id] = hb.pending_demand
        self.infeasible_demand[hb.node_id] = hb.infeasible_demand
        self.object_store_used[hb.node_id] = hb.object_store_used
        return self.view()

    def _bump(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    def alive(self) -> dict[str, p.NodeInfo]:
        return {n: i for n, i in self.nodes.items() if i.state == "ALIVE"}

    def view(self) -> p.ClusterView:
        return p.ClusterView(
            nodes={
                n: p.NodeView(n, i.address, dict(i.resources), dict(self.available.get(n, {})), i.state == "ALIVE", dict(i.labels))
                for n, i in self.nodes.items()
            },
            version=self.version,
        )

    async def mark_dead(self, node_id: str, reason: str) -> None:
        info = self.nodes.get(node_id)
        if info is None or info.state == "DEAD":
            return
        info.state = "DEAD"
        info.death_reason = reason
        self._storage.put("nodes", node_id, info)
        self._bump()
        logger.warning("node %s is dead: %s", node_id[:8], reason)
        for callback in self.on_node_dead:
            await callback(node_id)

    async def monitor(self) -> None:
        """Mark nodes dead when their heartbeats stop."""
        while True:
            await asyncio.sleep(min(0.25, self._dead_timeout_s / 4))
            now = time.monotonic()
            for node_id, info in list(self.nodes.items()):
                if info.state == "ALIVE" and now - self.last_seen.get(node_id, now) > self._dead_timeout_s:
                    await self.mark_dead(node_id, f"no heartbeat for {self._dead_timeout_s:g} s (dead_timeout_s): the node "
                                         "hangs, or its host or the network to it is down")
