"""Environment interfaces: :class:`MultiAgentEnv` and env registration."""

from distcore.rllib._internal.envs import EnvContext, register_env
from distcore.rllib.env.multi_agent_env import MultiAgentEnv, make_multi_agent

__all__ = ["EnvContext", "MultiAgentEnv", "make_multi_agent", "register_env"]
