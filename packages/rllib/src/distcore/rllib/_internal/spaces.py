"""Observation preprocessing: any supported gymnasium space -> one flat float32 vector.

Box is flattened (images keep their shape for the CNN encoder), Discrete and
MultiDiscrete become one-hot vectors, Dict and Tuple concatenate their parts in
a fixed order (Dict keys sorted, as gymnasium sorts them).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class UnsupportedSpaceError(TypeError):
    """A gymnasium space that rllib cannot preprocess or act in."""


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def flat_size(space: gym.Space) -> int:
    """The length of the flat vector :func:`preprocess` makes of one observation."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.Dict):
        return sum(flat_size(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return sum(flat_size(s) for s in space.spaces)
    raise UnsupportedSpaceError(
        f"observation space {space!r} is not supported: use Box, Discrete, MultiDiscrete, MultiBinary, "
        "Dict or Tuple of those (or wrap the env to convert its observations)"
    )


def _one_hot(values: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64) - start
    out = np.zeros(values.shape + (n,), dtype=np.float32)
    np.put_along_axis(out, values[..., None], 1.0, axis=-1)
    return out


def preprocess_batch(space: gym.Space, obs: Any) -> np.ndarray:
    """A batch of observations (leading batch axis) -> float32 array [B, flat_size] (or [B, H, W, C])."""
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(obs, dtype=np.float32)
        if is_image_space(space):
            return arr.reshape((-1,) + space.shape)
        return arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, flat_size(space))
    if isinstance(space, gym.spaces.Discrete):
        return _one_hot(np.asarray(obs).reshape(-1), int(space.n), int(space.start))
    if isinstance(space, gym.spaces.MultiBinary):
        arr = np.asarray(obs, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    if isinstance(space, gym.spaces.MultiDiscrete):
        arr = np.asarray(obs, dtype=np.int64).reshape(-1, len(space.nvec.reshape(-1)))
        parts = [_one_hot(arr[:, i], int(n)) for i, n in enumerate(space.nvec.reshape(-1))]
        return np.concatenate(parts, axis=-1)
    if isinstance(space, gym.spaces.Dict):
        parts = [preprocess_batch(sub, obs[key]) for key, sub in space.spaces.items()]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)
    if isinstance(space, gym.spaces.Tuple):
        parts = [preprocess_batch(sub, obs[i]) for i, sub in enumerate(space.spaces)]
        return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=-1)
    flat_size(space)  # raises the typed error
    raise AssertionError("unreachable")


def preprocess_one(space: gym.Space, obs: Any) -> np.ndarray:
    """One observation -> float32 array [1, ...] (a batch of one)."""
    return preprocess_batch(space, stack([obs], space))


def stack(observations: list[Any], space: gym.Space) -> Any:
    """Stack single observations of ``space`` into one batched structure."""
    if isinstance(space, gym.spaces.Dict):
        return {k: stack([o[k] for o in observations], s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(stack([o[i] for o in observations], s) for i, s in enumerate(space.spaces))
    return np.stack([np.asarray(o) for o in observations])


def check_action_space(space: gym.Space) -> None:
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        return
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return
    raise UnsupportedSpaceError(
        f"action space {space!r} is not supported: use Discrete, MultiDiscrete or a 1-D Box"
    )
