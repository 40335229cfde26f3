"""Algorithm names -> classes, and their registration as tune trainables."""

from __future__ import annotations

import importlib
from typing import Any

#: name -> "module:Class" (imported lazily).
ALGORITHMS: dict[str, str] = {
    "PPO": "distcore.rllib.algorithms.ppo:PPO",
    "DQN": "distcore.rllib.algorithms.dqn:DQN",
    "SAC": "distcore.rllib.algorithms.sac:SAC",
    "IMPALA": "distcore.rllib.algorithms.impala:IMPALA",
    "APPO": "distcore.rllib.algorithms.appo:APPO",
}


def get_algorithm_class(name: str) -> Any:
    """The Algorithm class registered as ``name`` (``"PPO"``, ``"DQN"``, ...)."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}: choose one of {sorted(ALGORITHMS)}")
    module, cls = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def register_with_tune() -> bool:
    """Register every algorithm as a tune trainable; False when tune has no register_trainable."""
    try:
        tune = importlib.import_module("distcore.tune")
    except ImportError:
        return False
    register = getattr(tune, "register_trainable", None)
    if register is None:
        return False
    for name in ALGORITHMS:
        register(name, get_algorithm_class(name))
    return True
