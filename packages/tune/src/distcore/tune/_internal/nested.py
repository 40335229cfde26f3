"""Nested dicts as flat "a/b" keys (light: the trial actor's file writer imports it)."""

from __future__ import annotations

from typing import Any


def flatten(config: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a/b": 1}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + sep, sep))
        else:
            out[name] = value
    return out


__all__ = ["flatten"]
