"""RLModule: the torch model an algorithm acts and learns with.

Subclass :class:`RLModule` to bring your own network. Observations reach the module
preprocessed: a float32 tensor ``batch["obs"]`` of shape [B, n] (Box, Discrete,
MultiDiscrete, Dict and Tuple spaces are flattened/one-hot encoded) or [B, H, W, C]
for image Boxes. Return ``{"action_dist_inputs": ...}`` (logits for Discrete,
[mean, log_std] for Box) and, for actor-critic algorithms, implement
``compute_values``::

    class TinyModule(RLModule):
        def setup(self):
            n_in = self.observation_space.shape[0]
            self.pi = torch.nn.Linear(n_in, self.action_space.n)
            self.vf = torch.nn.Linear(n_in, 1)

        def _forward(self, batch):
            return {"action_dist_inputs": self.pi(batch["obs"])}

        def compute_values(self, batch):
            return self.vf(batch["obs"]).squeeze(-1)

    config = PPOConfig().environment("CartPole-v1").rl_module(rl_module_spec=RLModuleSpec(module_class=TinyModule))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distcore.rllib._internal.distributions import Distribution, make_distribution


class Columns:
    """Names of the columns of sample batches and module outputs."""

    OBS = "obs"
    NEXT_OBS = "new_obs"
    ACTIONS = "actions"
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    ACTION_DIST_INPUTS = "action_dist_inputs"
    ACTION_LOGP = "action_logp"
    VF_PREDS = "vf_preds"
    ADVANTAGES = "advantages"
    VALUE_TARGETS = "value_targets"
    SEGMENT_ENDS = "segment_ends"


class RLModule(nn.Module):
    """Base class of every policy network (a ``torch.nn.Module``)."""

    #: Box actions use a tanh-squashed Gaussian when True (SAC), a plain Gaussian otherwise.
    squash_actions: bool = False

    def __init__(self, observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                 model_config: dict[str, Any] | None = None, inference_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.model_config = dict(model_config or {})
        self.inference_only = inference_only
        self.setup()

    def setup(self) -> None:
        """Build layers here (spaces and model_config are set)."""

    def forward_inference(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Greedy acting (evaluation, ``compute_single_action(explore=False)``)."""
        return self._forward_inference(batch)

    def forward_exploration(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Acting while collecting training data."""
        return self._forward_exploration(batch)

    def forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The forward pass the loss uses."""
        return self._forward_train(batch)

    def _forward_inference(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._forward(batch)

    def _forward_exploration(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._forward(batch)

    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._forward(batch)

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _forward (or the three _forward_*)")

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.forward_train(batch)

    def compute_values(self, batch: dict[str, Any]) -> torch.Tensor:
        """State values V(obs), shape [B]; actor-critic algorithms need it."""
        raise NotImplementedError(f"{type(self).__name__} has no value function: implement compute_values")

    def get_action_dist(self, inputs: torch.Tensor) -> Distribution:
        """The action distribution for ``action_dist_inputs``."""
        return make_distribution(self.action_space, inputs, squash=self.squash_actions)

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays (what checkpoints and weight broadcasts carry)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.state_dict().items()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state.items()})


@dataclass
class RLModuleSpec:
    """How to build an RLModule: its class, spaces (filled from the env when None) and model_config."""

    module_class: type[RLModule] | None = None
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    model_config: dict[str, Any] | None = None
    inference_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> RLModule:
        if self.module_class is None:
            raise ValueError("RLModuleSpec.module_class is None: give an RLModule subclass")
        if not (isinstance(self.module_class, type) and issubclass(self.module_class, RLModule)):
            raise TypeError(f"RLModuleSpec.module_class must subclass RLModule, got {self.module_class!r}")
        if self.observation_space is None or self.action_space is None:
            raise ValueError("RLModuleSpec needs observation_space and action_space to build")
        return self.module_class(observation_space=self.observation_space, action_space=self.action_space,
                                 model_config=self.model_config, inference_only=self.inference_only,
                                 **self.extra)


class MultiRLModule(nn.ModuleDict):
    """One RLModule per policy (module id); single-agent algorithms hold ``{"default_policy": m}``."""

    def get_state(self) -> dict[str, dict[str, np.ndarray]]:
        return {mid: m.get_state() for mid, m in self.items()}

    def set_state(self, state: dict[str, dict[str, Any]]) -> None:
        for mid, s in state.items():
            self[mid].set_state(s)
