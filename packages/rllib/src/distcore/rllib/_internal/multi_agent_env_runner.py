"""Env runner for MultiAgentEnvs: agents map to policies (modules); each module gets its own batch."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from distcore.rllib._internal.env_runner import _to_env_action, resolve_weights
from distcore.rllib._internal.envs import make_env
from distcore.rllib._internal.spaces import preprocess_batch, stack

_COLUMNS = ("obs", "new_obs", "actions", "rewards", "terminateds", "truncateds", "action_logp", "segment_ends")


def _mapping(config: Any, agent_id: Any) -> str:
    if config.policy_mapping_fn is None:
        return next(iter(config.policies))
    pid = config.policy_mapping_fn(agent_id, None)
    if pid not in config.policies:
        raise ValueError(f"policy_mapping_fn mapped agent {agent_id!r} to {pid!r}, which is not in policies "
                         f"{sorted(config.policies)}")
    return pid


def policy_spaces(config: Any) -> dict[str, tuple[Any, Any]]:
    """(observation space, action space) per policy, from the env's agents."""
    env = make_env(config)
    out: dict[str, tuple[Any, Any]] = {}
    for agent in getattr(env, "possible_agents", []):
        pid = _mapping(config, agent)
        if pid not in out:
            out[pid] = (env.get_observation_space(agent), env.get_action_space(agent))
    env.close()
    missing = [pid for pid in config.policies if pid not in out]
    if missing:
        raise ValueError(f"no agent of the env maps to polic(ies) {missing}: check policy_mapping_fn")
    return out


