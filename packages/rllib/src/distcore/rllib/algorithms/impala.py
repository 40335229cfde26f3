"""IMPALA: asynchronous sampling; the learner corrects for policy lag with V-trace.

Env runners keep one sample request in flight each; the driver takes whichever
fragments are ready, learns on them and broadcasts new weights, without waiting for
slow runners. Example::

    from distcore.rllib.algorithms.impala import IMPALAConfig

    config = (IMPALAConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, rollout_fragment_length=50)
              .training(lr=5e-4, train_batch_size=500))
    algo = config.build()
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from distcore.rllib._internal.learner import Learner, to_numpy
from distcore.rllib._internal.postprocessing import compute_vtrace
from distcore.rllib.algorithms.algorithm import Algorithm
from distcore.rllib.algorithms.algorithm_config import (
    AlgorithmConfig,
    AlgorithmConfigError,
    NotProvided,
)


class IMPALAConfig(AlgorithmConfig):
    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or IMPALA)
        self.lr = 5e-4
        self.train_batch_size = 500
        self.minibatch_size = None
        self.num_epochs = 1
        self.rollout_fragment_length = 50
        self.vtrace_clip_rho_threshold = 1.0
        self.vtrace_clip_pg_rho_threshold = 1.0
        self.vtrace_lambda = 1.0
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.01
        self.grad_clip = 40.0

    def training(self, *, vtrace_clip_rho_threshold: float = NotProvided,
                 vtrace_clip_pg_rho_threshold: float = NotProvided, vtrace_lambda: float = NotProvided,
                 vf_loss_coeff: float = NotProvided, entropy_coeff: float = NotProvided,
                 **kwargs: Any) -> IMPALAConfig:
        """IMPALA settings: V-trace clip thresholds (rho, pg rho), ``vtrace_lambda``, ``vf_loss_coeff``,
        ``entropy_coeff``, plus the common ones."""
        super().training(**kwargs)
        return self._set(vtrace_clip_rho_threshold=vtrace_clip_rho_threshold,
                         vtrace_clip_pg_rho_threshold=vtrace_clip_pg_rho_threshold, vtrace_lambda=vtrace_lambda,
                         vf_loss_coeff=vf_loss_coeff, entropy_coeff=entropy_coeff)

    def validate(self) -> None:
        super().validate()
        if self.vtrace_clip_rho_threshold <= 0 or self.vtrace_clip_pg_rho_threshold <= 0:
            raise AlgorithmConfigError("V-trace clip thresholds must be > 0")


class IMPALALearner(Learner):
    def vtrace_inputs(self, module: Any, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Value targets and advantages from the current (target) policy, computed once per batch."""
        cfg = self.config
        with torch.no_grad():
            dist = module.get_action_dist(module.forward_train({"obs": b["obs"]})["action_dist_inputs"])
            logp = dist.logp(b["actions"])
            values = module.compute_values({"obs": b["obs"]})
            next_values = module.compute_values({"obs": b["new_obs"]})
        vs, pg_adv = compute_vtrace(to_numpy(b["action_logp"]), to_numpy(logp), to_numpy(b["rewards"]),
                                    to_numpy(values), to_numpy(next_values), to_numpy(b["terminateds"]),
                                    to_numpy(b["segment_ends"]), cfg.gamma, cfg.vtrace_clip_rho_threshold, 1.0,
                                    cfg.vtrace_clip_pg_rho_threshold, cfg.vtrace_lambda)
        return {"vs": self.tensor(vs), "pg_adv": self.tensor(pg_adv), "old_values": values}

    def loss(self, module: Any, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        dist = module.get_action_dist(module.forward_train({"obs": mb["obs"]})["action_dist_inputs"])
        logp = dist.logp(mb["actions"])
        values = module.compute_values({"obs": mb["obs"]})
        pi_loss = -(logp * mb["pg_adv"]).mean()
        vf_loss = 0.5 * (values - mb["vs"]).pow(2).mean()
        entropy = dist.entropy().mean()
        total = pi_loss + cfg.vf_loss_coeff * vf_loss - cfg.entropy_coeff * entropy
        return total, {"policy_loss": float(pi_loss.detach()), "vf_loss": float(vf_loss.detach()), "entropy": float(entropy.detach()),
                       "total_loss": float(total.detach())}

    def update(self, batches: dict[str, dict[str, np.ndarray]], timestep: int = 0, num_minibatches: int = 1,
               **kwargs: Any) -> dict[str, Any]:
        lr = self.update_lr(timestep)
        results: dict[str, Any] = {}
        for mid in self.modules_to_train():
            if mid not in batches:
                continue
            module = self.module[mid]
            b = {k: self.tensor(v) for k, v in batches[mid].items()}
            data = {**b, **self.vtrace_inputs(module, b)}
            n = len(b["rewards"])
            sums: dict[str, float] = {}
            count = 0
            for _ in range(self.config.num_epochs):
                perm = (torch.randperm(n, device=self.device) if num_minibatches > 1
                        else torch.arange(n, device=self.device))
                for idx in torch.tensor_split(perm, max(1, num_minibatches)):
                    mb = {k: v[idx] for k, v in data.items()}
                    loss, stats = self.loss(module, mb)
                    stats["gradients_global_norm"] = self.apply_loss(loss, self.optimizers[mid][0])
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
            results[mid] = {k: v / max(count, 1) for k, v in sums.items()}
            results[mid].update(curr_lr=lr, num_module_steps_trained=n)
        return results


class IMPALA(Algorithm):
    """Asynchronous sampling + V-trace learner."""

    learner_class = IMPALALearner

    @classmethod
    def get_default_config(cls) -> IMPALAConfig:
        return IMPALAConfig(algo_class=cls)

    def setup_algorithm(self) -> None:
        self._pending: list[dict] = []

    def training_step(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        steps = sum(r["env_steps"] for r in self._pending)
        while steps < cfg.train_batch_size:
            ready = self.env_runner_group.sample_async(timeout=cfg.sample_timeout_s)
            self.ingest(ready)
            self._pending.extend(ready)
            steps += sum(r["env_steps"] for r in ready)
        self._timer("env_runner_sampling_timer", time.perf_counter() - started)
        results, self._pending = self._pending, []
        batches = self.concat_batches(results)
        per_module = max(len(b["rewards"]) for b in batches.values())
        num_mb = max(1, per_module // cfg.minibatch_size) if cfg.minibatch_size else 1
        stats = self.update_learners(batches, timestep=self.counters["num_env_steps_sampled_lifetime"],
                                     num_minibatches=num_mb)
        self.counters["num_env_steps_trained_lifetime"] += steps
        self.sync_weights()
        lags = [self.env_runner_group.weights_seq - 1 - r["weights_seq"] for r in results]
        for mid in stats:
            stats[mid]["mean_weights_lag"] = float(np.mean(lags)) if lags else 0.0
        return stats
