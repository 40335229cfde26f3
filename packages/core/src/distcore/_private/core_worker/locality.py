"""Locality-aware leasing: run a task where its large arguments already are.

After the submitter resolved a task's arguments it knows, for each argument
kept in a node's shared-memory store, which node holds the primary copy
(``TaskArg.in_plasma_node``) and how large it is (the owner's
``StoredObject.size``). :func:`preferred_nodes` ranks the nodes by the bytes
of arguments they hold, counting only arguments of at least
:data:`LOCALITY_MIN_BYTES` (moving small ones costs less than a detour).
The submitter puts the ranking in ``LeaseRequest.preferred_nodes`` and sends
the request straight to the first node's manager; the scheduling policy runs
the task there when it has room, else spills it back to another node.
"""

from __future__ import annotations

from collections.abc import Callable

from distcore._private import protocol as p
from distcore._private.scheduling.policy import DefaultStrategy

#: Arguments smaller than this do not pull a task towards their node.
LOCALITY_MIN_BYTES = 1024 * 1024


def argument_bytes_by_node(spec: p.TaskSpec, size_of: Callable[[str], int]) -> dict[str, int]:
    """Bytes of ``spec``'s large store-resident arguments per node holding them.

    ``size_of(object_id)`` is the object's size in bytes (0 when unknown).
    An argument passed twice counts once.
    """
    held: dict[str, int] = {}
    seen: set[str] = set()
    for arg in [*spec.args, *spec.kwargs.values()]:
        if arg.in_plasma_node is None or arg.object_id is None or arg.object_id in seen:
            continue
        seen.add(arg.object_id)
        size = size_of(arg.object_id)
        if size >= LOCALITY_MIN_BYTES:
            held[arg.in_plasma_node] = held.get(arg.in_plasma_node, 0) + size
    return held


def preferred_nodes(spec: p.TaskSpec, size_of: Callable[[str], int]) -> list[str]:
    """Nodes holding ``spec``'s large arguments, most bytes first (ties: node id)."""
    held = argument_bytes_by_node(spec, size_of)
    return sorted(held, key=lambda node: (-held[node], node))


def leases_follow_locality(spec: p.TaskSpec) -> bool:
    """Whether the lease request should go to the preferred node first.

    Only for the default strategy: SPREAD, node affinity and placement groups
    choose their node themselves (the policy still sees the preference, e.g.
    as the fallback of a soft node affinity).
    """
    return spec.placement is None and (spec.strategy is None or isinstance(spec.strategy, DefaultStrategy))
