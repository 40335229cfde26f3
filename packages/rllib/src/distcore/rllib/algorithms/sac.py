"""SAC: soft actor-critic with twin Q-networks, target networks and automatic entropy tuning.

Example::

    from distcore.rllib.algorithms.sac import SACConfig

    config = SACConfig().environment("Pendulum-v1").training(actor_lr=1e-3, critic_lr=1e-3)
    algo = config.build()
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from distcore.rllib._internal.learner import Learner, to_numpy
from distcore.rllib.algorithms.algorithm_config import (
    AlgorithmConfig,
    AlgorithmConfigError,
    NotProvided,
)
from distcore.rllib.algorithms.dqn import DQN, DQNConfig
from distcore.rllib.core.rl_module import RLModule


class SACConfig(DQNConfig):
    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or SAC)
        self.actor_lr = 3e-4
        self.critic_lr = 3e-4
        self.alpha_lr = 3e-4
        self.lr = 3e-4
        self.tau = 5e-3
        self.initial_alpha = 1.0
        self.target_entropy: Any = "auto"
        self.train_batch_size = 256
        self.rollout_fragment_length = 1
        self.n_step = 1
        self.num_steps_sampled_before_learning_starts = 1500
        self.target_network_update_freq = 0
        self.replay_buffer_config = {"type": "ReplayBuffer", "capacity": 100000, "alpha": 0.6, "beta": 0.4}
        self.training_intensity = None
        self.grad_clip = None
        self.epsilon = 0.0

    def training(self, *, actor_lr: float = NotProvided, critic_lr: float = NotProvided,
                 alpha_lr: float = NotProvided, initial_alpha: float = NotProvided,
                 target_entropy: Any = NotProvided, **kwargs: Any) -> SACConfig:
        """SAC settings: ``actor_lr``, ``critic_lr``, ``alpha_lr``, ``initial_alpha``,
        ``target_entropy`` ("auto" = -action dims), ``tau``, ``n_step``, replay buffer, ..."""
        super().training(**kwargs)
        return self._set(actor_lr=actor_lr, critic_lr=critic_lr, alpha_lr=alpha_lr, initial_alpha=initial_alpha,
                         target_entropy=target_entropy)

    def validate(self) -> None:
        super().validate()
        if self.initial_alpha <= 0:
            raise AlgorithmConfigError(f"initial_alpha must be > 0, got {self.initial_alpha}")

    def default_module_class(self) -> type[RLModule]:
        from distcore.rllib._internal.default_modules import DefaultSACModule

        return DefaultSACModule

    def build_module_spec(self, observation_space: Any, action_space: Any, module_id: str | None = None) -> Any:
        return AlgorithmConfig.build_module_spec(self, observation_space, action_space, module_id)


class SACLearner(Learner):
    def configure_optimizers(self) -> None:
        cfg = self.config
        self.log_alpha: dict[str, torch.Tensor] = {}
        self.target_entropy: dict[str, float] = {}
        self.target = {}
        for mid, module in self.module.items():
            self.target[mid] = copy.deepcopy(module).requires_grad_(False)
            self.log_alpha[mid] = torch.tensor(float(np.log(cfg.initial_alpha)), device=self.device,
                                               requires_grad=True)
            te = cfg.target_entropy
            self.target_entropy[mid] = -float(np.prod(module.action_space.shape)) if te == "auto" else float(te)
            self.optimizers[mid] = [torch.optim.Adam(module.q_parameters(), lr=cfg.critic_lr),
                                    torch.optim.Adam(module.policy_parameters(), lr=cfg.actor_lr),
                                    torch.optim.Adam([self.log_alpha[mid]], lr=cfg.alpha_lr)]

    def update_lr(self, timestep: int) -> float:
        return float(self.config.actor_lr)

    def update_target(self, tau: float | None = None) -> None:
        tau = self.config.tau if tau is None else tau
        with torch.no_grad():
            for mid, module in self.module.items():
                for tp, p in zip(self.target[mid].parameters(), module.parameters(), strict=True):
                    tp.mul_(1.0 - tau).add_(p, alpha=tau)

    def update(self, batches: dict[str, dict[str, np.ndarray]], timestep: int = 0, **kwargs: Any) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for mid, batch in batches.items():
            module, target = self.module[mid], self.target[mid]
            critic_opt, actor_opt, alpha_opt = self.optimizers[mid]
            b = {k: self.tensor(v) for k, v in batch.items()}
            alpha = self.log_alpha[mid].exp().detach()
            with torch.no_grad():
                next_dist = module.get_action_dist(module.forward_train({"obs": b["new_obs"]})["action_dist_inputs"])
                next_a, next_logp = next_dist.rsample_with_logp()
                tq1, tq2 = target.q(b["new_obs"], next_a)
                y = b["rewards"] + b["discounts"] * (1.0 - b["terminateds"]) * (torch.min(tq1, tq2) - alpha * next_logp)
            q1, q2 = module.q(b["obs"], b["actions"])
            td = q1 - y
            critic_loss = 0.5 * (b["weights"] * ((q1 - y).pow(2) + (q2 - y).pow(2))).mean()
            self.apply_loss(critic_loss, critic_opt)
            dist = module.get_action_dist(module.forward_train({"obs": b["obs"]})["action_dist_inputs"])
            a, logp = dist.rsample_with_logp()
            pq1, pq2 = module.q(b["obs"], a)
            actor_loss = (alpha * logp - torch.min(pq1, pq2)).mean()
            self.apply_loss(actor_loss, actor_opt)
            alpha_loss = -(self.log_alpha[mid] * (logp.detach() + self.target_entropy[mid])).mean()
            self.apply_loss(alpha_loss, alpha_opt)
            self.update_target()
            results[mid] = {"critic_loss": float(critic_loss.detach()), "actor_loss": float(actor_loss.detach()),
                            "alpha_loss": float(alpha_loss.detach()), "alpha_value": float(alpha),
                            "qf_mean": float(q1.detach().mean()), "td_error": to_numpy(td.abs())}
        return results

    def get_extra_state(self) -> dict[str, Any]:
        return {"target": {mid: t.get_state() for mid, t in self.target.items()},
                "log_alpha": {mid: float(v.detach()) for mid, v in self.log_alpha.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for mid, s in state.get("target", {}).items():
            self.target[mid].set_state(s)
        with torch.no_grad():
            for mid, v in state.get("log_alpha", {}).items():
                self.log_alpha[mid].fill_(v)


class SAC(DQN):
    """Off-policy like DQN (replay, n-step); the learner does critic, actor and alpha steps and
    Polyak-averages the target networks every update."""

    learner_class = SACLearner

    @classmethod
    def get_default_config(cls) -> SACConfig:
        return SACConfig(algo_class=cls)
