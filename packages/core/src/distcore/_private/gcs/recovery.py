"""Recovery of a restarted control store from the tables it persisted.

A head restarted on the same session directory reloads its tables from
``gcs.sqlite`` (:mod:`storage`): nodes, jobs, actors, placement groups and
the key-value store. The tables come back as they were written; this module
turns them into a running state that matches the cluster, which kept running
without its head:

- Nodes: every node that was alive stays ALIVE, *unconfirmed*: it is marked
  dead only if it does not heartbeat within ``dead_timeout_s`` (the node
  table's usual monitor). The old head's node manager died with the head
  process (the new one registers under a new node id), so old head records
  are marked dead at once: their actors restart (if ``max_restarts``
  allows) and their placement-group bundles are placed again.
- Actors: ALIVE actors keep their address (their worker processes kept
  running); their leases are restored from the table so a later death of
  the worker or its node is handled. Each node manager is then asked which
  workers it runs (``GetNodeStats``): an ALIVE actor whose worker is gone
  died while the head was away and is handled as a worker death. PENDING and
  RESTARTING actors resume scheduling (a worker a node still runs for them
  from an interrupted creation is ended first).
- Placement groups: CREATED groups keep their bundle placements (the node
  managers still hold the reservations); PENDING ones release any partial
  reservation and resume placement.
- Jobs and the key-value store need nothing: they are loaded as they were.
- The cluster view's version continues above any version a client saw
  before, so long polls (``WatchClusterView``) answer at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from distcore._private import protocol as p
from distcore._private.rpc import RpcError

if TYPE_CHECKING:
    from distcore._private.gcs.server import GcsService

logger = logging.getLogger(__name__)

#: Seconds to wait for a node manager's ``GetNodeStats`` while reconciling.
RECONCILE_TIMEOUT_S = 2.0
#: Tries (one per second) to reach a node manager to reconcile its actors.
RECONCILE_TRIES = 5

HEAD_RESTARTED = "the head restarted: its node manager and the workers on the head node ended"


def has_state(gcs: GcsService) -> bool:
    """True when the control store loaded tables from an earlier head of this session."""
    return bool(gcs.nodes.nodes or gcs.actors.actors or gcs.pgs.groups or gcs.jobs or gcs.kv)


def prepare(gcs: GcsService) -> None:
    """Synchronous part, before the server answers: view version and actor leases."""
    # Versions continue above those of the earlier head (it bumps far below 1000 times a second).
    gcs.nodes.version = max(gcs.nodes.version, int(time.time() * 1000))
    for actor in gcs.actors.actors.values():
        info = actor.info
        if info.state == p.ACTOR_ALIVE and info.address is not None and info.node_id:
            actor.lease = (info.node_id, "", info.address.worker_id)


def start(gcs: GcsService) -> asyncio.Task | None:
    """Begin recovery if the control store loaded an earlier head's tables; None otherwise."""
    if not has_state(gcs):
        return None
    prepare(gcs)
    return asyncio.ensure_future(recover(gcs))


async def recover(gcs: GcsService) -> None:
    """Bring the loaded tables in line with the running cluster (see the module docstring)."""
    try:
        await _recover(gcs)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - recovery is best effort; the monitors still catch dead nodes
        logger.exception("recovery of the control store's tables failed")


async def _recover(gcs: GcsService) -> None:
    nodes, actors, pgs = gcs.nodes, gcs.actors, gcs.pgs
    alive = [n for n, i in nodes.nodes.items() if i.state == "ALIVE"]
    n_actors = sum(1 for a in actors.actors.values() if a.info.state != p.ACTOR_DEAD)
    logger.info(
        "recovering the control store: %d nodes alive before (unconfirmed until they heartbeat), "
        "%d live actors, %d placement groups, %d jobs, %d KV entries",
        len(alive), n_actors, len(pgs.groups), len(gcs.jobs), len(gcs.kv),
    )
    # The previous head's node manager is gone for good (a new one registers under a new id).
    for node_id in alive:
        if nodes.nodes[node_id].is_head:
            await nodes.mark_dead(node_id, HEAD_RESTARTED)
    # Placement groups that were being placed: release partial reservations of the bundles
    # not recorded as held (recorded ones stay), then place again.
    for group in list(pgs.groups.values()):
        info = group.info
        if info.state == "PENDING" and (group.task is None or group.task.done()):
            for node_id in list(nodes.alive()):
                stray = [i for i in range(len(info.bundles)) if info.bundle_nodes.get(i) != node_id]
                await _call(gcs, node_id, "ReleaseBundles", p.ReleaseBundles(info.pg_id, stray))
            if info.state == "PENDING" and (group.task is None or group.task.done()):
                group.task = asyncio.ensure_future(pgs._place(group))
    # Actors being created or restarted: end any half-created worker, then schedule again.
    resume = [
        a for a in actors.actors.values()
        if a.info.state in (p.ACTOR_PENDING, p.ACTOR_RESTARTING) and (a.task is None or a.task.done())
    ]
    stats = await _node_stats(gcs, list(nodes.alive()))
    running: dict[str, tuple[str, str]] = {}  # actor id -> (node id, worker id)
    workers: dict[str, set[str]] = {}  # node id -> its workers' ids
    for node_id, node_stats in stats.items():
        if node_stats is None:
            continue
        workers[node_id] = {w["worker_id"] for w in node_stats.workers}
        for worker in node_stats.workers:
            if worker.get("actor_id"):
                running[worker["actor_id"]] = (node_id, worker["worker_id"])
    for actor in resume:
        found = running.get(actor.info.actor_id)
        if found is not None:
            await _kill(gcs, found[0], found[1], "the head restarted while the actor was being created")
        actor.task = asyncio.ensure_future(actors._create(actor))
    # ALIVE actors whose worker ended while the head was away.
    for actor in list(actors.actors.values()):
        if actor.info.state != p.ACTOR_ALIVE or actor.lease is None:
            continue
        node_id, _, worker_id = actor.lease
        if node_id not in workers:
            continue  # not reached: the node's liveness decides (heartbeats, dead timeout)
        if worker_id not in workers[node_id]:
            await actors._handle_death(actor, "the actor's worker ended while the head was restarting", False)
    logger.info("control store recovered: %d actors resumed", len(resume))


async def _node_stats(gcs: GcsService, node_ids: list[str]) -> dict[str, p.NodeStats | None]:
    async def one(node_id: str) -> p.NodeStats | None:
        for _ in range(RECONCILE_TRIES):
            info = gcs.nodes.nodes.get(node_id)
            if info is None or info.state != "ALIVE":
                return None
            try:
                return await gcs.clients.get(info.address).call(
                    "NodeManager", "GetNodeStats", None, timeout=RECONCILE_TIMEOUT_S)
            except (RpcError, TimeoutError):
                await asyncio.sleep(1.0)
        return None

    results = await asyncio.gather(*(one(n) for n in node_ids))
    return dict(zip(node_ids, results, strict=True))


async def _kill(gcs: GcsService, node_id: str, worker_id: str, reason: str) -> None:
    await _call(gcs, node_id, "KillWorker", p.KillWorker(worker_id, force=True, reason=reason))


async def _call(gcs: GcsService, node_id: str, method: str, request) -> None:
    """A best-effort call to a node manager (a node that does not answer is judged by its heartbeats)."""
    info = gcs.nodes.nodes.get(node_id)
    if info is None or info.state != "ALIVE":
        return
    try:
        await gcs.clients.get(info.address).call("NodeManager", method, request, timeout=5)
    except (RpcError, TimeoutError):
        pass
