"""Resolving a param_space into concrete configs: grids crossed, domains sampled,
``sample_from`` functions evaluated after the values they depend on."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from distcore.tune._internal.nested import flatten as flatten  # (re-exported)
from distcore.tune._internal.sample import Domain, Function

Path = tuple[Any, ...]


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value


def walk(space: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Yield (path, leaf) for every domain or grid leaf inside nested dicts/lists."""
    if is_grid(space) or isinstance(space, Domain):
        yield prefix, space
    elif isinstance(space, dict):
        for key, value in space.items():
            yield from walk(value, (*prefix, key))
    elif isinstance(space, (list, tuple)):
        for index, value in enumerate(space):
            yield from walk(value, (*prefix, index))


def get_path(obj: Any, path: Path) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def set_path(obj: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _thaw(space: Any) -> Any:
    """A deep copy in which tuples become lists (so leaves can be set) and domains stay shared."""
    if isinstance(space, Domain) or is_grid(space):
        return space  # replaced by a sampled or assigned value; never mutated
    if space is None or isinstance(space, (int, float, str, bool)):
        return space
    if isinstance(space, dict):
        return {key: _thaw(value) for key, value in space.items()}
    if isinstance(space, (list, tuple)):
        return [_thaw(value) for value in space]
    return copy.deepcopy(space)


def grid_leaves(space: Any) -> list[tuple[Path, list[Any]]]:
    return [(path, leaf["grid_search"]) for path, leaf in walk(space) if is_grid(leaf)]


def grid_size(space: Any) -> int:
    size = 1
    for _, values in grid_leaves(space):
        size *= len(values)
    return size


def has_domains(space: Any) -> bool:
    return any(True for _ in walk(space))


class _Unresolved(Exception):
    pass


class _View(dict):
    """Attribute and item access over a config being resolved; unresolved leaves raise."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error

    def __getitem__(self, key: Any) -> Any:
        return _wrap(dict.__getitem__(self, key))

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


class _ListView(list):
    def __getitem__(self, index: Any) -> Any:
        return _wrap(list.__getitem__(self, index))


def _wrap(value: Any) -> Any:
    if isinstance(value, Domain) or is_grid(value):
        raise _Unresolved
    if isinstance(value, dict):
        return _View(value)
    if isinstance(value, list):
        return _ListView(value)
    return value


class Spec:
    """What a ``sample_from`` function receives: ``spec.config`` is the config so far."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = _View(config)

    def __getitem__(self, key: str) -> Any:
        if key != "config":
            raise KeyError(key)
        return self.config


def resolve(space: dict[str, Any], rng: np.random.Generator,
            grid: dict[Path, Any] | None = None, preset: dict[str, Any] | None = None) -> dict[str, Any]:
    """One concrete config from ``space``: ``grid`` fixes the grid leaves, ``preset``
    (a possibly partial config, e.g. from points_to_evaluate) fixes whatever it names."""
    config = _thaw(space)
    if preset:
        _merge_preset(config, preset)
    for path, value in (grid or {}).items():
        set_path(config, path, value)
    functions: list[tuple[Path, Function]] = []
    for path, leaf in list(walk(config)):
        if is_grid(leaf):
            raise ValueError(f"grid_search at {'/'.join(map(str, path))} was not assigned a value")
        if isinstance(leaf, Function):
            functions.append((path, leaf))
        else:
            set_path(config, path, leaf.sample(None, rng))
    # sample_from functions may depend on each other: resolve in passes until none is left.
    while functions:
        pending: list[tuple[Path, Function]] = []
        for path, leaf in functions:
            try:
                set_path(config, path, leaf.sample(Spec(config), rng))
            except _Unresolved:
                pending.append((path, leaf))
        if len(pending) == len(functions):
            names = ", ".join("/".join(map(str, path)) for path, _ in pending)
            raise ValueError(f"sample_from values depend on each other in a cycle (or on a missing key): {names}")
        functions = pending
    return config


def _merge_preset(config: Any, preset: dict[str, Any]) -> None:
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and not is_grid(config.get(key)):
            _merge_preset(config[key], value)
        else:
            config[key] = copy.deepcopy(value)


def grid_assignments(space: dict[str, Any]) -> list[dict[Path, Any]]:
    leaves = grid_leaves(space)
    if not leaves:
        return [{}]
    paths = [path for path, _ in leaves]
    # Ray's order: the last grid varies slowest? Keep the first key varying fastest.
    combos = itertools.product(*[values for _, values in reversed(leaves)])
    return [dict(zip(reversed(paths), combo, strict=True)) for combo in combos]


