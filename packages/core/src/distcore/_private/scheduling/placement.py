"""Placing placement-group bundles on nodes.

``place_bundles`` maps each bundle of a placement group to a node, following
Ray's four strategies:

- ``STRICT_PACK``: every bundle on one node.
- ``PACK``: as few nodes as possible; one node when that works, else spans.
- ``STRICT_SPREAD``: every bundle on a different node.
- ``SPREAD``: different nodes where possible, reusing nodes otherwise.

It first solves against the alive nodes' *totals*: no solution there means
the group is ``infeasible`` (it could never be placed on this cluster). Then
it solves against what is *available* now: ``placed`` with the assignment, or
``wait``. Bundles placed earlier in the same call use up a node's capacity.

STRICT_PACK and STRICT_SPREAD are solved exactly (one-node check; bipartite
matching). PACK and SPREAD use a bounded backtracking search, largest bundle
first, that tries already-used nodes first (PACK) or least-used nodes first
(SPREAD), so the first solution found packs or spreads well.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from distcore._private.scheduling.policy import NodeView
from distcore._private.scheduling.resources import ResourceSet, gpu_units

PlacementStrategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]
VALID_STRATEGIES: tuple[PlacementStrategy, ...] = get_args(PlacementStrategy)

_MAX_STEPS = 50_000
"""Search budget for PACK/SPREAD; past it the answer is ``wait``, not a proof."""

_Caps = dict[str, ResourceSet]


@dataclass(frozen=True)
class PlacementResult:
    """``assignment[i]`` is the node id for bundle ``i`` when ``kind == "placed"``."""

    kind: Literal["placed", "wait", "infeasible"]
    assignment: list[str] | None
    reason: str


class _GaveUp(Exception):
    """The backtracking search ran out of steps."""


def validate_bundles(
    bundles: Sequence[ResourceSet | Mapping[str, float]], strategy: str
) -> list[ResourceSet]:
    """Check a placement group's spec the way ``placement_group()`` does.

    Returns the bundles as ``ResourceSet``s; raises ValueError on an unknown
    strategy, no bundles, a bundle without any positive resource, or a
    fractional GPU quantity above 1.
    """
    if strategy not in VALID_STRATEGIES:
        raise ValueError(
            f"invalid placement strategy {strategy!r}; use one of {', '.join(VALID_STRATEGIES)}"
        )
    if len(bundles) == 0:
        raise ValueError("a placement group needs at least one bundle, got []")
    result = []
    for i, bundle in enumerate(bundles):
        rs = bundle if isinstance(bundle, ResourceSet) else ResourceSet.from_dict(bundle)
        if rs.is_empty():
            raise ValueError(
                f"bundle {i} ({dict(bundle)!r}) is empty: each bundle needs at least "
                "one resource with a quantity > 0, e.g. {'CPU': 1}"
            )
        try:
            gpu_units(rs)
        except ValueError as exc:
            raise ValueError(f"bundle {i}: {exc}") from None
        result.append(rs)
    return result


def place_bundles(
    bundles: Sequence[ResourceSet | Mapping[str, float]],
    strategy: PlacementStrategy,
    nodes: Mapping[str, NodeView],
) -> PlacementResult:
    """Assign each bundle to an alive node under ``strategy`` (see module doc)."""
    reqs = validate_bundles(bundles, strategy)
    alive = {n: nodes[n] for n in sorted(nodes) if nodes[n].alive}
    if not alive:
        return PlacementResult("infeasible", None, "no alive nodes to place bundles on")
    totals = {n: v.total for n, v in alive.items()}
    reason = _never_fits(reqs, strategy, totals)
    if reason is not None:
        return PlacementResult("infeasible", None, reason)
    try:
        if _solve(reqs, strategy, totals) is None:
            return PlacementResult("infeasible", None, _no_solution(reqs, strategy, totals))
    except _GaveUp:
        pass  # could not prove infeasibility; see what fits now
    available = {n: v.available for n, v in alive.items()}
    try:
        assignment = _solve(reqs, strategy, available)
    except _GaveUp:
        assignment = None
    if assignment is None:
        return PlacementResult(
            "wait",
            None,
            f"{strategy}: the {len(reqs)} bundle(s) fit the cluster's totals but not "
            f"what is available now ({_describe(available)})",
        )
    used = len(set(assignment))
    return PlacementResult(
        "placed", assignment, f"{strategy}: {len(reqs)} bundle(s) on {used} node(s)"
    )


def _describe(caps: _Caps, limit: int = 5) -> str:
    """``node-a {CPU: 2}, node-b {CPU: 4}``, truncated after ``limit`` nodes."""
    parts = [f"{n} {caps[n]}" for n in list(caps)[:limit]]
    if len(caps) > limit:
        parts.append(f"... {len(caps) - limit} more")
    return ", ".join(parts)


def _never_fits(reqs: list[ResourceSet], strategy: str, totals: _Caps) -> str | None:
    """Cheap infeasibility checks with precise reasons; None if none applies."""
    for i, bundle in enumerate(reqs):
        if not any(bundle.fits_in(cap) for cap in totals.values()):
            return f"bundle {i} {bundle} fits on no alive node (node totals: {_describe(totals)})"
    combined = sum(reqs, ResourceSet())
    if strategy == "STRICT_PACK" and not any(combined.fits_in(c) for c in totals.values()):
        return (
            f"STRICT_PACK needs {combined} on a single node; no alive node has that "
            f"(node totals: {_describe(totals)})"
        )
    if strategy == "STRICT_SPREAD" and len(reqs) > len(totals):
        return (
            f"STRICT_SPREAD needs {len(reqs)} distinct nodes for {len(reqs)} bundles "
            f"but only {len(totals)} alive node(s) exist"
        )
    cluster = sum(totals.values(), ResourceSet())
    if not combined.fits_in(cluster):
        return f"the bundles need {combined} in total but the alive nodes have {cluster}"
    return None


def _no_solution(reqs: list[ResourceSet], strategy: str, totals: _Caps) -> str:
    if strategy == "STRICT_SPREAD":
        return (
            f"STRICT_SPREAD: the {len(reqs)} bundles cannot each get their own node "
            f"(bundles: {reqs}; node totals: {_describe(totals)})"
        )
    return (
        f"{strategy}: bundles {reqs} cannot be fitted onto the alive nodes even when "
        f"idle (node totals: {_describe(totals)})"
    )


def _leftover(request: ResourceSet, cap: ResourceSet) -> float:
    """How much of ``cap`` stays free after ``request``, summed over its resources."""
    return sum((cap.units(n) - request.units(n)) / cap.units(n) for n in request)


def _solve(reqs: list[ResourceSet], strategy: str, caps: _Caps) -> list[str] | None:
    """An assignment of ``reqs`` to nodes within ``caps``, or None if none exists."""
    if strategy == "STRICT_PACK":
        return _strict_pack(reqs, caps)
    if strategy == "STRICT_SPREAD":
        return _strict_spread(reqs, caps)
    if strategy == "PACK":
        return _strict_pack(reqs, caps) or _search(reqs, caps, _pack_order)
    return _strict_spread(reqs, caps) or _search(reqs, caps, _spread_order)


def _best_fit(request: ResourceSet, caps: _Caps) -> Callable[[str], tuple[float, str]]:
    """Sort key: tightest fit for ``request`` first, then node id."""
    return lambda node: (_leftover(request, caps[node]), node)


def _strict_pack(reqs: list[ResourceSet], caps: _Caps) -> list[str] | None:
    """All bundles on the node they fit most tightly."""
    combined = sum(reqs, ResourceSet())
    fitting = [n for n in caps if combined.fits_in(caps[n])]
    return [min(fitting, key=_best_fit(combined, caps))] * len(reqs) if fitting else None


def _strict_spread(reqs: list[ResourceSet], caps: _Caps) -> list[str] | None:
    """One bundle per node: bipartite matching by (iterative) augmenting paths."""
    if len(reqs) > len(caps):
        return None
    options = [
        sorted((n for n in caps if r.fits_in(caps[n])), key=_best_fit(r, caps)) for r in reqs
    ]
    owner: dict[str, int] = {}  # node -> bundle
    chosen: dict[int, str] = {}  # bundle -> node
    for root in range(len(reqs)):
        if not _augment(root, options, owner, chosen):
            return None
    return [chosen[i] for i in range(len(reqs))]


def _augment(
    root: int, options: list[list[str]], owner: dict[str, int], chosen: dict[int, str]
) -> bool:
    """Breadth-first search for an alternating path that gives ``root`` a node."""
    reached_from: dict[str, int] = {}  # node -> bundle that reached it
    queue, queued = deque([root]), {root}
    while queue:
        bundle = queue.popleft()
        for node in options[bundle]:
            if node in reached_from:
                continue
            reached_from[node] = bundle
            holder = owner.get(node)
            if holder is None:  # free node: shift every bundle on the path along
                while True:
                    taker = reached_from[node]
                    previous = chosen.get(taker)
                    owner[node], chosen[taker] = taker, node
                    if previous is None:
                        return True
                    node = previous
            if holder not in queued:
                queued.add(holder)
                queue.append(holder)
    return False


# An order function ranks candidate nodes for one bundle given the search state:
# (bundle, remaining capacity, bundles per node, nodes in order of first use).
# Candidates may be produced lazily: the search resumes an order only after
# restoring the state it was created in.
_Order = Callable[[ResourceSet, _Caps, dict[str, int], list[str]], Iterable[str]]


def _pack_order(
    bundle: ResourceSet, left: _Caps, count: dict[str, int], used: list[str]
) -> Iterator[str]:
    """Nodes already in use first (oldest first), then the roomiest new node."""
    yield from (n for n in list(used) if bundle.fits_in(left[n]))
    fresh = [n for n in left if not count[n] and bundle.fits_in(left[n])]
    fresh.sort(key=lambda n: (-_leftover(bundle, left[n]), n))
    yield from fresh


def _spread_order(
    bundle: ResourceSet, left: _Caps, count: dict[str, int], used: list[str]
) -> list[str]:
    """Nodes holding the fewest bundles first, then the roomiest, then node id."""
    fitting = [n for n in left if bundle.fits_in(left[n])]
    return sorted(fitting, key=lambda n: (count[n], -_leftover(bundle, left[n]), n))


def _search(reqs: list[ResourceSet], caps: _Caps, order: _Order) -> list[str] | None:
    """Depth-first search over bundles, largest first, trying nodes in ``order``.

    Iterative (one frame per bundle) so large groups don't hit the recursion
    limit; raises _GaveUp after ``_MAX_STEPS`` placements tried.
    """
    peak = {name: max(c.units(name) for c in caps.values()) for r in reqs for name in r}
    size = [sum(r.units(name) / peak[name] for name in r if peak[name]) for r in reqs]
    sequence = sorted(range(len(reqs)), key=lambda i: (-size[i], i))
    left = dict(caps)
    count = dict.fromkeys(caps, 0)
    used: list[str] = []
    assignment: list[str | None] = [None] * len(reqs)

    def candidates(i: int) -> Iterator[str]:
        tried: set[tuple[ResourceSet, int]] = set()
        for node in order(reqs[i], left, count, used):
            if (left[node], count[node]) not in tried:  # identical nodes: try one
                tried.add((left[node], count[node]))
                yield node

    frames = [candidates(sequence[0])]
    steps = 0
    while frames:
        i = sequence[len(frames) - 1]
        undo = assignment[i]
        if undo is not None:  # back from a failed subtree: undo this level's choice
            left[undo] += reqs[i]
            count[undo] -= 1
            if not count[undo]:
                used.remove(undo)
            assignment[i] = None
        node = next(frames[-1], None)
        if node is None:
            frames.pop()
            continue
        steps += 1
        if steps > _MAX_STEPS:
            raise _GaveUp
        left[node] -= reqs[i]
        count[node] += 1
        if count[node] == 1:
            used.append(node)
        assignment[i] = node
        if len(frames) == len(sequence):
            return [n for n in assignment if n is not None]
        frames.append(candidates(sequence[len(frames)]))
    return None
