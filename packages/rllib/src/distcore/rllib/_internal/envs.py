"""Env registry and env construction (string ids, registered names, classes, creators)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

_REGISTRY: dict[str, Callable[[dict], Any]] = {}


class EnvContext(dict):
    """The ``env_config`` dict an env creator receives, plus where the env runs."""

    def __init__(self, env_config: dict | None, worker_index: int = 0, vector_index: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__(env_config or {})
        self.worker_index = worker_index
        self.vector_index = vector_index
        self.num_workers = num_workers


def _tune_registry() -> Any:
    try:
        return importlib.import_module("distcore.tune.registry")
    except ImportError:
        return None


def register_env(name: str, env_creator: Callable[[dict], Any]) -> None:
    """Register ``env_creator(env_config) -> env`` under ``name`` (in tune's registry too, when present)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"env name must be a non-empty string, got {name!r}")
    if not callable(env_creator):
        raise TypeError(f"env_creator for {name!r} must be callable, got {env_creator!r}")
    _REGISTRY[name] = env_creator
    try:
        tune = importlib.import_module("distcore.tune")
        if hasattr(tune, "register_env"):
            tune.register_env(name, env_creator)
    except ImportError:
        pass


def get_env_creator(name: str) -> Callable[[dict], Any] | None:
    """The creator registered under ``name`` here or in tune, else None."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    registry = _tune_registry()
    if registry is not None and hasattr(registry, "get_env_creator"):
        try:
            creator = registry.get_env_creator(name)
        except Exception:  # noqa: BLE001 - tune's lookup failing means "not registered there"
            creator = None
        if creator is not None:
            return creator
    return None


class UnknownEnvError(ValueError):
    """An env id that is neither registered nor known to gymnasium."""


def resolve_env_creator(env: Any) -> Callable[[EnvContext], Any]:
    """A creator for ``env``: registered name, gymnasium id, env class, or callable."""
    if isinstance(env, str):
        creator = get_env_creator(env)
        if creator is not None:
            return creator
        if env in gym.registry:
            return _GymMaker(env)
        raise UnknownEnvError(
            f"env {env!r} is not registered: call distcore.rllib.register_env({env!r}, creator) or use a "
            "gymnasium id (e.g. 'CartPole-v1')"
        )
    if isinstance(env, type):
        return env
    if callable(env):
        return env
    raise TypeError(f"env must be a registered name, gymnasium id, env class or creator, got {env!r}")


class _GymMaker:
    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def __call__(self, env_config: dict) -> gym.Env:
        return gym.make(self.env_id, **dict(env_config))


def make_env(config: Any, worker_index: int = 0, vector_index: int = 0) -> Any:
    creator = config.env_creator()
    ctx = EnvContext(config.env_config, worker_index, vector_index, config.num_env_runners)
    env = creator(ctx)
    if env is None:
        raise TypeError(f"the env creator for {config.env!r} returned None")
    return env
