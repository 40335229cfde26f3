"""PPO: proximal policy optimization (clipped surrogate, GAE, value clipping, entropy, adaptive KL).

Example::

    from distcore.rllib.algorithms.ppo import PPOConfig

    config = (PPOConfig().environment("CartPole-v1")
              .training(lr=1e-3, train_batch_size=1024, minibatch_size=256, num_epochs=10))
    algo = config.build()
    while algo.train()["env_runners"]["episode_return_mean"] < 475:
        pass
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from distcore.rllib._internal.learner import Learner, to_numpy
from distcore.rllib._internal.postprocessing import compute_gae
from distcore.rllib.algorithms.algorithm import Algorithm
from distcore.rllib.algorithms.algorithm_config import (
    AlgorithmConfig,
    AlgorithmConfigError,
    NotProvided,
)


class PPOConfig(AlgorithmConfig):
    """PPO's settings (RLlib's names and defaults)."""

    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or PPO)
        self.lr = 5e-5
        self.train_batch_size = 4000
        self.minibatch_size = 128
        self.num_epochs = 30
        self.lambda_ = 1.0
        self.use_gae = True
        self.clip_param = 0.3
        self.vf_clip_param = 10.0
        self.vf_loss_coeff = 1.0
        self.entropy_coeff = 0.0
        self.use_kl_loss = True
        self.kl_coeff = 0.2
        self.kl_target = 0.01

    def training(self, *, lambda_: float = NotProvided, use_gae: bool = NotProvided,
                 clip_param: float = NotProvided, vf_clip_param: float = NotProvided,
                 vf_loss_coeff: float = NotProvided, entropy_coeff: float = NotProvided,
                 use_kl_loss: bool = NotProvided, kl_coeff: float = NotProvided, kl_target: float = NotProvided,
                 **kwargs: Any) -> PPOConfig:
        """PPO settings: ``lambda_`` (GAE), ``clip_param``, ``vf_clip_param``, ``vf_loss_coeff``,
        ``entropy_coeff``, ``use_kl_loss``/``kl_coeff``/``kl_target``, plus the common ones."""
        super().training(**kwargs)
        return self._set(lambda_=lambda_, use_gae=use_gae, clip_param=clip_param, vf_clip_param=vf_clip_param,
                         vf_loss_coeff=vf_loss_coeff, entropy_coeff=entropy_coeff, use_kl_loss=use_kl_loss,
                         kl_coeff=kl_coeff, kl_target=kl_target)

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.lambda_ <= 1.0:
            raise AlgorithmConfigError(f"lambda_ must be in [0, 1], got {self.lambda_}")
        if self.clip_param <= 0:
            raise AlgorithmConfigError(f"clip_param must be > 0, got {self.clip_param}")
        if self.minibatch_size is None:
            raise AlgorithmConfigError("PPO needs minibatch_size (an int <= train_batch_size)")


class PPOLearner(Learner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kl_coeffs = {mid: float(self.config.kl_coeff) for mid in self.module}

    def postprocess(self, module: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Values, old action distribution inputs, GAE advantages and value targets."""
        cfg = self.config
        with torch.no_grad():
            values = module.compute_values({"obs": batch["obs"]})
            next_values = module.compute_values({"obs": batch["new_obs"]})
            old_inputs = module.forward_train({"obs": batch["obs"]})["action_dist_inputs"]
        lam = cfg.lambda_ if cfg.use_gae else 1.0
        adv, targets = compute_gae(to_numpy(batch["rewards"]), to_numpy(values), to_numpy(next_values),
                                   to_numpy(batch["terminateds"]), to_numpy(batch["segment_ends"]), cfg.gamma, lam)
        adv_t = self.tensor(adv)
        # Normalized across all learners' shards when data-parallel.
        adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8) if len(adv_t) > 1 else adv_t
        return {"obs": batch["obs"], "actions": batch["actions"], "advantages": adv_t,
                "value_targets": self.tensor(targets), "vf_preds": values, "old_inputs": old_inputs}

    def loss(self, module: Any, mb: dict[str, torch.Tensor], kl_coeff: float) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        fwd = module.forward_train({"obs": mb["obs"]})
        dist = module.get_action_dist(fwd["action_dist_inputs"])
        old_dist = module.get_action_dist(mb["old_inputs"])
        logp = dist.logp(mb["actions"])
        ratio = torch.exp(logp - old_dist.logp(mb["actions"]))
        adv = mb["advantages"]
        surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - cfg.clip_param, 1 + cfg.clip_param) * adv)
        values = fwd["vf_preds"] if "vf_preds" in fwd else module.compute_values({"obs": mb["obs"]})
        old_v, target = mb["vf_preds"], mb["value_targets"]
        vf_unclipped = (values - target).pow(2)
        clipped_values = old_v + torch.clamp(values - old_v, -cfg.vf_clip_param, cfg.vf_clip_param)
        vf_loss = torch.max(vf_unclipped, (clipped_values - target).pow(2)).mean()
        entropy = dist.entropy().mean()
        policy_loss = -surrogate.mean()
        total = policy_loss + cfg.vf_loss_coeff * vf_loss - cfg.entropy_coeff * entropy
        kl = old_dist.kl(dist).mean()
        if cfg.use_kl_loss:
            total = total + kl_coeff * kl
        return total, {"policy_loss": float(policy_loss.detach()), "vf_loss": float(vf_loss.detach()), "entropy": float(entropy.detach()),
                       "mean_kl_loss": float(kl.detach()), "total_loss": float(total.detach())}

    def update(self, batches: dict[str, dict[str, np.ndarray]], num_minibatches: int = 1,
               timestep: int = 0, **kwargs: Any) -> dict[str, dict[str, float]]:
        cfg = self.config
        lr = self.update_lr(timestep)
        results: dict[str, dict[str, float]] = {}
        for mid in self.modules_to_train():
            if mid not in batches:
                continue
            module = self.module[mid]
            data = self.postprocess(module, {k: self.tensor(v) for k, v in batches[mid].items()})
            n = len(data["advantages"])
            stats_sum: dict[str, float] = {}
            count = 0
            for _ in range(cfg.num_epochs):
                perm = torch.randperm(n, device=self.device)
                for idx in torch.tensor_split(perm, max(1, num_minibatches)):
                    if len(idx) == 0:
                        continue
                    mb = {k: v[idx] for k, v in data.items()}
                    loss, stats = self.loss(module, mb, self.kl_coeffs[mid])
                    stats["gradients_global_norm"] = self.apply_loss(loss, self.optimizers[mid][0])
                    for k, v in stats.items():
                        stats_sum[k] = stats_sum.get(k, 0.0) + v
                    count += 1
            stats = {k: v / max(count, 1) for k, v in stats_sum.items()}
            if cfg.use_kl_loss:
                # Adaptive KL coefficient (as in the PPO paper / RLlib).
                if stats.get("mean_kl_loss", 0.0) > 2.0 * cfg.kl_target:
                    self.kl_coeffs[mid] *= 1.5
                elif stats.get("mean_kl_loss", 0.0) < 0.5 * cfg.kl_target:
                    self.kl_coeffs[mid] *= 0.5
            targets, vpred = data["value_targets"], data["vf_preds"]
            var = float(torch.var(targets)) if n > 1 else 0.0
            stats["vf_explained_var"] = 1.0 - float(torch.var(targets - vpred)) / var if var > 0 else 0.0
            stats["curr_kl_coeff"] = self.kl_coeffs[mid]
            stats["curr_lr"] = lr
            stats["num_module_steps_trained"] = n
            results[mid] = stats
        return results

    def get_extra_state(self) -> dict[str, Any]:
        return {"kl_coeffs": dict(self.kl_coeffs)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kl_coeffs.update(state.get("kl_coeffs", {}))


class PPO(Algorithm):
    """Synchronous PPO: sample ``train_batch_size`` steps, run epochs of minibatch SGD, broadcast."""

    learner_class = PPOLearner

    @classmethod
    def get_default_config(cls) -> PPOConfig:
        return PPOConfig(algo_class=cls)

    def training_step(self) -> dict[str, Any]:
        cfg = self.config
        batches = self.concat_batches(self.sample(cfg.train_batch_size))
        total = sum(len(b["rewards"]) for b in batches.values())
        per_module = max(len(b["rewards"]) for b in batches.values()) if batches else 0
        stats = self.update_learners(batches, num_minibatches=max(1, math.ceil(per_module / cfg.minibatch_size)),
                                     timestep=self.counters["num_env_steps_sampled_lifetime"])
        self.counters["num_env_steps_trained_lifetime"] += total
        self.sync_weights()
        return stats
