"""Choosing a node for a task or actor lease.

``SchedulingPolicy.decide`` takes a resource request, a snapshot of the
cluster's nodes and a scheduling strategy, and answers with a ``Decision``:
run on a node now, wait for a node that could run it once it frees up, or
give up because no alive node could ever run it. The policy does no I/O; the
only state it keeps is the SPREAD round-robin cursor.

Strategies follow Ray's documented semantics:

- ``DefaultStrategy``: Ray's hybrid policy. Nodes holding the task's large
  arguments first, then the local node, then pack onto nodes under the spread
  threshold (50% by default) in node-id order, then the least utilized node.
- ``SpreadStrategy``: round-robin over the nodes that can run the request.
- ``NodeAffinityStrategy``: a given node; ``soft`` falls back to the default.
- ``PlacementGroupStrategy``: the node holding a bundle of a placement group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from distcore._private.scheduling.resources import ResourceSet, critical_utilization

DEFAULT_SPREAD_THRESHOLD = 0.5


@dataclass
class NodeView:
    """What the policy knows about one node: totals, what is free, liveness."""

    node_id: str
    total: ResourceSet
    available: ResourceSet
    alive: bool = True
    labels: dict[str, str] = field(default_factory=dict)

    def can_run(self, request: ResourceSet) -> bool:
        """Alive and ``request`` fits in what is available now."""
        return self.alive and request.fits_in(self.available)

    def is_feasible(self, request: ResourceSet) -> bool:
        """Alive and ``request`` would fit if the node were idle."""
        return self.alive and request.fits_in(self.total)

    def utilization(self) -> float:
        """The most used fraction over the node's resources."""
        return critical_utilization(self.total, self.available)


@dataclass(frozen=True)
class DefaultStrategy:
    """Ray's hybrid policy (``scheduling_strategy="DEFAULT"``)."""


@dataclass(frozen=True)
class SpreadStrategy:
    """Spread leases round-robin across nodes (``scheduling_strategy="SPREAD"``)."""


@dataclass(frozen=True)
class NodeAffinityStrategy:
    """Run on ``node_id``; when ``soft``, anywhere if it can't run there now."""

    node_id: str
    soft: bool


@dataclass(frozen=True)
class PlacementGroupStrategy:
    """Run inside bundle ``bundle_index`` of ``pg_id`` (-1: any of its bundles)."""

    pg_id: str
    bundle_index: int = -1

    def __post_init__(self) -> None:
        if self.bundle_index < -1:
            raise ValueError(
                "placement_group_bundle_index must be >= 0 or -1 (any bundle), "
                f"got {self.bundle_index}"
            )


Strategy = DefaultStrategy | SpreadStrategy | NodeAffinityStrategy | PlacementGroupStrategy


@dataclass(frozen=True)
class Decision:
    """The policy's answer; ``node_id`` is None only when there is no node to name."""

    kind: Literal["run", "wait", "infeasible"]
    node_id: str | None
    reason: str


def infeasible_reason(request: ResourceSet, nodes: Sequence[NodeView]) -> str:
    """Explain why no node in ``nodes`` (the alive ones) can ever fit ``request``."""
    if not nodes:
        return f"no alive node to run {request}; the cluster is empty"
    cluster = sum((n.total for n in nodes), ResourceSet())
    missing = ResourceSet.from_units(
        {
            name: request.units(name)
            for name in request
            if all(n.total.units(name) < request.units(name) for n in nodes)
        }
    )
    if missing:
        return f"no node has {missing}; cluster total is {cluster}"
    return f"no single node has all of {request}; cluster total is {cluster}"