class MultiAgentEnvRunner:
    def __init__(self, config: Any, worker_index: int = 0, module_state: dict | None = None) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.worker_index = worker_index
        if config.seed is not None:
            torch.manual_seed(config.seed + 1000 * worker_index)
        self.envs = [make_env(config, worker_index, i) for i in range(config.num_envs_per_env_runner)]
        self.modules = {pid: config.build_module_spec(obs, act, pid).build()
                        for pid, (obs, act) in policy_spaces(config).items()}
        self.weights_seq = 0
        self.last_weights_object_id: str | None = None
        if module_state is not None:
            self.set_weights(module_state)
        self._obs: list[dict] = []
        for i, env in enumerate(self.envs):
            seed = None if config.seed is None else config.seed + 1000 * worker_index + i
            self._obs.append(env.reset(seed=seed)[0])
        self._ep_return = [0.0] * len(self.envs)
        self._ep_len = [0] * len(self.envs)
        self._episodes: list[tuple[float, int]] = []
        self._agent_to_pid: list[dict] = [{} for _ in self.envs]

    def set_weights(self, state: Any, seq: int = 0) -> int:
        state = resolve_weights(state, self)
        for pid, s in state.items():
            if pid in self.modules:
                self.modules[pid].set_state(s)
        self.weights_seq = seq
        return seq

    def ping(self) -> int:
        return self.worker_index

    def _pid(self, env_index: int, agent: Any) -> str:
        cache = self._agent_to_pid[env_index]
        if agent not in cache:
            cache[agent] = _mapping(self.config, agent)
        return cache[agent]

    def sample(self, num_timesteps: int | None = None, explore: bool = True,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        steps = int(num_timesteps or self.config.get_rollout_fragment_length())
        trajectories: dict[tuple[int, Any], list[dict]] = {}
        finished: dict[str, list[list[dict]]] = {pid: [] for pid in self.modules}
        env_steps = 0
        # complete_episodes: after ``steps`` steps, each env keeps stepping only until its episode ends.
        complete = self.config.batch_mode == "complete_episodes"
        active = [True] * len(self.envs)
        finished_once = [False] * len(self.envs)
        t = 0
        while True:
            if complete and t >= steps:
                active = [a and not f for a, f in zip(active, finished_once, strict=True)]
                if not any(active):
                    break
            elif t >= steps:
                break
            t += 1
            # Group every waiting agent by policy and act in one forward pass per policy.
            keys: dict[str, list[tuple[int, Any]]] = {}
            for e, obs in enumerate(self._obs):
                if not active[e]:
                    continue
                for agent in obs:
                    keys.setdefault(self._pid(e, agent), []).append((e, agent))
            acted: dict[tuple[int, Any], dict] = {}
            actions: list[dict] = [{} for _ in self.envs]
            for pid, members in keys.items():
                module = self.modules[pid]
                obs_pre = preprocess_batch(module.observation_space,
                                           stack([self._obs[e][a] for e, a in members], module.observation_space))
                with torch.no_grad():
                    out = (module.forward_exploration if explore else module.forward_inference)(
                        {"obs": torch.from_numpy(obs_pre), **(extra or {})})
                    if "actions" in out:  # modules that pick actions themselves (DQN's epsilon-greedy)
                        acts = out["actions"]
                        logp = np.zeros(len(members), dtype=np.float32)
                    else:
                        dist = module.get_action_dist(out["action_dist_inputs"])
                        acts = dist.sample() if explore else dist.deterministic_sample()
                        logp = dist.logp(acts).numpy()
                acts_np = acts.numpy()
                for j, (e, a) in enumerate(members):
                    actions[e][a] = _to_env_action(module.action_space, acts_np[j])
                    acted[(e, a)] = {"pid": pid, "obs": obs_pre[j], "actions": acts_np[j], "action_logp": logp[j]}
            for e, env in enumerate(self.envs):
                if not actions[e]:
                    continue
                obs, rew, term, trunc, _ = env.step(actions[e])
                env_steps += 1
                self._ep_len[e] += 1
                all_done = bool(term.get("__all__", False) or trunc.get("__all__", False))
                for a in actions[e]:
                    step = acted[(e, a)]
                    step["rewards"] = float(rew.get(a, 0.0))
                    self._ep_return[e] += step["rewards"]
                    step["terminateds"] = bool(term.get(a, False) or term.get("__all__", False))
                    step["truncateds"] = bool(trunc.get(a, False) or trunc.get("__all__", False)) and not step["terminateds"]
                    next_obs = obs.get(a, self._obs[e][a])
                    module = self.modules[step["pid"]]
                    step["new_obs"] = preprocess_batch(module.observation_space,
                                                       stack([next_obs], module.observation_space))[0]
                    done = step["terminateds"] or step["truncateds"]
                    step["segment_ends"] = done
                    trajectories.setdefault((e, a), []).append(step)
                    if done:
                        finished[step["pid"]].append(trajectories.pop((e, a)))
                if all_done:
                    for key in [k for k in trajectories if k[0] == e]:
                        traj = trajectories.pop(key)
                        traj[-1]["segment_ends"] = True
                        traj[-1]["truncateds"] = not traj[-1]["terminateds"]
                        finished[traj[-1]["pid"]].append(traj)
                    self._episodes.append((self._ep_return[e], self._ep_len[e]))
                    finished_once[e] = True
                    self._ep_return[e], self._ep_len[e] = 0.0, 0
                    self._agent_to_pid[e] = {}
                    self._obs[e] = env.reset()[0]
                else:
                    self._obs[e] = {a: o for a, o in obs.items()
                                    if not (term.get(a, False) or trunc.get(a, False))}
        for traj in trajectories.values():
            traj[-1]["segment_ends"] = True
            finished[traj[-1]["pid"]].append(traj)
        batches = {}
        for pid, trajs in finished.items():
            flat = [s for t in trajs for s in t]
            if flat:
                batches[pid] = {c: np.asarray([s[c] for s in flat]) for c in _COLUMNS}
                for c in ("obs", "new_obs", "rewards", "action_logp"):
                    batches[pid][c] = batches[pid][c].astype(np.float32)
        episodes, self._episodes = self._episodes, []
        return {"batches": batches, "episodes": episodes, "env_steps": env_steps, "weights_seq": self.weights_seq,
                "sample_time_s": time.perf_counter() - started, "worker_index": self.worker_index}

    def stop(self) -> None:
        for env in self.envs:
            env.close()
