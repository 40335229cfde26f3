"""The default RLModules the algorithms build from ``model_config``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distcore.rllib._internal.distributions import distribution_class_for
from distcore.rllib._internal.models import encoder_for, merged_model_config, mlp
from distcore.rllib.core.rl_module import RLModule


class DefaultActorCriticModule(RLModule):
    """Policy and value heads over an MLP (or CNN+MLP) trunk: PPO, IMPALA, APPO."""

    def setup(self) -> None:
        cfg = merged_model_config(self.model_config)
        hid, act = list(cfg["fcnet_hiddens"]), cfg["fcnet_activation"]
        n_out = distribution_class_for(self.action_space).required_inputs(self.action_space)
        self.free_log_std = bool(cfg["free_log_std"]) and isinstance(self.action_space, gym.spaces.Box)
        pi_out = n_out // 2 if self.free_log_std else n_out
        self.share = bool(cfg["vf_share_layers"])
        self.pi_encoder, n_in = encoder_for(self.observation_space, cfg)
        self.pi_trunk = mlp(n_in, hid, act)
        self.pi_head = mlp(hid[-1] if hid else n_in, [], act, pi_out, out_gain=0.01)
        if self.free_log_std:
            self.log_std = nn.Parameter(torch.zeros(pi_out))
        if self.share:
            # One trunk: the value head reads the policy trunk's last hidden layer.
            self.vf_head = nn.Linear(hid[-1] if hid else n_in, 1)
        else:
            self.vf_encoder, n_in_v = encoder_for(self.observation_space, cfg)
            self.vf_net = mlp(n_in_v, hid, act, 1, out_gain=1.0)

    def _pi(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk = self.pi_trunk(self.pi_encoder(obs))
        out = self.pi_head(trunk)
        if self.free_log_std:
            out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return out, trunk

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        out, _ = self._pi(batch["obs"])
        return {"action_dist_inputs": out}

    def _forward_train(self, batch: dict[str, Any]) -> dict[str, Any]:
        out, trunk = self._pi(batch["obs"])
        result = {"action_dist_inputs": out}
        if self.share:
            result["vf_preds"] = self.vf_head(trunk).squeeze(-1)
        return result

    def compute_values(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.share:
            return self.vf_head(self._pi(batch["obs"])[1]).squeeze(-1)
        return self.vf_net(self.vf_encoder(batch["obs"])).squeeze(-1)


class DefaultQModule(RLModule):
    """Q-network for DQN; dueling heads (value + advantage) when ``model_config["dueling"]``."""

    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise TypeError(f"DQN needs a Discrete action space, got {self.action_space!r}")
        cfg = merged_model_config({"fcnet_activation": "relu", **self.model_config})
        hid, act = list(cfg["fcnet_hiddens"]), cfg["fcnet_activation"]
        self.dueling = bool(cfg.get("dueling", True))
        n = int(self.action_space.n)
        self.encoder, n_in = encoder_for(self.observation_space, cfg)
        self.trunk = mlp(n_in, hid, act)
        size = hid[-1] if hid else n_in
        self.adv_head = nn.Linear(size, n)
        if self.dueling:
            self.value_head = nn.Linear(size, 1)

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.trunk(self.encoder(obs))
        adv = self.adv_head(h)
        if not self.dueling:
            return adv
        return self.value_head(h) + adv - adv.mean(-1, keepdim=True)

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        q = self.q_values(batch["obs"])
        return {"q_values": q, "actions": q.argmax(-1), "action_dist_inputs": q}

    def _forward_exploration(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = self._forward(batch)
        eps = float(batch.get("epsilon", 0.0))
        if eps > 0:
            actions = out["actions"]
            random_mask = torch.rand(actions.shape[0], device=actions.device) < eps
            random_actions = torch.randint(0, int(self.action_space.n), actions.shape, device=actions.device)
            out["actions"] = torch.where(random_mask, random_actions, actions)
        return out


class DefaultSACModule(RLModule):
    """SAC: a squashed-Gaussian policy and twin Q-networks Q(s, a)."""

    squash_actions = True

    def setup(self) -> None:
        if not (isinstance(self.action_space, gym.spaces.Box) and len(self.action_space.shape) == 1):
            raise TypeError(f"SAC needs a 1-D Box action space, got {self.action_space!r}")
        if not (np.all(np.isfinite(self.action_space.low)) and np.all(np.isfinite(self.action_space.high))):
            raise TypeError("SAC needs finite action bounds (low/high) to squash actions into")
        cfg = merged_model_config({"fcnet_activation": "relu", **self.model_config})
        hid, act = list(cfg["fcnet_hiddens"]), cfg["fcnet_activation"]
        n_act = int(self.action_space.shape[0])
        self.encoder, n_in = encoder_for(self.observation_space, cfg)
        self.pi_net = mlp(n_in, hid, act, 2 * n_act)
        self.q1 = mlp(n_in + n_act, hid, act, 1)
        self.q2 = mlp(n_in + n_act, hid, act, 1)
        # Buffers (not saved in the state dict): they follow the module to its device.
        self.register_buffer("_low", torch.as_tensor(self.action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("_high", torch.as_tensor(self.action_space.high, dtype=torch.float32),
                             persistent=False)

    def _forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"action_dist_inputs": self.pi_net(self.encoder(batch["obs"]))}

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Q-networks see actions normalized to [-1, 1].
        a = (actions - self._low) * 2.0 / (self._high - self._low) - 1.0
        x = torch.cat([self.encoder(obs), a], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def policy_parameters(self) -> list[nn.Parameter]:
        return list(self.pi_net.parameters())

    def q_parameters(self) -> list[nn.Parameter]:
        return list(self.q1.parameters()) + list(self.q2.parameters()) + list(self.encoder.parameters())
