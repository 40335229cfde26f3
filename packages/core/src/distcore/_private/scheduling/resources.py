"""Resource quantities and one node's resource accounting.

Quantities are stored as integers in units of 1/10000 (``UNIT``), the same
precision Ray uses, so that ten allocations of 0.1 CPU add up to exactly one
CPU. They are exposed as floats.

``NodeResources`` is a pure state machine: the node manager calls
``allocate``/``release`` when it grants and returns worker leases, and
``add_bundle``/``remove_bundle`` when the GCS reserves or frees
placement-group bundles on the node.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, NoReturn

UNIT = 10_000
"""Fixed-point units per 1.0 of any resource."""

GPU = "GPU"

# (gpu id, units taken from that instance)
_Pieces = list[tuple[int, int]]


def _to_units(name: object, value: object) -> int:
    """Validate one ``name -> value`` entry and convert it to fixed point."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"resource name must be a non-empty string, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, Real):
        # ValueError, not TypeError: every bad resource spec raises one error type.
        raise ValueError(f"resource {name!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"resource {name!r} must be finite and >= 0, got {value!r}")
    return round(number * UNIT)


def _fmt(units: int) -> str:
    """Render a fixed-point quantity: ``1`` for whole numbers, else ``0.5``."""
    return str(units // UNIT) if units % UNIT == 0 else repr(units / UNIT)


class ResourceSet(Mapping[str, float]):
    """An immutable mapping of resource name to quantity (``{CPU: 1, GPU: 0.5}``).

    Zero quantities are dropped, so ``ResourceSet({"GPU": 0})`` is empty.
    Supports ``+`` and ``-`` (which refuses to go negative), ``fits_in`` and
    hashing; pickles by value.
    """

    __slots__ = ("_hash", "_units")
    _units: dict[str, int]
    _hash: int

    def __init__(self, resources: Mapping[str, float] | None = None) -> None:
        if resources is not None and not isinstance(resources, Mapping):
            raise TypeError(f"resources must be a mapping of name to number, got {resources!r}")
        units = {name: _to_units(name, value) for name, value in (resources or {}).items()}
        self._set_units(units)

    def _set_units(self, units: Mapping[str, int]) -> None:
        kept = {n: u for n, u in sorted(units.items()) if u}
        object.__setattr__(self, "_units", kept)
        object.__setattr__(self, "_hash", hash(frozenset(kept.items())))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("ResourceSet is immutable")

    @classmethod
    def from_dict(cls, resources: Mapping[str, float]) -> ResourceSet:
        """Build from ``{name: quantity}``; raises ValueError on a bad entry."""
        return cls(resources)

    @classmethod
    def from_units(cls, units: Mapping[str, int]) -> ResourceSet:
        """Build from fixed-point quantities (``UNIT`` per 1.0), unchecked."""
        new = cls.__new__(cls)
        new._set_units(units)
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResourceSet.from_units, (dict(self._units),))

    def to_dict(self) -> dict[str, float]:
        """Return ``{name: quantity}`` with float quantities."""
        return {name: units / UNIT for name, units in self._units.items()}

    def units(self, name: str) -> int:
        """The fixed-point quantity of ``name`` (0 when absent)."""
        return self._units.get(name, 0)

    def __getitem__(self, name: str) -> float:
        return self._units[name] / UNIT

    def __iter__(self) -> Iterator[str]:
        return iter(self._units)

    def __len__(self) -> int:
        return len(self._units)

    def is_empty(self) -> bool:
        """True when no resource has a positive quantity."""
        return not self._units

    def __add__(self, other: ResourceSet) -> ResourceSet:
        if not isinstance(other, ResourceSet):
            return NotImplemented
        units = dict(self._units)
        for name, value in other._units.items():
            units[name] = units.get(name, 0) + value
        return ResourceSet.from_units(units)

    def __sub__(self, other: ResourceSet) -> ResourceSet:
        if not isinstance(other, ResourceSet):
            return NotImplemented
        units = dict(self._units)
        for name, value in other._units.items():
            left = units.get(name, 0) - value
            if left < 0:
                raise ValueError(
                    f"cannot subtract {other!r} from {self!r}: {name} would be {_fmt(left)}"
                )
            units[name] = left
        return ResourceSet.from_units(units)

    def fits_in(self, other: ResourceSet) -> bool:
        """True when every quantity here is <= the same quantity in ``other``."""
        return all(value <= other._units.get(name, 0) for name, value in self._units.items())

    def shortfall(self, other: ResourceSet) -> ResourceSet:
        """What ``other`` lacks to cover this set (empty when ``fits_in``)."""
        return ResourceSet.from_units(
            {n: max(0, v - other._units.get(n, 0)) for n, v in self._units.items()}
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceSet):
            return NotImplemented
        return self._units == other._units

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{n}: {_fmt(u)}" for n, u in self._units.items()) + "}"


