"""The autoscaler's decisions, as a pure function of a cluster snapshot.

``ScalingPolicy(config).decide(snapshot)`` takes what the cluster looks like
(nodes with their free resources and idle times, nodes being launched, the
pending demands and the standing ``request_resources`` request) and returns
a :class:`ScalingDecision`: how many nodes of each type to launch, which
nodes to terminate, and the demands no node type can ever hold. It does no
I/O and keeps no state, so it is unit-tested without processes::

    policy = ScalingPolicy(AutoscalingConfig.from_dict({
        "available_node_types": {"cpu": {"resources": {"CPU": 1}, "max_workers": 2}},
    }))
    decision = policy.decide(ClusterSnapshot(nodes=[], demands=[Demand({"CPU": 1})] * 2))
    assert decision.launch == {"cpu": 2}

The order of one decision:

1. ``min_workers`` of every type are launched if missing.
2. ``request_resources`` bundles are packed into the *total* capacity of the
   cluster (existing, launching and new nodes): Ray's semantics, the request
   counts capacity, not free capacity. Nodes that hold a requested bundle
   are kept even when idle.
3. Demands (tasks, actors, placement-group bundles), biggest first, are packed
   onto free capacity: the head and other unmanaged nodes, busy nodes, idle
   nodes, nodes still launching (their whole capacity), then new nodes of the
   cheapest type that fits, within the type's and the cluster's
   ``max_workers``. A demand no node type and no existing node could ever
   hold is reported as infeasible, never launched for.
4. Nodes idle for ``idle_timeout_s`` that received no demand are terminated,
   never below ``min_workers``.

Stability (no flapping) follows from the order: launching nodes absorb the
demand they were launched for, idle nodes absorb demand before anything is
launched (so a node that is about to get work is not terminated), and only
nodes idle for the whole timeout are removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from distcore._private.autoscaler.config import AutoscalingConfig, NodeTypeConfig

EPSILON = 1e-9

Shape = Mapping[str, float]


@dataclass(frozen=True)
class Demand:
    """Resources one task, actor or bundle waits for.

    ``spread_group`` ties the bundles of a ``STRICT_SPREAD`` placement group:
    no two of them may share a node.
    """

    shape: Shape
    source: str = "task"  # task | actor | placement_group | request_resources
    spread_group: str | None = None


@dataclass(frozen=True)
class NodeSnapshot:
    """One node as the policy sees it.

    ``node_type`` is None for nodes the autoscaler does not manage (the head,
    nodes added by hand): they offer capacity but are never terminated.
    A ``launching`` node offers its type's whole capacity. ``idle_s`` is
    how long the node has been idle, None while it is busy.
    """

    node_id: str
    node_type: str | None
    total: Shape
    available: Shape
    status: Literal["launching", "active"] = "active"
    idle_s: float | None = None


@dataclass(frozen=True)
class ClusterSnapshot:
    """The policy's whole input."""

    nodes: Sequence[NodeSnapshot] = ()
    demands: Sequence[Demand] = ()
    requested: Sequence[Shape] = ()  # the standing request_resources() bundles
    launch_blocked: frozenset[str] = frozenset()  # types that may not launch now (backoff after failures)


@dataclass(frozen=True)
class Termination:
    node_id: str
    node_type: str
    reason: str


@dataclass
class ScalingDecision:
    """The policy's output: instructions for the autoscaler loop and what to report."""

    launch: dict[str, int] = field(default_factory=dict)
    terminate: list[Termination] = field(default_factory=list)
    infeasible: list[dict[str, float]] = field(default_factory=list)  # no node type fits: reported, not launched
    capped: list[dict[str, float]] = field(default_factory=list)  # a type fits, but max_workers is reached
    reasons: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.launch and not self.terminate


