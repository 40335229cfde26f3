"""The autoscaler loop: runs on the head, next to the control store.

Every ``update_interval_s`` it reads the control store's tables in-process
(nodes with their free resources, lease demands the node managers heartbeat,
pending actors and placement groups, the ``request_resources`` request),
asks the provider which nodes it has, builds a :class:`ClusterSnapshot`,
lets the pure :class:`ScalingPolicy` decide, and carries the decision out
through the :class:`NodeProvider` (on a worker thread: a provider may block).
``status()`` is what ``GetAutoscalerStatus`` and ``distcore status`` show.

Example (what ``node_main`` does on a head given ``--autoscaling-config``)::

    autoscaler = start_autoscaler(gcs, "cluster.json", gcs_address=address, session_name=name,
                                  session_dir=session_dir, token=token)
    ...
    await autoscaler.close()
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from distcore._private import protocol as p
from distcore._private.autoscaler.config import (
    REQUEST_KV_KEY,
    REQUEST_KV_NAMESPACE,
    AutoscalingConfig,
)
from distcore._private.autoscaler.node_provider import (
    LABEL_PROVIDER_NODE_ID,
    TAG_NODE_TYPE,
    NodeProvider,
)
from distcore._private.autoscaler.policy import (
    EPSILON,
    ClusterSnapshot,
    Demand,
    NodeSnapshot,
    ScalingDecision,
    ScalingPolicy,
    fits,
)

logger = logging.getLogger(__name__)

NEW_NODE_GRACE_S = 2.0  # a node that just joined is not idle yet: its first work is on the way
LAUNCH_TIMEOUT_S = 90.0  # a node that has not joined by then is terminated as a failed launch
BACKOFF_S = (5.0, 60.0)  # first and longest wait before relaunching a type whose launch failed
MAX_DECISIONS = 30


class Autoscaler:
    """Scales worker nodes to the demand the control store sees."""

    def __init__(self, gcs: Any, config: AutoscalingConfig, provider: NodeProvider) -> None:
        self.gcs = gcs
        self.config = config
        self.provider = provider
        self.policy = ScalingPolicy(config)
        self.decisions: deque[dict[str, Any]] = deque(maxlen=MAX_DECISIONS)
        self._task: asyncio.Task | None = None
        self._idle_since: dict[str, float] = {}  # control-store node id -> monotonic time it went idle
        self._first_seen: dict[str, float] = {}  # provider id -> monotonic time first listed
        self._launching: dict[str, str] = {}  # provider id -> node type, not yet joined
        self._backoff: dict[str, tuple[float, float]] = {}  # node type -> (until, last wait)
        self._last_info: set[str] = set()
        self._status: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.update()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bad update
                logger.exception("autoscaler update failed")
                self._status["error"] = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.config.update_interval_s)

    async def close(self) -> None:
        """Stop the loop and let the provider release its nodes."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        async with self._lock:
            await asyncio.to_thread(self.provider.shutdown)

    # ---------------------------------------------------------------- one update

    async def update(self) -> ScalingDecision:
        """Observe, decide, act: one round of the loop."""
        async with self._lock:
            listed = await asyncio.to_thread(self._provider_nodes)
            now = time.monotonic()
            snapshot, gcs_ids = self._snapshot(listed, now)
            decision = self.policy.decide(snapshot)
            launched, terminated = await self._act(decision, listed, gcs_ids, now)
            self._status = self._build_status(snapshot, decision, gcs_ids, launched, terminated)
            return decision

    def _provider_nodes(self) -> dict[str, tuple[str, bool]]:
        """provider id -> (node type, running); called on a worker thread."""
        out = {}
        for node_id in self.provider.non_terminated_nodes():
            try:
                out[node_id] = (self.provider.node_tags(node_id).get(TAG_NODE_TYPE, ""), self.provider.is_running(node_id))
            except KeyError:  # terminated meanwhile
                continue
        return out

    def _snapshot(self, listed: dict[str, tuple[str, bool]], now: float) -> tuple[ClusterSnapshot, dict[str, str]]:
        nodes_table = self.gcs.nodes
        view = nodes_table.view()
        alive = nodes_table.alive()
        by_label = {
            info.labels[LABEL_PROVIDER_NODE_ID]: node_id
            for node_id, info in nodes_table.nodes.items() if LABEL_PROVIDER_NODE_ID in info.labels
        }
        self._track_idle(alive, view, now)
        snapshot_nodes: list[NodeSnapshot] = []
        gcs_ids: dict[str, str] = {}  # provider id -> control-store node id (joined nodes)
        for provider_id, (node_type, _running) in listed.items():
            self._first_seen.setdefault(provider_id, now)
            gcs_id = by_label.get(provider_id)
            if gcs_id is not None:
                gcs_ids[provider_id] = gcs_id
            if gcs_id is None:
                self._launching[provider_id] = node_type
                snapshot_nodes.append(NodeSnapshot(provider_id, node_type, {}, {}, "launching"))
                continue
            if gcs_id not in alive:
                continue  # its node died: _act gives it back
            self._launching.pop(provider_id, None)
            snapshot_nodes.append(self._node(provider_id, node_type, gcs_id, view, now))
        managed = set(gcs_ids.values())
        for node_id in alive:
            labelled = nodes_table.nodes[node_id].labels.get(LABEL_PROVIDER_NODE_ID)
            if node_id in managed or (labelled is not None and labelled not in listed):
                continue  # ours, or being terminated
            v = view.nodes[node_id]
            snapshot_nodes.append(NodeSnapshot(node_id, None, dict(v.total), dict(v.available)))
        blocked = frozenset(t for t, (until, _) in self._backoff.items() if until > now)
        snapshot = ClusterSnapshot(snapshot_nodes, self._demands(alive, view), self._requested(), blocked)
        return snapshot, gcs_ids

    def _node(self, provider_id: str, node_type: str, gcs_id: str, view: p.ClusterView, now: float) -> NodeSnapshot:
        v = view.nodes[gcs_id]
        info = self.gcs.nodes.nodes[gcs_id]
        joined_s = time.time() - info.start_time if info.start_time else NEW_NODE_GRACE_S
        since = self._idle_since.get(gcs_id)
        idle_s = now - since if since is not None and joined_s >= NEW_NODE_GRACE_S else None
        return NodeSnapshot(provider_id, node_type, dict(v.total), dict(v.available), "active", idle_s)

    def _actor_nodes(self) -> set[str]:
        return {
            a.info.node_id for a in self.gcs.actors.actors.values()
            if a.info.node_id and a.info.state in (p.ACTOR_ALIVE, p.ACTOR_PENDING, p.ACTOR_RESTARTING)
        }

    def _track_idle(self, alive: dict[str, p.NodeInfo], view: p.ClusterView, now: float) -> None:
        busy_nodes = self._actor_nodes()
        for node_id in list(self._idle_since):
            if node_id not in alive:
                del self._idle_since[node_id]
        for node_id in alive:
            if self._is_idle(node_id, view, busy_nodes):
                self._idle_since.setdefault(node_id, now)
            else:
                self._idle_since.pop(node_id, None)

    def _is_idle(self, node_id: str, view: p.ClusterView, busy_nodes: set[str]) -> bool:
        """Idle: every resource free, no objects in its store, no lease waiting, no actor."""
        v = view.nodes.get(node_id)
        if v is None or node_id in busy_nodes:
            return False
        if any(abs(v.available.get(k, 0.0) - x) > EPSILON for k, x in v.total.items()):
            return False
        nodes = self.gcs.nodes
        return not nodes.object_store_used.get(node_id, 0) and not nodes.pending_demand.get(node_id)

    def _demands(self, alive: dict[str, p.NodeInfo], view: p.ClusterView) -> list[Demand]:
        nodes = self.gcs.nodes
        totals = [v.total for n, v in view.nodes.items() if n in alive]
        demands = [Demand(dict(d), "task") for n in alive for d in nodes.pending_demand.get(n, [])]
        # A shape reported infeasible that some node now fits is stale (say, the node launched for it
        # just joined): its owner's next retry schedules it, or queues it and it shows as pending.
        demands += [
            Demand(dict(d), "task") for n in alive for d in nodes.infeasible_demand.get(n, [])
            if not any(fits(d, t) for t in totals)
        ]
        for actor in self.gcs.actors.actors.values():
            info, creation = actor.info, actor.spec.creation
            if info.state not in (p.ACTOR_PENDING, p.ACTOR_RESTARTING) or actor.lease or creation.placement:
                continue
            shape = dict(creation.placement_resources or creation.resources)
            # A feasible actor waits in some node's lease queue (counted above); one no node fits waits here.
            if not any(fits(shape, t) for t in totals):
                demands.append(Demand(shape, "actor"))
        for group in self.gcs.pgs.groups.values():
            info = group.info
            if info.state != "PENDING":
                continue
            if info.strategy == "STRICT_PACK":
                merged: dict[str, float] = {}
                for b in info.bundles:
                    for k, x in b.items():
                        merged[k] = merged.get(k, 0.0) + x
                demands.append(Demand(merged, "placement_group"))
            else:
                spread = info.pg_id if info.strategy == "STRICT_SPREAD" else None
                demands += [Demand(dict(b), "placement_group", spread) for b in info.bundles]
        return demands

    def _requested(self) -> list[dict[str, float]]:
        blob = self.gcs.kv.get((REQUEST_KV_NAMESPACE, REQUEST_KV_KEY))
        if not blob:
            return []
        try:
            return [dict(b) for b in json.loads(blob)["bundles"]]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed request_resources record: %r", blob[:200])
            return []

    # ---------------------------------------------------------------- acting

    async def _act(self, decision: ScalingDecision, listed: dict[str, tuple[str, bool]], gcs_ids: dict[str, str],
                   now: float) -> tuple[dict[str, int], set[str]]:
        """Carry the decision out; returns the launches made and the provider ids terminated."""
        launched: dict[str, int] = {}
        terminated: set[str] = set()
        for provider_id in [i for i in self._first_seen if i not in listed and i not in self._launching]:
            del self._first_seen[provider_id]
        # Launches that vanished before joining failed: back off that type.
        for provider_id, node_type in list(self._launching.items()):
            if provider_id not in listed:
                del self._launching[provider_id]
                self._first_seen.pop(provider_id, None)
                self._fail(node_type, f"a {node_type} node ({provider_id}) exited before joining the cluster", now)
        # Nodes that never joined, or whose node process died: give them back.
        for provider_id, (node_type, _) in listed.items():
            gcs_id = gcs_ids.get(provider_id)
            if gcs_id is None and now - self._first_seen.get(provider_id, now) > LAUNCH_TIMEOUT_S:
                self._launching.pop(provider_id, None)
                self._fail(node_type, f"{provider_id} did not join within {LAUNCH_TIMEOUT_S:.0f} s", now)
                await self._terminate(provider_id, None, "never joined the cluster")
                terminated.add(provider_id)
            elif gcs_id is not None and self.gcs.nodes.nodes[gcs_id].state == "DEAD":
                self._record(f"terminate {provider_id} ({node_type}): its node {gcs_id[:8]} is dead")
                await self._terminate(provider_id, None, "")
                terminated.add(provider_id)
        for node_type, count in decision.launch.items():
            try:
                for provider_id in await asyncio.to_thread(self._create, node_type, count):
                    self._launching[provider_id] = node_type
                    self._first_seen.setdefault(provider_id, now)
                launched[node_type] = count
            except Exception as exc:  # noqa: BLE001
                self._fail(node_type, f"launching {count} x {node_type} failed: {exc}", now)
        for reason in decision.reasons:
            if reason.startswith("launch "):
                self._record(reason)
        for term in decision.terminate:
            gcs_id = gcs_ids.get(term.node_id)
            view = self.gcs.nodes.view()
            if gcs_id is not None and not self._is_idle(gcs_id, view, self._actor_nodes()):
                continue  # got work since the snapshot
            self._record(f"terminate {term.node_id} ({term.node_type}): {term.reason}")
            await self._terminate(term.node_id, gcs_id, f"terminated by the autoscaler: {term.reason}")
            terminated.add(term.node_id)
        info = {r for r in decision.reasons if not r.startswith(("launch ", "terminate "))}
        for reason in sorted(info - self._last_info):
            self._record(reason)
        self._last_info = info
        return launched, terminated

    def _create(self, node_type: str, count: int) -> list[str]:
        """Launch on a worker thread; returns the new nodes' ids (so a launch that dies at once is noticed)."""
        before = set(self.provider.non_terminated_nodes())
        self.provider.create_node(node_type, count)
        return [i for i in self.provider.non_terminated_nodes() if i not in before]

    async def _terminate(self, provider_id: str, gcs_id: str | None, reason: str) -> None:
        if gcs_id is not None:
            # Drain first: schedulers stop sending leases to it at once.
            await self.gcs.nodes.mark_dead(gcs_id, reason)
            self._idle_since.pop(gcs_id, None)
        self._first_seen.pop(provider_id, None)
        try:
            await asyncio.to_thread(self.provider.terminate_node, provider_id)
        except Exception as exc:  # noqa: BLE001
            self._record(f"terminating {provider_id} failed: {exc}")

    def _fail(self, node_type: str, message: str, now: float) -> None:
        _, last = self._backoff.get(node_type, (0.0, 0.0))
        wait = min(BACKOFF_S[1], max(BACKOFF_S[0], last * 2))
        self._backoff[node_type] = (now + wait, wait)
        self._record(f"{message}; not launching {node_type} for {wait:.0f} s")

    def _record(self, message: str) -> None:
        logger.info("autoscaler: %s", message)
        self.decisions.append({"time": time.time(), "message": message})

    # ---------------------------------------------------------------- status

    def _build_status(self, snapshot: ClusterSnapshot, decision: ScalingDecision, gcs_ids: dict[str, str],
                      launched: dict[str, int], terminated: set[str]) -> dict[str, Any]:
        per_type = {name: {"launching": 0, "active": 0, "idle": 0, "min_workers": t.min_workers,
                           "max_workers": t.max_workers, "resources": dict(t.resources)}
                    for name, t in self.config.node_types.items()}
        nodes = []
        for n in snapshot.nodes:
            if n.node_type is None or n.node_id in terminated:
                continue
            idle = gcs_ids.get(n.node_id) in self._idle_since
            state = n.status if n.status == "launching" else ("idle" if idle else "active")
            row = per_type.setdefault(n.node_type, {"launching": 0, "active": 0, "idle": 0})
            row[state] += 1
            nodes.append({"provider_id": n.node_id, "node_id": gcs_ids.get(n.node_id, ""), "node_type": n.node_type,
                          "state": state, "idle_s": round(n.idle_s or 0.0, 1)})
        for node_type, count in launched.items():
            per_type.setdefault(node_type, {"launching": 0, "active": 0, "idle": 0})["launching"] += count
        return {
            "max_workers": self.config.max_workers, "idle_timeout_s": self.config.idle_timeout_s,
            "node_types": per_type, "nodes": nodes,
            "demands": [dict(d.shape) for d in snapshot.demands],
            "resource_request": [dict(b) for b in snapshot.requested],
            "infeasible": decision.infeasible, "capped": decision.capped,
            "last_decisions": list(self.decisions), "updated": time.time(), "error": None,
        }

    def status(self) -> dict[str, Any]:
        """The last update's view: node counts per type, nodes, demands, recent decisions."""
        return dict(self._status) or {"max_workers": self.config.max_workers, "idle_timeout_s": self.config.idle_timeout_s,
                                      "node_types": {}, "nodes": [], "last_decisions": list(self.decisions),
                                      "updated": None, "error": None}


def start_autoscaler(
    gcs: Any, config_path: str, *, gcs_address: str, session_name: str, session_dir: str, token: str | None,
    node_ip: str = "127.0.0.1", dead_timeout_s: float = 30.0,
) -> Autoscaler:
    """Read the JSON config, build the local provider and start the loop (on the running event loop)."""
    from distcore._private.autoscaler.local_provider import LocalProcessNodeProvider

    with open(config_path) as f:
        config = AutoscalingConfig.from_dict(json.load(f))
    provider = LocalProcessNodeProvider(
        config, gcs_address=gcs_address, session_name=session_name, session_dir=session_dir, token=token,
        node_ip=node_ip, dead_timeout_s=dead_timeout_s,
    )
    autoscaler = Autoscaler(gcs, config, provider)
    gcs.autoscaler = autoscaler
    autoscaler.start()
    logger.info("autoscaler started: %d node type(s), max_workers=%d, idle_timeout_s=%g",
                len(config.node_types), config.max_workers, config.idle_timeout_s)
    return autoscaler