class SchedulingPolicy:
    """Picks nodes for leases. Call ``decide`` once per lease request."""

    def __init__(self, spread_threshold: float = DEFAULT_SPREAD_THRESHOLD) -> None:
        if not 0.0 <= spread_threshold <= 1.0:
            raise ValueError(f"spread_threshold must be in [0, 1], got {spread_threshold}")
        self.spread_threshold = spread_threshold
        self._spread_last: str | None = None

    def decide(
        self,
        request: ResourceSet,
        nodes: Mapping[str, NodeView],
        strategy: Strategy,
        local_node_id: str,
        preferred_nodes: Sequence[str] = (),
        *,
        bundle_nodes: Mapping[int, str] | None = None,
        bundle_totals: Mapping[int, ResourceSet] | None = None,
    ) -> Decision:
        """Decide where ``request`` should run.

        ``nodes`` maps node id to its view (keyed by ``view.node_id``); dead
        nodes are never chosen.
        ``preferred_nodes`` are nodes holding the task's large arguments.
        For ``PlacementGroupStrategy`` the caller passes ``bundle_nodes``
        (bundle index -> node id of the placed bundles) and, optionally,
        ``bundle_totals`` (bundle index -> its resources) so a request that
        can never fit its bundle is reported infeasible.
        """
        if isinstance(strategy, DefaultStrategy):
            return self._hybrid(request, nodes, local_node_id, preferred_nodes)
        if isinstance(strategy, SpreadStrategy):
            return self._spread(request, nodes, local_node_id)
        if isinstance(strategy, NodeAffinityStrategy):
            return self._affinity(request, nodes, strategy, local_node_id, preferred_nodes)
        if isinstance(strategy, PlacementGroupStrategy):
            return self._placement_group(
                request,
                nodes,
                strategy,
                local_node_id,
                preferred_nodes,
                bundle_nodes or {},
                bundle_totals,
            )
        raise TypeError(f"unknown scheduling strategy {strategy!r}")

    def _alive(self, nodes: Mapping[str, NodeView]) -> list[NodeView]:
        return [nodes[n] for n in sorted(nodes) if nodes[n].alive]

    def _hybrid(
        self,
        request: ResourceSet,
        nodes: Mapping[str, NodeView],
        local_node_id: str,
        preferred_nodes: Sequence[str],
    ) -> Decision:
        for node_id in preferred_nodes:
            view = nodes.get(node_id)
            if view is not None and view.can_run(request):
                return Decision("run", node_id, f"node {node_id} holds the task's arguments")
        local = nodes.get(local_node_id)
        if local is not None and local.can_run(request):
            return Decision("run", local_node_id, "the local node can run it now")
        ready = [n for n in self._alive(nodes) if n.can_run(request)]
        if ready:
            for view in ready:
                if view.utilization() < self.spread_threshold:
                    pct = round(self.spread_threshold * 100)
                    return Decision(
                        "run", view.node_id, f"node {view.node_id} is under {pct}% used"
                    )
            best = min(ready, key=lambda n: (n.utilization(), n.node_id))
            return Decision("run", best.node_id, f"node {best.node_id} is the least utilized")
        return self._wait_or_infeasible(request, nodes, local_node_id)

    def _wait_or_infeasible(
        self, request: ResourceSet, nodes: Mapping[str, NodeView], local_node_id: str
    ) -> Decision:
        """No node can run ``request`` now: wait on the best feasible node, if any."""
        alive = self._alive(nodes)
        feasible = [n for n in alive if n.is_feasible(request)]
        if not feasible:
            return Decision("infeasible", None, infeasible_reason(request, alive))
        local = nodes.get(local_node_id)
        if local is not None and local.is_feasible(request):
            target = local
        else:
            target = min(feasible, key=lambda n: (n.utilization(), n.node_id))
        missing = request.shortfall(target.available)
        return Decision(
            "wait", target.node_id, f"waiting on node {target.node_id} for {missing} to free up"
        )

    def _spread(
        self, request: ResourceSet, nodes: Mapping[str, NodeView], local_node_id: str
    ) -> Decision:
        ready = [n.node_id for n in self._alive(nodes) if n.can_run(request)]
        if not ready:
            return self._wait_or_infeasible(request, nodes, local_node_id)
        last = self._spread_last
        chosen = next((n for n in ready if last is not None and n > last), ready[0])
        self._spread_last = chosen
        return Decision("run", chosen, f"SPREAD: next node in round-robin is {chosen}")

    def _affinity(
        self,
        request: ResourceSet,
        nodes: Mapping[str, NodeView],
        strategy: NodeAffinityStrategy,
        local_node_id: str,
        preferred_nodes: Sequence[str],
    ) -> Decision:
        node_id = strategy.node_id
        view = nodes.get(node_id)
        if view is not None and view.can_run(request):
            return Decision("run", node_id, f"node affinity to {node_id}")
        if strategy.soft:
            fallback = self._hybrid(request, nodes, local_node_id, preferred_nodes)
            if view is None:
                why = "is not in the cluster"
            else:
                why = "is dead" if not view.alive else "cannot run it now"
            return Decision(
                fallback.kind,
                fallback.node_id,
                f"soft affinity node {node_id} {why}; {fallback.reason}",
            )
        if view is None:
            return Decision(
                "infeasible", None, f"node affinity: node {node_id} is not in the cluster"
            )
        if not view.alive:
            return Decision("infeasible", None, f"node affinity: node {node_id} is dead")
        if view.is_feasible(request):
            missing = request.shortfall(view.available)
            return Decision(
                "wait", node_id, f"node affinity: waiting on node {node_id} for {missing}"
            )
        return Decision(
            "infeasible",
            None,
            f"node affinity: node {node_id} can never fit {request}; its total is {view.total}",
        )

    def _placement_group(
        self,
        request: ResourceSet,
        nodes: Mapping[str, NodeView],
        strategy: PlacementGroupStrategy,
        local_node_id: str,
        preferred_nodes: Sequence[str],
        bundle_nodes: Mapping[int, str],
        bundle_totals: Mapping[int, ResourceSet] | None,
    ) -> Decision:
        pg, index = strategy.pg_id, strategy.bundle_index
        indices = [index] if index >= 0 else sorted(bundle_nodes)
        if bundle_totals is not None:
            wanted = [index] if index >= 0 else sorted(bundle_totals)
            fitting = [
                i for i in wanted if i in bundle_totals and request.fits_in(bundle_totals[i])
            ]
            known = [i for i in wanted if i in bundle_totals]
            if known and not fitting:
                where = f"bundle {index}" if index >= 0 else "any bundle"
                return Decision(
                    "infeasible", None, f"{request} does not fit in {where} of placement group {pg}"
                )
            if index < 0:
                indices = [i for i in indices if i in fitting]
        placed = [bundle_nodes[i] for i in indices if i in bundle_nodes]
        live = [n for n in placed if n in nodes and nodes[n].alive]
        if not live:
            state = "not placed yet" if not placed else "on a dead node, awaiting rescheduling"
            which = f"bundle {index}" if index >= 0 else "its bundles"
            return Decision("wait", None, f"placement group {pg}: {which} {state}")
        chosen = next((n for n in [*preferred_nodes, local_node_id] if n in live), live[0])
        return Decision("run", chosen, f"node {chosen} holds a bundle of placement group {pg}")
