"""DQN: double Q-learning, dueling heads, n-step returns, prioritized replay.

Example::

    from distcore.rllib.algorithms.dqn import DQNConfig

    config = (DQNConfig().environment("CartPole-v1")
              .training(lr=1e-3, n_step=3, double_q=True, dueling=True,
                        replay_buffer_config={"type": "PrioritizedReplayBuffer", "capacity": 50000}))
    algo = config.build()
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from distcore.rllib._internal.learner import Learner, to_numpy
from distcore.rllib._internal.postprocessing import compute_n_step
from distcore.rllib._internal.replay_buffers import PrioritizedReplayBuffer, ReplayBuffer
from distcore.rllib._internal.schedules import check_schedule, schedule_value
from distcore.rllib.algorithms.algorithm import Algorithm
from distcore.rllib.algorithms.algorithm_config import (
    AlgorithmConfig,
    AlgorithmConfigError,
    NotProvided,
)
from distcore.rllib.core.rl_module import RLModule


class DQNConfig(AlgorithmConfig):
    def __init__(self, algo_class: Any = None) -> None:
        super().__init__(algo_class=algo_class or DQN)
        self.lr = 5e-4
        self.train_batch_size = 32
        self.minibatch_size = None
        self.rollout_fragment_length = 4
        self.replay_buffer_config: dict[str, Any] = {"type": "PrioritizedReplayBuffer", "capacity": 50000,
                                                     "alpha": 0.6, "beta": 0.4}
        self.num_steps_sampled_before_learning_starts = 1000
        self.target_network_update_freq = 500
        self.tau = 1.0
        self.double_q = True
        self.dueling = True
        self.n_step = 1
        self.epsilon: Any = [[0, 1.0], [10000, 0.05]]
        self.training_intensity: float | None = None
        self.td_error_loss_fn = "huber"
        self.grad_clip = 40.0
        self.store_buffer_in_checkpoints = False

    def training(self, *, replay_buffer_config: dict | None = NotProvided,
                 num_steps_sampled_before_learning_starts: int = NotProvided,
                 target_network_update_freq: int = NotProvided, tau: float = NotProvided,
                 double_q: bool = NotProvided, dueling: bool = NotProvided, n_step: int = NotProvided,
                 epsilon: Any = NotProvided, training_intensity: float | None = NotProvided,
                 td_error_loss_fn: str = NotProvided, store_buffer_in_checkpoints: bool = NotProvided,
                 **kwargs: Any) -> DQNConfig:
        """DQN settings: replay buffer, learning start, target updates, double/dueling, n-step,
        epsilon schedule ``[[t, eps], ...]``, ``training_intensity`` (trained / sampled steps),
        ``store_buffer_in_checkpoints`` (``save()`` also writes every policy's replay buffer)."""
        super().training(**kwargs)
        if replay_buffer_config is not NotProvided and replay_buffer_config is not None:
            replay_buffer_config = {**self.replay_buffer_config, **replay_buffer_config}
        return self._set(replay_buffer_config=replay_buffer_config,
                         num_steps_sampled_before_learning_starts=num_steps_sampled_before_learning_starts,
                         target_network_update_freq=target_network_update_freq, tau=tau, double_q=double_q,
                         dueling=dueling, n_step=n_step, epsilon=epsilon, training_intensity=training_intensity,
                         td_error_loss_fn=td_error_loss_fn, store_buffer_in_checkpoints=store_buffer_in_checkpoints)

    def validate(self) -> None:
        super().validate()
        check_schedule("epsilon", self.epsilon)
        if self.replay_buffer_config.get("type") not in ("PrioritizedReplayBuffer", "ReplayBuffer",
                                                         "EpisodeReplayBuffer", "PrioritizedEpisodeReplayBuffer"):
            raise AlgorithmConfigError(f"replay_buffer_config type {self.replay_buffer_config.get('type')!r}: "
                                       "use 'PrioritizedReplayBuffer' or 'ReplayBuffer'")
        if not isinstance(self.n_step, int) or self.n_step < 1:
            raise AlgorithmConfigError(f"n_step must be an int >= 1, got {self.n_step!r}")
        if self.td_error_loss_fn not in ("huber", "mse"):
            raise AlgorithmConfigError(f"td_error_loss_fn must be 'huber' or 'mse', got {self.td_error_loss_fn!r}")

    def default_module_class(self) -> type[RLModule]:
        from distcore.rllib._internal.default_modules import DefaultQModule

        return DefaultQModule

    def build_module_spec(self, observation_space: Any, action_space: Any, module_id: str | None = None) -> Any:
        spec = super().build_module_spec(observation_space, action_space, module_id)
        spec.model_config = {"dueling": self.dueling, **spec.model_config}
        return spec


def make_replay_buffer(config: dict[str, Any], seed: int | None) -> ReplayBuffer:
    if "Prioritized" in config.get("type", ""):
        return PrioritizedReplayBuffer(int(config["capacity"]), alpha=float(config.get("alpha", 0.6)), seed=seed)
    return ReplayBuffer(int(config["capacity"]), seed=seed)


def n_step_transitions(batch: dict[str, np.ndarray], n: int, gamma: float) -> dict[str, np.ndarray]:
    """Sampled steps -> replayable n-step transitions (reward sum, bootstrap obs, discount)."""
    rewards, last, term, disc = compute_n_step(batch["rewards"], batch["terminateds"], batch["segment_ends"],
                                               n, gamma)
    return {"obs": batch["obs"], "actions": batch["actions"], "rewards": rewards,
            "new_obs": batch["new_obs"][last], "terminateds": term.astype(np.float32), "discounts": disc}


class DQNLearner(Learner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target = {mid: copy.deepcopy(m) for mid, m in self.module.items()}
        for t in self.target.values():
            t.requires_grad_(False)

    def update_target(self, tau: float | None = None) -> None:
        tau = self.config.tau if tau is None else tau
        for mid, module in self.module.items():
            with torch.no_grad():
                for tp, p in zip(self.target[mid].parameters(), module.parameters(), strict=True):
                    tp.mul_(1.0 - tau).add_(p, alpha=tau)

    def update(self, batches: dict[str, dict[str, np.ndarray]], timestep: int = 0,
               **kwargs: Any) -> dict[str, Any]:
        cfg = self.config
        self.update_lr(timestep)
        results: dict[str, Any] = {}
        for mid, batch in batches.items():
            module, target = self.module[mid], self.target[mid]
            b = {k: self.tensor(v) for k, v in batch.items()}
            q_all = module.q_values(b["obs"])
            q = q_all.gather(1, b["actions"].long().unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                next_target = target.q_values(b["new_obs"])
                if cfg.double_q:
                    best = module.q_values(b["new_obs"]).argmax(1, keepdim=True)
                else:
                    best = next_target.argmax(1, keepdim=True)
                next_q = next_target.gather(1, best).squeeze(1)
                y = b["rewards"] + b["discounts"] * (1.0 - b["terminateds"]) * next_q
            td = q - y
            if cfg.td_error_loss_fn == "huber":
                per_item = torch.nn.functional.huber_loss(q, y, reduction="none")
            else:
                per_item = td.pow(2)
            loss = (b["weights"] * per_item).mean()
            norm = self.apply_loss(loss, self.optimizers[mid][0])
            td = td.detach()
            results[mid] = {"qf_loss": float(loss.detach()), "qf_mean": float(q.detach().mean()),
                            "td_error_mean": float(td.abs().mean()),
                            "gradients_global_norm": norm, "td_error": to_numpy(td.abs())}
        return results

    def get_extra_state(self) -> dict[str, Any]:
        return {"target": {mid: t.get_state() for mid, t in self.target.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for mid, s in state.get("target", {}).items():
            self.target[mid].set_state(s)


class DQN(Algorithm):
    """Sample a fragment, store n-step transitions, replay prioritized minibatches, update targets."""

    learner_class = DQNLearner

    @classmethod
    def get_default_config(cls) -> DQNConfig:
        return DQNConfig(algo_class=cls)

    def setup_algorithm(self) -> None:
        cfg = self.config
        # One replay buffer per module (policy): multi-agent policies never share transitions.
        self.replay_buffers: dict[str, ReplayBuffer] = {
            mid: make_replay_buffer(cfg.replay_buffer_config, None if cfg.seed is None else cfg.seed + i)
            for i, mid in enumerate(self.module_specs)}
        self._last_target_update = 0
        self._trained_steps_owed = 0.0

    @property
    def replay_buffer(self) -> ReplayBuffer:
        """The single-agent replay buffer (``replay_buffers["default_policy"]``)."""
        if len(self.replay_buffers) != 1:
            raise AttributeError(f"{type(self).__name__} is multi-agent: use replay_buffers[policy_id] "
                                 f"(policies {sorted(self.replay_buffers)})")
        return next(iter(self.replay_buffers.values()))

    def _modules_to_train(self) -> list[str]:
        return list(self.config.policies_to_train or self.module_specs)

    def training_step(self) -> dict[str, Any]:
        cfg = self.config
        t = self.counters["num_env_steps_sampled_lifetime"]
        eps = schedule_value(cfg.epsilon, t)
        results = self.sample(1, extra={"epsilon": eps})
        sampled = sum(r["env_steps"] for r in results)
        for mid, batch in self.concat_batches(results).items():
            self.replay_buffers[mid].add(n_step_transitions(batch, cfg.n_step, cfg.gamma))
        train_ids = [mid for mid in self._modules_to_train() if len(self.replay_buffers[mid])]
        stats: dict[str, Any] = {mid: {"epsilon": eps} for mid in self.module_specs}
        t = self.counters["num_env_steps_sampled_lifetime"]
        if t < cfg.num_steps_sampled_before_learning_starts or not train_ids:
            return stats
        intensity = cfg.training_intensity
        if intensity is None:
            num_updates = 1
        else:
            self._trained_steps_owed += sampled * intensity / cfg.train_batch_size
            num_updates = int(self._trained_steps_owed)
            self._trained_steps_owed -= num_updates
        beta = float(cfg.replay_buffer_config.get("beta", 0.4))
        for _ in range(num_updates):
            batches, indexes = {}, {}
            for mid in train_ids:
                batches[mid] = self.replay_buffers[mid].sample(cfg.train_batch_size, beta=beta)
                indexes[mid] = batches[mid].pop("batch_indexes")
            out = self.update_learners(batches, timestep=t)
            for mid, module_stats in out.items():
                td = module_stats.pop("td_error")
                buffer = self.replay_buffers[mid]
                if isinstance(buffer, PrioritizedReplayBuffer):
                    buffer.update_priorities(indexes[mid], td + 1e-6)
                stats[mid].update(module_stats)
            self.counters["num_env_steps_trained_lifetime"] += cfg.train_batch_size * len(batches)
        if cfg.target_network_update_freq > 0 and t - self._last_target_update >= cfg.target_network_update_freq:
            self.learner_group.foreach("update_target")
            self._last_target_update = t
        if num_updates:
            self.sync_weights()
        for mid, buffer in self.replay_buffers.items():
            stats[mid]["replay_buffer_size"] = len(buffer)
        return stats

    def get_algorithm_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"last_target_update": self._last_target_update,
                                 "trained_steps_owed": self._trained_steps_owed}
        if self.config.store_buffer_in_checkpoints:
            state["replay_buffers"] = {mid: b.get_state() for mid, b in self.replay_buffers.items()}
        return state

    def set_algorithm_state(self, state: dict[str, Any]) -> None:
        self._last_target_update = int(state.get("last_target_update", self._last_target_update))
        self._trained_steps_owed = float(state.get("trained_steps_owed", self._trained_steps_owed))
        for mid, buffer_state in (state.get("replay_buffers") or {}).items():
            if mid in self.replay_buffers:
                self.replay_buffers[mid].set_state(buffer_state)

    def step(self) -> dict[str, Any]:
        # One iteration runs training steps until min_sample_timesteps_per_iteration (default 1000) more steps.
        start = self.counters["num_env_steps_sampled_lifetime"]
        target = max(1, self.config.min_sample_timesteps_per_iteration or 1000)
        result = super().step()
        while self.counters["num_env_steps_sampled_lifetime"] - start < target:
            result = super().step()
        return result