class _Bin:
    """A node's capacity while packing."""

    __slots__ = ("node_id", "node_type", "free", "groups", "used", "kind")

    def __init__(self, node_id: str, node_type: str | None, free: Shape, kind: str) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.free = dict(free)
        self.groups: set[str] = set()
        self.used = False
        self.kind = kind  # unmanaged | busy | idle | launching | new

    def take(self, demand: Demand) -> bool:
        if demand.spread_group is not None and demand.spread_group in self.groups:
            return False
        if not fits(demand.shape, self.free):
            return False
        for name, amount in demand.shape.items():
            if amount > 0:
                self.free[name] = self.free.get(name, 0.0) - amount
        if demand.spread_group is not None:
            self.groups.add(demand.spread_group)
        self.used = True
        return True


def fits(shape: Shape, capacity: Shape) -> bool:
    """``shape`` fits in ``capacity`` (resources it asks 0 of are ignored)."""
    return all(capacity.get(name, 0.0) + EPSILON >= amount for name, amount in shape.items() if amount > 0)


def _size(shape: Shape) -> tuple[float, float, float]:
    return (shape.get("GPU", 0.0), shape.get("CPU", 0.0),
            sum(v for k, v in shape.items() if k not in ("GPU", "CPU", "memory", "object_store_memory")))


def _fmt(shape: Shape) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items()) if v) + "}"


