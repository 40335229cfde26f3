"""Placement groups: reserve bundles of resources across nodes, atomically.

Example::

    from distcore.util import placement_group
    from distcore.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    distcore.get(pg.ready(), timeout=30)
    ref = f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
"""

from __future__ import annotations

import asyncio
from typing import Any

from distcore._private import ids, worker_state
from distcore._private import protocol as p
from distcore._private.scheduling.placement import VALID_STRATEGIES, validate_bundles

__all__ = [
    "PlacementGroup",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


class PlacementGroup:
    """A handle to a placement group; pass it in scheduling strategies."""

    def __init__(self, pg_id: str, bundles: list[dict[str, float]] | None = None) -> None:
        self.id = pg_id
        self._bundles = None if bundles is None else [dict(b) for b in bundles]
        # placement_group() learned that the group was created by the time it returned: the
        # first wait() on this handle answers from that instead of asking again (one round trip).
        self._created_at_creation = False

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles, as given to ``placement_group`` (fetched once when this
        handle was made from an id alone, e.g. by ``get_current_placement_group``)."""
        if self._bundles is None:
            from distcore._private.api.runtime import auto_init

            info = auto_init().gcs_call("GetPlacementGroup", p.GetPlacementGroup(pg_id=self.id))
            if info is None:
                return []
            self._bundles = [dict(b) for b in info.bundles]
        return list(self._bundles)

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that becomes ready (``True``) once every bundle is reserved."""
        from distcore._private.api.runtime import auto_init

        core = auto_init()
        object_id = ids.new_put_object_id(core.current_task_id or core.root_task_id)
        core.refs.add_owned(object_id)
        ref = core.make_ref(object_id)
        core.spawn(_fill_when_ready(core, self.id, object_id))
        return ref

    def wait(self, timeout_seconds: float | None = 30) -> bool:
        """Block until the group is created; False if ``timeout_seconds`` passes first.

        The first ``wait()`` on the handle ``placement_group()`` returned answers
        True at once when the group was already created by then (its reply said
        so: bundles on the head's node are reserved within the call), unless the
        group was removed through this handle; later calls ask the control store.
        """
        from distcore._private.api.runtime import auto_init

        if self._created_at_creation:
            self._created_at_creation = False  # once: later waits ask the control store
            return True
        core = auto_init()
        info = core.gcs_call("GetPlacementGroup", p.GetPlacementGroup(pg_id=self.id, wait_ready=True, timeout=timeout_seconds))
        return info is not None and info.state == "CREATED"

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self._bundles))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id}, bundles={self._bundles if self._bundles is not None else '?'})"


async def _fill_when_ready(core: Any, pg_id: str, object_id: str) -> None:
    from distcore._private.core_worker.memory_store import StoredObject
    from distcore._private.serialization import serialize
    from distcore.exceptions import PlacementGroupSchedulingError

    while True:
        info = await core.gcs().call("Gcs", "GetPlacementGroup", p.GetPlacementGroup(pg_id=pg_id, wait_ready=True, timeout=60))
        if info is None or info.state == "REMOVED":
            core.store_error([object_id], PlacementGroupSchedulingError(f"placement group {pg_id} was removed before it was ready"))
            return
        if info.state == "CREATED":
            value = p.SerializedValue(serialize(True).to_bytes())
            core.memory.put(object_id, StoredObject(value=value))
            return
        await asyncio.sleep(0)


def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    **_ignored: Any,
) -> PlacementGroup:
    """Ask the cluster to reserve ``bundles`` with ``strategy``
    (``PACK``, ``SPREAD``, ``STRICT_PACK`` or ``STRICT_SPREAD``)."""
    from distcore._private.api.runtime import auto_init

    if strategy not in VALID_STRATEGIES:
        raise ValueError(f"invalid placement strategy {strategy!r}; use one of {', '.join(VALID_STRATEGIES)}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    if not isinstance(name, str):
        raise TypeError(f"placement group name must be a str, got {name!r} ({type(name).__name__})")
    _check_bundle_list(bundles)
    validate_bundles(bundles, strategy)
    core = auto_init()
    pg_id = ids.new_placement_group_id()
    spec = p.PlacementGroupSpec(
        pg_id=pg_id, bundles=[dict(b) for b in bundles], strategy=strategy, name=name or "",
        namespace=core.namespace, job_id=core.job_id, detached=lifetime == "detached",
    )
    state = core.gcs_call("CreatePlacementGroup", spec)
    pg = PlacementGroup(pg_id, spec.bundles)
    pg._created_at_creation = state == "CREATED"
    return pg


def _check_bundle_list(bundles: Any) -> None:
    if not isinstance(bundles, (list, tuple)):
        raise ValueError(
            "placement_group bundles must be a list of dicts like [{'CPU': 1}, {'GPU': 1}], "
            f"got {bundles!r} ({type(bundles).__name__})"
        )
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict):
            raise ValueError(
                f"bundle {i} must be a dict of resource name to quantity like {{'CPU': 1}}, "
                f"got {bundle!r} ({type(bundle).__name__})"
            )


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's bundles; tasks and actors still in it are killed."""
    from distcore._private.api.runtime import auto_init

    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group expects a PlacementGroup, got {type(placement_group).__name__}")
    placement_group._created_at_creation = False
    auto_init().gcs_call("RemovePlacementGroup", placement_group.id)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group named ``placement_group_name`` in this namespace."""
    from distcore._private.api.runtime import auto_init

    core = auto_init()
    info = core.gcs_call("GetPlacementGroup", p.GetPlacementGroup(name=placement_group_name, namespace=core.namespace))
    if info is None or info.state == "REMOVED":
        raise ValueError(f"no placement group named {placement_group_name!r} in namespace {core.namespace!r}")
    return PlacementGroup(info.pg_id, info.bundles)


def _table_row(info: p.PlacementGroupInfo) -> dict[str, Any]:
    return {
        "placement_group_id": info.pg_id,
        "name": info.name,
        "bundles": {i: dict(b) for i, b in enumerate(info.bundles)},
        "bundles_to_node_id": dict(info.bundle_nodes),
        "strategy": info.strategy,
        "state": info.state,
        "stats": {"scheduling_state": info.reason or info.state},
    }


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """State of one group, or of all groups keyed by id."""
    from distcore._private.api.runtime import auto_init

    core = auto_init()
    if placement_group is not None:
        info = core.gcs_call("GetPlacementGroup", p.GetPlacementGroup(pg_id=placement_group.id))
        return _table_row(info) if info is not None else {}
    return {info.pg_id: _table_row(info) for info in core.gcs_call("ListPlacementGroups")}


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the current task or actor runs in, if any."""
    core = worker_state.core_worker()
    if core is None or core.executor is None:
        return None
    placement = core.executor.current_placement
    return PlacementGroup(placement[0]) if placement else None
