"""Trial resources: ``PlacementGroupFactory``, ``with_resources`` and resource arithmetic."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_ALIASES = {"cpu": "CPU", "gpu": "GPU", "memory": "memory", "num_cpus": "CPU", "num_gpus": "GPU"}
_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def normalize(resources: dict[str, Any]) -> dict[str, float]:
    if not isinstance(resources, dict):
        raise TypeError(f"trial resources must be a dict like {{'cpu': 1, 'gpu': 0}}, got {type(resources).__name__}")
    out: dict[str, float] = {}
    for key, value in resources.items():
        if key in ("custom_resources", "resources") and isinstance(value, dict):
            for name, amount in value.items():
                out[name] = out.get(name, 0.0) + float(amount)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"trial resource {key!r} must be a number >= 0, got {value!r}")
        name = _ALIASES.get(key, key)
        out[name] = out.get(name, 0.0) + float(value)
    return {k: v for k, v in out.items() if v > 0 or k == "CPU"}


class PlacementGroupFactory:
    """A trial's resources as bundles: the first bundle hosts the trial actor, the
    others are reserved for what it starts (e.g. a Trainer's workers).

    Example::

        tune.with_resources(fn, tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 2}], strategy="PACK"))
    """

    def __init__(self, bundles: list[dict[str, float]], strategy: str = "PACK") -> None:
        if not isinstance(bundles, list) or not bundles:
            raise ValueError("PlacementGroupFactory needs a non-empty list of resource bundles")
        if strategy not in _STRATEGIES:
            raise ValueError(f"PlacementGroupFactory strategy must be one of {_STRATEGIES}, got {strategy!r}")
        self.bundles = [normalize(b) for b in bundles]
        self.strategy = strategy

    @property
    def head_bundle(self) -> dict[str, float]:
        return dict(self.bundles[0])

    @property
    def required_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0.0) + value
        return total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupFactory) and (self.bundles, self.strategy) == (
            other.bundles, other.strategy)

    def __hash__(self) -> int:
        return hash((repr(self.bundles), self.strategy))

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles}, strategy={self.strategy!r})"


def as_factory(resources: Any) -> PlacementGroupFactory:
    if isinstance(resources, PlacementGroupFactory):
        return resources
    return PlacementGroupFactory([normalize(resources)])


def with_resources(trainable: Any, resources: dict[str, Any] | PlacementGroupFactory | Callable[[dict], Any]) -> Any:
    """Attach resources to a trainable: a dict (``{"cpu": 2, "gpu": 1}``), a
    ``PlacementGroupFactory``, or a callable ``config -> either``.

    Example::

        tuner = tune.Tuner(tune.with_resources(train_fn, {"cpu": 2}), param_space=space)
    """
    if not callable(resources):
        as_factory(resources)  # validate now
    from distcore.tune._internal.trainable import Trainable

    if isinstance(trainable, type) and issubclass(trainable, Trainable):
        class _WithResources(trainable):  # type: ignore[valid-type, misc]
            _tune_resources = resources

        _WithResources.__name__ = trainable.__name__
        _WithResources.__qualname__ = trainable.__qualname__
        return _WithResources
    if not callable(trainable):
        raise TypeError(f"with_resources needs a function or Trainable class, got {type(trainable).__name__}")

    @functools.wraps(trainable)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return trainable(*args, **kwargs)

    wrapped._tune_resources = resources  # type: ignore[attr-defined]
    for attr in ("_tune_parameters", "_tune_inner"):
        if hasattr(trainable, attr):
            setattr(wrapped, attr, getattr(trainable, attr))
    return wrapped


def resources_for(trainable: Any, config: dict[str, Any]) -> PlacementGroupFactory:
    spec = getattr(trainable, "_tune_resources", None)
    if spec is None:
        default = getattr(trainable, "default_resource_request", None)
        if callable(default):
            spec = default(config)
    if callable(spec) and not isinstance(spec, PlacementGroupFactory):
        spec = spec(config)
    if spec is None:
        spec = {"CPU": 1}
    return as_factory(spec)
