"""Filters of the state API: ``[("key", "=", value), ("key", "!=", value)]``.

Shared by the control store (which filters its task table before replying)
and the state client (which filters everything else after gathering).
Values compare as text, case-insensitively (``state=finished`` matches
``FINISHED``); numeric fields compare as numbers (``pid=42``);
``True``/``False`` as ``true``/``false``; a missing value as ``none``.

Example::

    filters = parse_filters(["state=RUNNING", "name!=f"])
    check_filters(filters, {"state", "name"}, "tasks")
    assert matches({"state": "RUNNING", "name": "g"}, filters)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PREDICATES = ("=", "!=")
Filter = tuple[str, str, Any]


def parse_filter(text: str) -> Filter:
    """``"key=value"`` or ``"key!=value"`` (the CLI's ``--filter``) as a filter tuple."""
    for predicate in ("!=", "="):
        key, sep, value = text.partition(predicate)
        if sep and key.strip():
            return key.strip(), predicate, value.strip()
    raise ValueError(f"filter {text!r} must look like KEY=VALUE or KEY!=VALUE (e.g. state=RUNNING)")


def parse_filters(texts: Iterable[str] | None) -> list[Filter]:
    return [parse_filter(t) for t in texts or ()]


def check_filters(filters: Sequence[Any] | None, valid_keys: Iterable[str], what: str) -> list[Filter]:
    """Validate ``filters`` for resource ``what``; returns them as a list of tuples.

    Raises ``ValueError`` naming the bad filter and the valid keys.
    """
    out: list[Filter] = []
    valid = sorted(valid_keys)
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"a filter must be a (key, predicate, value) tuple like ('state', '=', 'ALIVE'), got {item!r}")
        key, predicate, value = item
        if predicate not in PREDICATES:
            raise ValueError(f"filter predicate must be one of {list(PREDICATES)}, got {predicate!r} in {tuple(item)!r}")
        if key not in valid:
            raise ValueError(f"{key!r} is not a filter key for {what}; valid keys: {', '.join(valid)}")
        out.append((key, predicate, value))
    return out


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    return text if text not in ("", "null") else "none"


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(actual) == float(wanted)
        except (TypeError, ValueError):
            return False
    return _text(actual) == _text(wanted)


def matches(row: Mapping[str, Any], filters: Sequence[Filter]) -> bool:
    """Whether ``row`` passes every filter."""
    for key, predicate, value in filters:
        equal = _equal(row.get(key), value)
        if equal != (predicate == "="):
            return False
    return True