def critical_utilization(total: ResourceSet, available: ResourceSet) -> float:
    """The highest used/total fraction over the resources in ``total`` (0.0 .. 1.0)."""
    worst = 0.0
    for name in total:
        cap = total.units(name)
        worst = max(worst, min(1.0, max(0, cap - available.units(name)) / cap))
    return worst


def gpu_units(request: ResourceSet) -> int:
    """The request's GPU quantity in fixed-point units.

    Raises ValueError for a fractional quantity above one GPU (like 1.5):
    a request shares one GPU or takes whole GPUs, never both.
    """
    units = request.units(GPU)
    if units > UNIT and units % UNIT:
        raise ValueError(
            f"invalid GPU request {_fmt(units)}: ask for a fraction below 1 "
            "or a whole number of GPUs"
        )
    return units


def _pick_gpus(units: int, free: Mapping[int, int]) -> _Pieces | None:
    """Choose GPU instances for ``units``: k whole free ids, or one id that fits
    a fraction (the fullest one that still fits, so fractions pack)."""
    if units == 0:
        return []
    if units % UNIT == 0:
        ids = [i for i in sorted(free) if free[i] == UNIT][: units // UNIT]
        return [(i, UNIT) for i in ids] if len(ids) == units // UNIT else None
    fitting = [(left, i) for i, left in free.items() if left >= units]
    return [(min(fitting)[1], units)] if fitting else None


class _Pool:
    """Free quantities plus per-GPU-instance free units (a node or a bundle)."""

    def __init__(self, total: ResourceSet, gpus: Mapping[int, int]) -> None:
        self.total = total
        self.free = {name: total.units(name) for name in total}
        self.gpu_cap = dict(gpus)
        self.gpu_free = dict(gpus)

    def available(self) -> ResourceSet:
        return ResourceSet.from_units(self.free)

    def take(self, request: ResourceSet) -> _Pieces | None:
        if any(v > self.free.get(n, 0) for n, v in request._units.items()):
            return None
        pieces = _pick_gpus(gpu_units(request), self.gpu_free)
        if pieces is None:
            return None
        for name, value in request._units.items():
            self.free[name] -= value
        for gpu_id, units in pieces:
            self.gpu_free[gpu_id] -= units
        return pieces

    def give(self, request: ResourceSet, pieces: _Pieces) -> None:
        for name, value in request._units.items():
            self.free[name] += value
        for gpu_id, units in pieces:
            self.gpu_free[gpu_id] += units

    def could_fit(self, request: ResourceSet) -> bool:
        return request.fits_in(self.total) and (
            _pick_gpus(gpu_units(request), self.gpu_cap) is not None
        )


@dataclass(frozen=True, eq=False)
class Allocation:
    """Resources granted to one lease; ``gpu_ids`` become CUDA_VISIBLE_DEVICES.

    ``bundle`` is the concrete ``(pg_id, index)`` it was taken from, if any.
    Compared by identity: release exactly the object ``allocate`` returned.
    """

    resources: ResourceSet
    gpu_ids: list[int] = field(default_factory=list)
    bundle: tuple[str, int] | None = None


@dataclass(frozen=True)
class BundleView:
    """A snapshot of one placement-group bundle reserved on a node."""

    pg_id: str
    index: int
    total: ResourceSet
    available: ResourceSet
    gpu_ids: list[int]


class _Bundle:
    def __init__(self, resources: ResourceSet, pieces: _Pieces) -> None:
        self.pieces = pieces
        self.pool = _Pool(resources, dict(pieces))
        self.allocations: list[Allocation] = []


class NodeResources:
    """One node's resources: what is free, who holds what, which GPU ids.

    The node owns GPU ids ``0 .. N-1`` (``N`` = total GPUs, a whole number).
    A whole-GPU request takes that many fully free ids; a fractional one
    (below 1) shares one id, packing onto partly used ids first.

    Placement-group bundles are carved out of the free pool by ``add_bundle``;
    ``allocate(..., bundle=(pg_id, index))`` then draws from that bundle only,
    and ``index == -1`` from any bundle of ``pg_id`` on this node. A bundle
    unknown on this node simply does not fit (``allocate`` returns None).
    """

    def __init__(self, total: ResourceSet) -> None:
        gpus = total.units(GPU)
        if gpus % UNIT:
            raise ValueError(f"a node's GPU total must be a whole number, got {total.get(GPU)}")
        self._pool = _Pool(total, {i: UNIT for i in range(gpus // UNIT)})
        self._bundles: dict[tuple[str, int], _Bundle] = {}
        self._live: dict[Allocation, _Pieces] = {}

    @property
    def total(self) -> ResourceSet:
        """Everything the node has."""
        return self._pool.total

    @property
    def available(self) -> ResourceSet:
        """What is neither allocated nor reserved by a bundle."""
        return self._pool.available()

    def used(self) -> ResourceSet:
        """Allocated plus bundle-reserved resources (``total - available``)."""
        return self.total - self.available

    def utilization(self) -> float:
        """The most used fraction over this node's resources (0.0 .. 1.0)."""
        return critical_utilization(self.total, self.available)

    def _bundle_keys(self, bundle: tuple[str, int]) -> list[tuple[str, int]]:
        pg_id, index = bundle
        if index < -1:
            raise ValueError(f"bundle index must be >= 0, or -1 for any bundle; got {index}")
        if index >= 0:
            return [bundle] if bundle in self._bundles else []
        return sorted(k for k in self._bundles if k[0] == pg_id)

    def allocate(
        self, request: ResourceSet, bundle: tuple[str, int] | None = None
    ) -> Allocation | None:
        """Take ``request`` now (from the node, or from ``bundle``); None if it doesn't fit."""
        gpu_units(request)
        keys: list[tuple[str, int] | None] = [None]
        if bundle is not None:
            keys = [*self._bundle_keys(bundle)]
        for key in keys:
            pool = self._pool if key is None else self._bundles[key].pool
            pieces = pool.take(request)
            if pieces is None:
                continue
            allocation = Allocation(request, [gpu_id for gpu_id, _ in pieces], key)
            self._live[allocation] = pieces
            if key is not None:
                self._bundles[key].allocations.append(allocation)
            return allocation
        return None

    def release(self, allocation: Allocation) -> bool:
        """Return an allocation's resources; False if it was already released
        (or dropped by ``remove_bundle``), so releasing twice is harmless."""
        pieces = self._live.pop(allocation, None)
        if pieces is None:
            return False
        if allocation.bundle is None:
            self._pool.give(allocation.resources, pieces)
        else:
            owner = self._bundles[allocation.bundle]
            owner.pool.give(allocation.resources, pieces)
            owner.allocations.remove(allocation)
        return True

    def is_feasible(self, request: ResourceSet, bundle: tuple[str, int] | None = None) -> bool:
        """Whether ``request`` would fit if the node (or the bundle) were idle."""
        gpu_units(request)
        if bundle is None:
            return self._pool.could_fit(request)
        return any(self._bundles[k].pool.could_fit(request) for k in self._bundle_keys(bundle))

    def add_bundle(self, pg_id: str, index: int, resources: ResourceSet) -> bool:
        """Reserve a bundle from the free pool; False if it doesn't fit now.

        Reserving GPUs pins specific GPU ids to the bundle. Adding the same
        bundle again with the same resources is a no-op that returns True.
        """
        if not isinstance(pg_id, str) or not pg_id or index < 0:
            raise ValueError(f"bundle needs a non-empty pg_id and index >= 0, got {(pg_id, index)}")
        if resources.is_empty():
            raise ValueError(f"bundle {index} of placement group {pg_id} has no resources")
        gpu_units(resources)
        existing = self._bundles.get((pg_id, index))
        if existing is not None:
            if existing.pool.total != resources:
                raise ValueError(
                    f"bundle {index} of placement group {pg_id} is already reserved "
                    f"as {existing.pool.total}, not {resources}"
                )
            return True
        pieces = self._pool.take(resources)
        if pieces is None:
            return False
        self._bundles[(pg_id, index)] = _Bundle(resources, pieces)
        return True

    def remove_bundle(self, pg_id: str, index: int) -> list[Allocation]:
        """Free a bundle; return the allocations still inside it (their workers
        must be killed; releasing them later is a no-op). Unknown bundle: []."""
        reserved = self._bundles.pop((pg_id, index), None)
        if reserved is None:
            return []
        for allocation in reserved.allocations:
            del self._live[allocation]
        self._pool.give(reserved.pool.total, reserved.pieces)
        return list(reserved.allocations)

    def remove_placement_group(self, pg_id: str) -> list[Allocation]:
        """Free every bundle of ``pg_id`` on this node (see ``remove_bundle``)."""
        keys = sorted(k for k in self._bundles if k[0] == pg_id)
        return [a for _, i in keys for a in self.remove_bundle(pg_id, i)]

    def bundles(self) -> list[BundleView]:
        """The bundles reserved on this node, ordered by ``(pg_id, index)``."""
        return [
            BundleView(pg, i, b.pool.total, b.pool.available(), [g for g, _ in b.pieces])
            for (pg, i), b in sorted(self._bundles.items())
        ]
