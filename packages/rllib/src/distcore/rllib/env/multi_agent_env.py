"""Multi-agent envs: every call takes and returns dicts keyed by agent id.

``reset() -> (obs, infos)``; ``step(actions) -> (obs, rewards, terminateds, truncateds, infos)``,
where ``terminateds["__all__"]`` / ``truncateds["__all__"]`` end the episode. An agent
acts on each step it receives an observation. Example::

    MultiAgentCartPole = make_multi_agent("CartPole-v1")
    env = MultiAgentCartPole({"num_agents": 2})
    obs, infos = env.reset(seed=0)          # {0: array(...), 1: array(...)}
    obs, rew, term, trunc, infos = env.step({0: 1, 1: 0})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym


class MultiAgentEnv:
    """Base class of multi-agent envs (set the spaces dicts and agent lists in ``__init__``)."""

    observation_spaces: dict[Any, gym.Space] = {}
    action_spaces: dict[Any, gym.Space] = {}
    possible_agents: list[Any] = []
    agents: list[Any] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        raise NotImplementedError

    def step(self, action_dict: dict[Any, Any]) -> tuple[dict, dict, dict, dict, dict]:
        raise NotImplementedError

    def get_observation_space(self, agent_id: Any) -> gym.Space:
        return self.observation_spaces[agent_id]

    def get_action_space(self, agent_id: Any) -> gym.Space:
        return self.action_spaces[agent_id]

    def close(self) -> None:
        pass


def make_multi_agent(env_name_or_creator: str | Callable[[dict], gym.Env]) -> type[MultiAgentEnv]:
    """A MultiAgentEnv class running ``config["num_agents"]`` independent copies of a single-agent env.

    Agent ``i`` acts in copy ``i``; a copy that ends leaves its agent done; the episode
    ends when every copy has ended.
    """

    class _MultiEnv(MultiAgentEnv):
        def __init__(self, config: dict | None = None) -> None:
            config = dict(config or {})
            num = int(config.pop("num_agents", 2))
            if num < 1:
                raise ValueError(f"num_agents must be >= 1, got {num}")
            if isinstance(env_name_or_creator, str):
                self.envs = [gym.make(env_name_or_creator) for _ in range(num)]
            else:
                self.envs = [env_name_or_creator(config) for _ in range(num)]
            self.possible_agents = list(range(num))
            self.agents = list(self.possible_agents)
            self.observation_spaces = {i: e.observation_space for i, e in enumerate(self.envs)}
            self.action_spaces = {i: e.action_space for i, e in enumerate(self.envs)}
            self._done: set[int] = set()

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            self._done = set()
            self.agents = list(self.possible_agents)
            obs, infos = {}, {}
            for i, env in enumerate(self.envs):
                obs[i], infos[i] = env.reset(seed=None if seed is None else seed + i, options=options)
            return obs, infos

        def step(self, action_dict: dict[Any, Any]) -> tuple[dict, dict, dict, dict, dict]:
            obs, rew, term, trunc, info = {}, {}, {}, {}, {}
            for i, action in action_dict.items():
                if i in self._done:
                    continue
                obs[i], rew[i], term[i], trunc[i], info[i] = self.envs[i].step(action)
                if term[i] or trunc[i]:
                    self._done.add(i)
            all_done = len(self._done) == len(self.envs)
            term["__all__"] = all_done and all(term.get(i, True) for i in obs)
            trunc["__all__"] = all_done and not term["__all__"]
            self.agents = [i for i in self.possible_agents if i not in self._done]
            return obs, rew, term, trunc, info

        def close(self) -> None:
            for env in self.envs:
                env.close()

    name = env_name_or_creator if isinstance(env_name_or_creator, str) else getattr(
        env_name_or_creator, "__name__", "env")
    _MultiEnv.__name__ = f"MultiAgent{str(name).split('-')[0]}"
    _MultiEnv.__qualname__ = _MultiEnv.__name__
    return _MultiEnv
