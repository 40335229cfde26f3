"""Action distributions built from a module's ``action_dist_inputs``.

Categorical (Discrete), MultiCategorical (MultiDiscrete), Gaussian (Box, unbounded)
and SquashedGaussian (Box with finite bounds: tanh, then rescaled to [low, high]).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch.distributions import Categorical as _TorchCategorical

from distcore.rllib._internal.spaces import UnsupportedSpaceError

_LOG_STD_MIN, _LOG_STD_MAX = -20.0, 2.0


class Distribution:
    """The interface every action distribution implements (batched over the first axis)."""

    def sample(self) -> torch.Tensor:
        raise NotImplementedError

    def deterministic_sample(self) -> torch.Tensor:
        raise NotImplementedError

    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def entropy(self) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, other: Distribution) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def required_inputs(space: gym.Space) -> int:
        raise NotImplementedError


class Categorical(Distribution):
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits
        self._dist = _TorchCategorical(logits=logits, validate_args=False)

    def sample(self) -> torch.Tensor:
        return self._dist.sample()

    def deterministic_sample(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        return self._dist.log_prob(actions.long())

    def entropy(self) -> torch.Tensor:
        return self._dist.entropy()

    def kl(self, other: Distribution) -> torch.Tensor:
        assert isinstance(other, Categorical)
        p = torch.log_softmax(self.logits, -1)
        q = torch.log_softmax(other.logits, -1)
        return (p.exp() * (p - q)).sum(-1)

    @staticmethod
    def required_inputs(space: gym.Space) -> int:
        return int(space.n)


class MultiCategorical(Distribution):
    def __init__(self, logits: torch.Tensor, nvec: list[int]) -> None:
        self.nvec = list(nvec)
        self.parts = [Categorical(chunk) for chunk in torch.split(logits, self.nvec, dim=-1)]

    def sample(self) -> torch.Tensor:
        return torch.stack([p.sample() for p in self.parts], dim=-1)

    def deterministic_sample(self) -> torch.Tensor:
        return torch.stack([p.deterministic_sample() for p in self.parts], dim=-1)

    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        return sum(p.logp(actions[..., i]) for i, p in enumerate(self.parts))

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)

    def kl(self, other: Distribution) -> torch.Tensor:
        assert isinstance(other, MultiCategorical)
        return sum(p.kl(q) for p, q in zip(self.parts, other.parts, strict=True))

    @staticmethod
    def required_inputs(space: gym.Space) -> int:
        return int(np.sum(space.nvec))


class Gaussian(Distribution):
    """Diagonal Gaussian; inputs are [mean, log_std] concatenated."""

    def __init__(self, inputs: torch.Tensor) -> None:
        self.mean, log_std = torch.chunk(inputs, 2, dim=-1)
        self.log_std = log_std.clamp(_LOG_STD_MIN, _LOG_STD_MAX)
        self.std = self.log_std.exp()

    def sample(self) -> torch.Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def deterministic_sample(self) -> torch.Tensor:
        return self.mean

    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def kl(self, other: Distribution) -> torch.Tensor:
        assert isinstance(other, Gaussian)
        return (other.log_std - self.log_std
                + (self.std.pow(2) + (self.mean - other.mean).pow(2)) / (2 * other.std.pow(2)) - 0.5).sum(-1)

    @staticmethod
    def required_inputs(space: gym.Space) -> int:
        return 2 * int(np.prod(space.shape))


class SquashedGaussian(Distribution):
    """Gaussian followed by tanh, rescaled to the Box's [low, high]; inputs are [mean, log_std]."""

    def __init__(self, inputs: torch.Tensor, low: np.ndarray, high: np.ndarray) -> None:
        self.base = Gaussian(inputs)
        self.low = torch.as_tensor(low, dtype=inputs.dtype, device=inputs.device)
        self.high = torch.as_tensor(high, dtype=inputs.dtype, device=inputs.device)

    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def _unsquash(self, a: torch.Tensor) -> torch.Tensor:
        y = (a - self.low) * 2.0 / (self.high - self.low) - 1.0
        return torch.atanh(y.clamp(-0.999999, 0.999999))

    def _log_det(self, u: torch.Tensor) -> torch.Tensor:
        # log |d a / d u| = log(1 - tanh(u)^2) + log((high - low) / 2), stable form of the first term.
        term = 2.0 * (math.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))
        return (term + torch.log((self.high - self.low) / 2.0)).sum(-1)

    def rsample_with_logp(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized sample and its log-probability (what SAC's losses need)."""
        u = self.base.sample()
        return self._squash(u), self.base.logp(u) - self._log_det(u)

    def sample(self) -> torch.Tensor:
        return self._squash(self.base.sample())

    def deterministic_sample(self) -> torch.Tensor:
        return self._squash(self.base.mean)

    def logp(self, actions: torch.Tensor) -> torch.Tensor:
        u = self._unsquash(actions)
        return self.base.logp(u) - self._log_det(u)

    def entropy(self) -> torch.Tensor:
        # No closed form; a one-sample estimate.
        _, logp = self.rsample_with_logp()
        return -logp

    def kl(self, other: Distribution) -> torch.Tensor:
        assert isinstance(other, SquashedGaussian)
        return self.base.kl(other.base)

    @staticmethod
    def required_inputs(space: gym.Space) -> int:
        return 2 * int(np.prod(space.shape))


def distribution_class_for(space: gym.Space, squash: bool | None = None) -> type[Distribution]:
    """The default distribution for an action space (bounded Box -> SquashedGaussian when asked)."""
    if isinstance(space, gym.spaces.Discrete):
        return Categorical
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategorical
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        bounded = bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
        return SquashedGaussian if (squash if squash is not None else False) and bounded else Gaussian
    raise UnsupportedSpaceError(f"no action distribution for {space!r}: use Discrete, MultiDiscrete or 1-D Box")


def make_distribution(space: gym.Space, inputs: torch.Tensor, squash: bool = False) -> Distribution:
    cls = distribution_class_for(space, squash)
    if cls is MultiCategorical:
        return MultiCategorical(inputs, [int(n) for n in space.nvec])
    if cls is SquashedGaussian:
        return SquashedGaussian(inputs, space.low, space.high)
    return cls(inputs)