class ScalingPolicy:
    """Decides launches and terminations; see the module docstring for the order."""

    def __init__(self, config: AutoscalingConfig) -> None:
        self.config = config

    def decide(self, snapshot: ClusterSnapshot) -> ScalingDecision:
        cfg = self.config
        out = ScalingDecision()
        managed = [n for n in snapshot.nodes if n.node_type is not None]
        counts: Counter[str] = Counter(n.node_type for n in managed if n.node_type is not None)
        launch: Counter[str] = Counter()

        # 1. min_workers.
        for node_type in sorted(cfg.node_types.values(), key=lambda t: t.name):
            missing = node_type.min_workers - counts[node_type.name]
            if missing <= 0:
                continue
            if node_type.name in snapshot.launch_blocked:
                out.reasons.append(f"{node_type.name}: below min_workers, but launching backs off after a failure")
                continue
            n = max(0, min(missing, cfg.max_workers - sum(counts.values()) - sum(launch.values())))
            launch[node_type.name] += n
            if n:
                out.reasons.append(f"launch {n} x {node_type.name}: min_workers is {node_type.min_workers}")
            if n < missing:
                out.reasons.append(
                    f"{node_type.name}: min_workers {node_type.min_workers} exceeds the cluster's max_workers "
                    f"{cfg.max_workers}"
                )

        protected: set[str] = set()

        # 2. request_resources: against total capacity (nodes launched here count whole).
        if snapshot.requested:
            bins = self._existing_bins(snapshot, "total") + self._new_bins(launch)
            requested = [Demand(dict(s), "request_resources") for s in snapshot.requested]
            unplaced = self._pack(requested, bins, launch, counts, snapshot, out)
            protected |= {b.node_id for b in bins if b.used and b.kind != "new"}
            if unplaced:
                out.reasons.append(f"request_resources: {len(unplaced)} bundle(s) cannot be met")

        # 3. demands: against free capacity (every new node counts whole).
        if snapshot.demands:
            bins = self._existing_bins(snapshot, "available") + self._new_bins(launch)
            self._pack(list(snapshot.demands), bins, launch, counts, snapshot, out)
            protected |= {b.node_id for b in bins if b.used and b.kind != "new"}

        out.launch = {t: n for t, n in sorted(launch.items()) if n}

        # 4. idle scale-down.
        remaining = Counter(counts)
        idle = sorted(
            (n for n in managed
             if n.status == "active" and n.idle_s is not None and n.idle_s >= cfg.idle_timeout_s
             and n.node_id not in protected),
            key=lambda n: (-(n.idle_s or 0.0), n.node_id),
        )
        for n in idle:
            assert n.node_type is not None and n.idle_s is not None
            node_type = cfg.node_types.get(n.node_type)
            floor = node_type.min_workers if node_type else 0
            if remaining[n.node_type] - 1 < floor:
                continue
            remaining[n.node_type] -= 1
            reason = f"idle for {n.idle_s:.1f} s (idle_timeout_s={cfg.idle_timeout_s:g})"
            out.terminate.append(Termination(n.node_id, n.node_type, reason))
            out.reasons.append(f"terminate {n.node_id[:12]} ({n.node_type}): {reason}")
        return out

    def _existing_bins(self, snapshot: ClusterSnapshot, capacity: Literal["total", "available"]) -> list[_Bin]:
        """Existing nodes in the order demands fill them: unmanaged, busy, idle, launching."""
        order = {"unmanaged": 0, "busy": 1, "idle": 2, "launching": 3}
        bins = []
        for n in snapshot.nodes:
            if n.node_type is None:
                kind = "unmanaged"
            elif n.status == "launching":
                kind = "launching"
            else:
                kind = "busy" if n.idle_s is None else "idle"
            node_type = self.config.node_types.get(n.node_type or "")
            if n.status == "launching" and node_type is not None:
                free: Shape = node_type.capacity()
            else:
                free = n.total if capacity == "total" or n.status == "launching" else n.available
            bins.append(_Bin(n.node_id, n.node_type, free, kind))
        bins.sort(key=lambda b: order[b.kind])
        return bins

    def _new_bins(self, launch: Counter[str]) -> list[_Bin]:
        return [
            _Bin(f"<new {name} #{i + 1}>", name, self.config.node_types[name].capacity(), "new")
            for name, n in sorted(launch.items()) for i in range(n)
        ]

    def _pack(
        self, demands: list[Demand], bins: list[_Bin], launch: Counter[str], counts: Counter[str],
        snapshot: ClusterSnapshot, out: ScalingDecision,
    ) -> list[Demand]:
        """First-fit decreasing onto ``bins``, launching nodes as needed; returns the demands left over."""
        left: list[Demand] = []
        launched_for: dict[str, Counter[str]] = {}
        opened: Counter[str] = Counter()
        infeasible: Counter[str] = Counter()
        capped: Counter[str] = Counter()
        for demand in sorted(demands, key=lambda d: _size(d.shape), reverse=True):
            if any(b.take(demand) for b in bins):
                continue
            node_type = self._cheapest(demand, launch, counts, snapshot)
            if isinstance(node_type, NodeTypeConfig):
                launch[node_type.name] += 1
                b = _Bin(f"<new {node_type.name} #{launch[node_type.name]}>", node_type.name,
                         node_type.capacity(), "new")
                bins.append(b)
                b.take(demand)
                opened[node_type.name] += 1
                launched_for.setdefault(node_type.name, Counter())[_fmt(demand.shape)] += 1
                continue
            left.append(demand)
            if node_type == "infeasible":
                if not any(fits(demand.shape, n.total) for n in snapshot.nodes):
                    out.infeasible.append(dict(demand.shape))
                    infeasible[_fmt(demand.shape)] += 1
            else:
                out.capped.append(dict(demand.shape))
                capped[_fmt(demand.shape)] += 1
        kinds = "/".join(sorted({d.source for d in demands}))
        for name, shapes in sorted(launched_for.items()):
            what = ", ".join(f"{k} x {s}" for s, k in sorted(shapes.items()))
            out.reasons.append(f"launch {opened[name]} x {name} for {kinds} demand that fits nowhere: {what}")
        for shape_text, n in sorted(infeasible.items()):
            out.reasons.append(f"infeasible: {n} x {shape_text} fits no node type; not launching")
        if capped:
            what = ", ".join(f"{k} x {s}" for s, k in sorted(capped.items()))
            out.reasons.append(f"max_workers reached: {what} must wait")
        return left

    def _cheapest(
        self, demand: Demand, launch: Counter[str], counts: Counter[str], snapshot: ClusterSnapshot,
    ) -> NodeTypeConfig | str:
        cfg = self.config
        fitting = [t for t in cfg.node_types.values() if fits(demand.shape, t.capacity())]
        if not fitting:
            return "infeasible"
        if sum(counts.values()) + sum(launch.values()) >= cfg.max_workers:
            return "capped"
        room = [
            t for t in fitting
            if counts[t.name] + launch[t.name] < t.max_workers and t.name not in snapshot.launch_blocked
        ]
        if not room:
            return "capped"
        return min(room, key=lambda t: (t.effective_cost, t.name))
