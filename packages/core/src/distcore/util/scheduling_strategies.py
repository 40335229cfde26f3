"""Scheduling strategies for tasks and actors (mirrors ``ray.util.scheduling_strategies``).

Pass one as ``scheduling_strategy=`` to ``@distcore.remote(...)`` or
``.options(...)``. Besides these classes the option also takes ``None`` or the
strings ``"DEFAULT"`` (pack onto nodes, the default) and ``"SPREAD"`` (spread
over nodes on a best-effort basis).

Example::

    from distcore.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy, NodeLabelSchedulingStrategy, In,
    )

    f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True))
    f.options(scheduling_strategy=NodeLabelSchedulingStrategy({"region": In("us-east")}))

Every class is a frozen dataclass: values are checked when it is built, and
the error says which argument was wrong, with the value given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "PlacementGroupSchedulingStrategy",
    "NodeAffinitySchedulingStrategy",
    "NodeLabelSchedulingStrategy",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "SchedulingStrategyT",
]


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Run a task or actor in a placement group's reserved bundle(s).

    Args:
        placement_group: the placement group (any object with an ``id``
            attribute, such as the one ``placement_group(...)`` returns), or
            ``None`` for no group (this also turns off capturing the parent's
            group).
        placement_group_bundle_index: the bundle to use; ``-1`` (default) for
            any bundle with room.
        placement_group_capture_child_tasks: whether tasks and actors created
            inside this one run in the same group by default; ``None`` means
            "not set" (false).

    Example::

        pg = placement_group([{"CPU": 1}, {"GPU": 1}])
        f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=1)).remote()
    """

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool | None = None

    def __post_init__(self) -> None:
        pg = self.placement_group
        if pg is not None and not hasattr(pg, "id"):
            raise TypeError(
                "PlacementGroupSchedulingStrategy: 'placement_group' must be a placement "
                f"group (an object with an 'id' attribute) or None, got {pg!r} "
                f"({type(pg).__name__})"
            )
        index = self.placement_group_bundle_index
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(
                "PlacementGroupSchedulingStrategy: 'placement_group_bundle_index' must be "
                f"an int, got {index!r} ({type(index).__name__})"
            )
        if index < -1:
            raise ValueError(
                "PlacementGroupSchedulingStrategy: 'placement_group_bundle_index' must be "
                f"-1 (any bundle) or a bundle index >= 0, got {index}"
            )
        count = getattr(pg, "bundle_count", None)
        if isinstance(count, int) and not isinstance(count, bool) and index >= count:
            raise ValueError(
                "PlacementGroupSchedulingStrategy: 'placement_group_bundle_index' "
                f"{index} is out of range; the placement group has {count} bundle(s), "
                f"so valid indexes are -1 and 0..{count - 1}"
            )
        capture = self.placement_group_capture_child_tasks
        if capture is not None and not isinstance(capture, bool):
            raise TypeError(
                "PlacementGroupSchedulingStrategy: 'placement_group_capture_child_tasks' "
                f"must be a bool or None, got {capture!r} ({type(capture).__name__})"
            )


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run a task or actor on one particular node.

    Args:
        node_id: the node's id as a hex string (an id object with a ``hex()``
            method is converted).
        soft: if ``True``, run somewhere else when the node is dead or can
            never fit the request; if ``False``, fail instead. When the node is
            alive and feasible the task waits for it either way.
        _spill_on_unavailable: with ``soft=True``, also go elsewhere when the
            node is alive but has no free resources right now.
        _fail_on_unavailable: with ``soft=False``, fail at once when the node
            has no free resources right now instead of waiting.

    Example::

        node_id = distcore.get_runtime_context().get_node_id()
        f.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=node_id, soft=False)).remote()
    """

    node_id: str
    soft: bool
    _spill_on_unavailable: bool = False
    _fail_on_unavailable: bool = False

    def __post_init__(self) -> None:
        node_id: Any = self.node_id
        if not isinstance(node_id, str) and callable(getattr(node_id, "hex", None)):
            node_id = node_id.hex()
            object.__setattr__(self, "node_id", node_id)
        if not isinstance(node_id, str) or not node_id:
            raise TypeError(
                "NodeAffinitySchedulingStrategy: 'node_id' must be a non-empty hex "
                f"string, got {node_id!r} ({type(node_id).__name__})"
            )
        for field_name in ("soft", "_spill_on_unavailable", "_fail_on_unavailable"):
            value = getattr(self, field_name)
            if not isinstance(value, bool):
                raise TypeError(
                    f"NodeAffinitySchedulingStrategy: '{field_name}' must be a bool, "
                    f"got {value!r} ({type(value).__name__})"
                )


def _check_operator_values(operator: str, values: tuple[Any, ...]) -> None:
    if not values:
        raise ValueError(f'{operator}() needs at least one value, e.g. {operator}("value1", "value2")')
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(
                f"{operator}(): value at position {position} must be a str, got {value!r} ({type(value).__name__})"
            )


@dataclass(frozen=True, init=False)
class In:
    """Label operator: the node's label value is one of ``values``.

    Example: ``NodeLabelSchedulingStrategy({"region": In("us-east", "us-west")})``
    """

    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        _check_operator_values("In", values)
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True, init=False)
class NotIn:
    """Label operator: the node lacks the label or its value is none of ``values``.

    Example: ``NodeLabelSchedulingStrategy({"gpu": NotIn("K80")})``
    """

    values: tuple[str, ...]

    def __init__(self, *values: str) -> None:
        _check_operator_values("NotIn", values)
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Exists:
    """Label operator: the node has the label, with any value.

    Example: ``NodeLabelSchedulingStrategy({"ssd": Exists()})``
    """


@dataclass(frozen=True)
class DoesNotExist:
    """Label operator: the node does not have the label.

    Example: ``NodeLabelSchedulingStrategy({"preemptible": DoesNotExist()})``
    """


LabelOperator = In | NotIn | Exists | DoesNotExist


def _check_expressions(param: str, expressions: Any) -> dict[str, LabelOperator]:
    if expressions is None:
        return {}
    if not isinstance(expressions, dict):
        raise TypeError(
            f"NodeLabelSchedulingStrategy: '{param}' must be a dict of label name to "
            f'operator (e.g. {{"region": In("us")}}), got {expressions!r} '
            f"({type(expressions).__name__})"
        )
    for key, operator in expressions.items():
        if not isinstance(key, str) or not key:
            raise TypeError(
                f"NodeLabelSchedulingStrategy: label names in '{param}' must be non-empty "
                f"str, got {key!r} ({type(key).__name__})"
            )
        if not isinstance(operator, (In, NotIn, Exists, DoesNotExist)):
            raise TypeError(
                f"NodeLabelSchedulingStrategy: the value for label {key!r} in '{param}' "
                "must be In(...), NotIn(...), Exists() or DoesNotExist(), got "
                f"{operator!r} ({type(operator).__name__})"
            )
    return dict(expressions)


@dataclass(frozen=True)
class NodeLabelSchedulingStrategy:
    """Run a task or actor on a node whose labels match.

    Args:
        hard: label name -> operator; a node must match all of them.
        soft: label name -> operator; among the nodes matching ``hard``,
            ones that also match these are preferred.

    ``hard`` and ``soft`` cannot both be empty.

    Example::

        f.options(scheduling_strategy=NodeLabelSchedulingStrategy(
            hard={"region": In("us-east")}, soft={"gpu": Exists()})).remote()
    """

    hard: dict[str, LabelOperator]
    soft: dict[str, LabelOperator] | None = None

    def __post_init__(self) -> None:
        hard = _check_expressions("hard", self.hard)
        soft = _check_expressions("soft", self.soft)
        if not hard and not soft:
            raise ValueError(
                "NodeLabelSchedulingStrategy: 'hard' and 'soft' cannot both be empty; "
                'give at least one label condition, e.g. {"region": In("us")}'
            )
        object.__setattr__(self, "hard", hard)
        object.__setattr__(self, "soft", soft)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.hard.items())), tuple(sorted((self.soft or {}).items()))))


SchedulingStrategyT = (
    None
    | str  # "DEFAULT" or "SPREAD"
    | PlacementGroupSchedulingStrategy
    | NodeAffinitySchedulingStrategy
    | NodeLabelSchedulingStrategy
)
"""What the ``scheduling_strategy`` option accepts."""
