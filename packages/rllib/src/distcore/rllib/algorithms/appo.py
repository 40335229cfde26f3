"""APPO: asynchronous PPO. IMPALA's asynchronous sampling and V-trace value targets, with
PPO's clipped surrogate (ratio of the learner's policy to the behaviour policy).

Example::

    from distcore.rllib.algorithms.appo import APPOConfig

    config = (APPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2)
              .training(lr=1e-3, clip_param=0.3, num_epochs=2))
    algo = config.build()
"""

from __future__ import annotations

from typing import Any

import torch

from distcore.rllib.algorithms.algorithm_config import NotProvided
from distcore.rllib.algorithms.impala import IMPALA, IMPALAConfig, IMPALALearner


class APPOConfig(IMPALAConfig):
    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or APPO)
        self.clip_param = 0.4
        self.num_epochs = 1
        self.use_kl_loss = False
        self.kl_coeff = 1.0

    def training(self, *, clip_param: float = NotProvided, use_kl_loss: bool = NotProvided,
                 kl_coeff: float = NotProvided, **kwargs: Any) -> APPOConfig:
        """APPO settings: ``clip_param``, ``use_kl_loss``/``kl_coeff``, plus IMPALA's."""
        super().training(**kwargs)
        return self._set(clip_param=clip_param, use_kl_loss=use_kl_loss, kl_coeff=kl_coeff)


class APPOLearner(IMPALALearner):
    def vtrace_inputs(self, module: Any, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().vtrace_inputs(module, b)
        with torch.no_grad():
            inputs = module.forward_train({"obs": b["obs"]})["action_dist_inputs"]
        # Advantages: V-trace lambda-returns minus values (GAE when on-policy); the surrogate applies
        # its own clipped ratio of the learner's policy to the behaviour policy. Normalized per batch.
        adv = out["vs"] - out["old_values"]
        out["pg_adv"] = (adv - adv.mean()) / (adv.std() + 1e-8) if len(adv) > 1 else adv
        out["old_inputs"] = inputs
        return out

    def loss(self, module: Any, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        dist = module.get_action_dist(module.forward_train({"obs": mb["obs"]})["action_dist_inputs"])
        logp = dist.logp(mb["actions"])
        ratio = torch.exp(logp - mb["action_logp"])
        adv = mb["pg_adv"]
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - cfg.clip_param, 1 + cfg.clip_param) * adv)
        values = module.compute_values({"obs": mb["obs"]})
        pi_loss = -surrogate.mean()
        vf_loss = 0.5 * (values - mb["vs"]).pow(2).mean()
        entropy = dist.entropy().mean()
        total = pi_loss + cfg.vf_loss_coeff * vf_loss - cfg.entropy_coeff * entropy
        kl = module.get_action_dist(mb["old_inputs"]).kl(dist).mean()
        if cfg.use_kl_loss:
            total = total + cfg.kl_coeff * kl
        return total, {"policy_loss": float(pi_loss.detach()), "vf_loss": float(vf_loss.detach()), "entropy": float(entropy.detach()),
                       "mean_kl_loss": float(kl.detach()), "total_loss": float(total.detach())}


class APPO(IMPALA):
    learner_class = APPOLearner

    @classmethod
    def get_default_config(cls) -> APPOConfig:
        return APPOConfig(algo_class=cls)
