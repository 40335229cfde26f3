"""Named trainables and environments, shared with every process of the cluster
through core's key-value store once a cluster is up."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

_NAMESPACE = "tune_registry"
_LOCK = threading.Lock()
_LOCAL: dict[tuple[str, str], Any] = {}
_FLUSHED: set[tuple[str, str]] = set()
TRAINABLE = "trainable"
ENV = "env_creator"
_RLLIB_ALGOS = ("PPO", "DQN", "SAC", "IMPALA", "APPO")


def _kv() -> Any:
    from distcore.experimental import internal_kv

    return internal_kv


def _store(kind: str, name: str, value: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered {kind} needs a non-empty string name, got {name!r}")
    with _LOCK:
        _LOCAL[(kind, name)] = value
        _FLUSHED.discard((kind, name))
    flush()


def flush() -> None:
    """Copy local registrations into the cluster's KV (no-op without a cluster)."""
    import cloudpickle

    kv = _kv()
    if not kv._internal_kv_initialized():
        return
    with _LOCK:
        pending = [(key, value) for key, value in _LOCAL.items() if key not in _FLUSHED]
    for (kind, name), value in pending:
        try:
            blob = cloudpickle.dumps(value)
        except Exception:  # unpicklable: stays local to this process
            continue
        kv._internal_kv_put(f"{kind}/{name}", blob, namespace=_NAMESPACE)
        with _LOCK:
            _FLUSHED.add((kind, name))


def _lookup(kind: str, name: str) -> Any:
    with _LOCK:
        if (kind, name) in _LOCAL:
            return _LOCAL[(kind, name)]
    kv = _kv()
    if kv._internal_kv_initialized():
        blob = kv._internal_kv_get(f"{kind}/{name}", namespace=_NAMESPACE)
        if blob is not None:
            import cloudpickle

            value = cloudpickle.loads(blob)
            with _LOCK:
                _LOCAL[(kind, name)] = value
                _FLUSHED.add((kind, name))
            return value
    return None


def register_trainable(name: str, trainable: Any, warn: bool = True) -> None:
    """Register a function or ``Trainable`` class under ``name`` (usable as ``Tuner("name")``)."""
    from distcore.tune._internal.trainable import Trainable

    if not (callable(trainable) or (isinstance(trainable, type) and issubclass(trainable, Trainable))):
        raise TypeError(f"register_trainable needs a function or Trainable class, got {type(trainable).__name__}")
    _store(TRAINABLE, name, trainable)


def register_env(name: str, env_creator: Callable[[Any], Any]) -> None:
    """Register ``env_creator(env_config) -> env`` under ``name``."""
    if not callable(env_creator):
        raise TypeError(f"register_env needs a callable env_creator, got {type(env_creator).__name__}")
    _store(ENV, name, env_creator)


def get_trainable_cls(name: str) -> Any:
    """The trainable registered as ``name``; tries ``import distcore.rllib`` (which
    registers its algorithms) before failing."""
    value = _lookup(TRAINABLE, name)
    if value is None:
        try:
            importlib.import_module("distcore.rllib")
        except ImportError as error:
            if name in _RLLIB_ALGOS:
                raise ValueError(
                    f"trainable {name!r} is an RLlib algorithm: pip install distcore-rllib ({error})") from error
        value = _lookup(TRAINABLE, name)
    if value is None:
        with _LOCK:
            known = sorted(n for kind, n in _LOCAL if kind == TRAINABLE)
        raise ValueError(f"unknown trainable {name!r}: register it with tune.register_trainable(name, fn_or_class)"
                         f" (registered: {known or 'none'})")
    return value


def get_env_creator(name: str) -> Callable[[Any], Any] | None:
    """The env creator registered as ``name``, or None."""
    return _lookup(ENV, name)


def has_trainable(name: str) -> bool:
    return _lookup(TRAINABLE, name) is not None
