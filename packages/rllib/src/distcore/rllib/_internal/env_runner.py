"""The single-agent env runner: steps ``num_envs`` gymnasium envs with the current module.

It runs in the driver (``num_env_runners=0``) or as an actor. ``sample()`` returns a
flat batch in which each env's steps form contiguous segments (see postprocessing).
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import distcore
from distcore.rllib._internal.envs import make_env
from distcore.rllib._internal.spaces import preprocess_batch, stack

DEFAULT_MODULE_ID = "default_policy"


def resolve_weights(state: Any, runner: Any) -> dict[str, Any]:
    """Weights arrive wrapped as ``(ObjectRef,)`` from remote groups: fetch the one shared object."""
    if isinstance(state, tuple) and len(state) == 1 and isinstance(state[0], distcore.ObjectRef):
        runner.last_weights_object_id = state[0].hex()
        return distcore.get(state[0], timeout=120)
    return state


def _to_env_action(space: gym.Space, action: np.ndarray) -> Any:
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return int(action)
    return action


class EnvRunner:
    """Collects experience from vectorized single-agent envs."""

    def __init__(self, config: Any, worker_index: int = 0, module_state: dict | None = None) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.worker_index = worker_index
        self.num_envs = int(config.num_envs_per_env_runner)
        seed = config.seed
        if seed is not None:
            torch.manual_seed(seed + 1000 * worker_index)
            np.random.seed(seed + 1000 * worker_index)
        self.envs = [make_env(config, worker_index, i) for i in range(self.num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.module = config.build_module_spec(self.observation_space, self.action_space).build()
        self.module.eval()
        if module_state is not None:
            self.set_weights(module_state)
        self.weights_seq = 0
        self.last_weights_object_id: str | None = None
        self._obs: list[Any] = []
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + 1000 * worker_index + i)
            self._obs.append(obs)
        self._ep_return = np.zeros(self.num_envs)
        self._ep_len = np.zeros(self.num_envs, dtype=np.int64)
        self._episodes: list[tuple[float, int]] = []
        self._total_steps = 0

    # -- weights -------------------------------------------------------------------------------
    def set_weights(self, state: Any, seq: int = 0) -> int:
        """Load weights: a state dict, or ``(ObjectRef,)`` of one (the group's single broadcast object)."""
        state = resolve_weights(state, self)
        self.module.set_state(state[DEFAULT_MODULE_ID] if DEFAULT_MODULE_ID in state else state)
        self.weights_seq = seq
        return seq

    def ping(self) -> int:
        return self.worker_index

    def get_weights(self) -> dict[str, Any]:
        return self.module.get_state()

    def weights_info(self) -> tuple[int, str | None]:
        """(sequence number, object id) of the weights this runner last loaded."""
        return self.weights_seq, self.last_weights_object_id

    def get_spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.observation_space, self.action_space

    # -- acting --------------------------------------------------------------------------------
    def _act(self, obs_t: torch.Tensor, explore: bool, extra: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        batch = {"obs": obs_t, **extra}
        with torch.no_grad():
            out = self.module.forward_exploration(batch) if explore else self.module.forward_inference(batch)
            if "actions" in out:
                actions = out["actions"]
                logp = None
            else:
                dist = self.module.get_action_dist(out["action_dist_inputs"])
                actions = dist.sample() if explore else dist.deterministic_sample()
                logp = dist.logp(actions).numpy() if explore else None
        return actions.numpy(), logp

    def sample(self, num_timesteps: int | None = None, explore: bool = True,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Step every env ``num_timesteps`` times (rollout_fragment_length by default)."""
        started = time.perf_counter()
        cfg = self.config
        steps = int(num_timesteps or cfg.get_rollout_fragment_length())
        complete = cfg.batch_mode == "complete_episodes"
        n = self.num_envs
        space = self.observation_space
        extra = dict(extra or {})
        obs_pre = preprocess_batch(space, stack(self._obs, space))
        cols: dict[str, list] = {k: [] for k in ("obs", "new_obs", "actions", "rewards", "terminateds",
                                                 "truncateds", "action_logp", "active")}
        active = np.ones(n, dtype=bool)
        finished_once = np.zeros(n, dtype=bool)
        t = 0
        while True:
            if complete:
                if t >= steps:
                    active &= ~finished_once
                if not active.any():
                    break
            elif t >= steps:
                break
            extra["timestep"] = self._total_steps
            actions, logp = self._act(torch.from_numpy(obs_pre), explore, extra)
            rewards = np.zeros(n, dtype=np.float32)
            terms = np.zeros(n, dtype=bool)
            truncs = np.zeros(n, dtype=bool)
            next_raw = list(self._obs)
            for i in range(n):
                if not active[i]:
                    continue
                obs, r, term, trunc, _ = self.envs[i].step(_to_env_action(self.action_space, actions[i]))
                rewards[i], terms[i], truncs[i] = r, term, trunc
                next_raw[i] = obs
                self._ep_return[i] += r
                self._ep_len[i] += 1
                if term or trunc:
                    self._episodes.append((float(self._ep_return[i]), int(self._ep_len[i])))
                    self._ep_return[i], self._ep_len[i] = 0.0, 0
                    finished_once[i] = True
                    self._obs[i], _ = self.envs[i].reset()
                else:
                    self._obs[i] = obs
            self._total_steps += int(active.sum())
            next_pre = preprocess_batch(space, stack(next_raw, space))
            cols["obs"].append(obs_pre)
            cols["new_obs"].append(next_pre)
            cols["actions"].append(actions)
            cols["rewards"].append(rewards)
            cols["terminateds"].append(terms)
            cols["truncateds"].append(truncs)
            cols["action_logp"].append(logp if logp is not None else np.zeros(n, dtype=np.float32))
            cols["active"].append(active.copy())
            dones = terms | truncs
            if dones.any():
                obs_pre = next_pre.copy()
                reset_idx = np.nonzero(dones)[0]
                obs_pre[reset_idx] = preprocess_batch(space, stack([self._obs[i] for i in reset_idx], space))
            else:
                obs_pre = next_pre
            t += 1
        batch = self._flatten(cols)
        episodes, self._episodes = self._episodes, []
        return {"batches": {DEFAULT_MODULE_ID: batch}, "episodes": episodes, "env_steps": len(batch["rewards"]),
                "weights_seq": self.weights_seq, "sample_time_s": time.perf_counter() - started,
                "worker_index": self.worker_index}

    @staticmethod
    def _flatten(cols: dict[str, list]) -> dict[str, np.ndarray]:
        """Time-major [T, N] columns -> env-major flat arrays of the active steps, with segment ends."""
        active = np.stack(cols.pop("active"))  # [T, N]
        stacked = {k: np.stack(v) for k, v in cols.items()}
        T, n = active.shape
        seg_end = stacked["terminateds"] | stacked["truncateds"]
        # The last active step of each env ends its segment.
        nxt_active = np.vstack([active[1:], np.zeros((1, n), dtype=bool)])
        seg_end = seg_end | (active & ~nxt_active)
        mask = active.T.reshape(-1)
        out = {}
        for k, v in stacked.items():
            v = np.swapaxes(v, 0, 1).reshape((T * n,) + v.shape[2:])
            out[k] = v[mask]
        out["segment_ends"] = np.swapaxes(seg_end, 0, 1).reshape(-1)[mask]
        return out

    def stop(self) -> None:
        for env in self.envs:
            env.close()
