"""distcore.rllib: reinforcement learning on distcore (mirrors RLlib).

Installed as the ``distcore-rllib`` distribution, next to core's ``distcore``;
import it as ``from distcore import rllib``::

    from distcore.rllib.algorithms.ppo import PPOConfig

    algo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).build()
    print(algo.train()["env_runners"]["episode_return_mean"])
    algo.stop()

Importing it registers "PPO", "DQN", "SAC", "IMPALA" and "APPO" as tune trainables
when distcore.tune provides ``register_trainable``.
"""

from __future__ import annotations

from distcore.rllib._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-rllib", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

from distcore.rllib._internal.checkpoints import CheckpointError  # noqa: E402
from distcore.rllib._internal.envs import register_env  # noqa: E402
from distcore.rllib.algorithms.algorithm import Algorithm  # noqa: E402
from distcore.rllib.algorithms.algorithm_config import (  # noqa: E402
    AlgorithmConfig,
    AlgorithmConfigError,
    GPUNotAvailableError,
)
from distcore.rllib.algorithms.registry import ALGORITHMS, get_algorithm_class, register_with_tune  # noqa: E402
from distcore.rllib.callbacks import RLlibCallback  # noqa: E402
from distcore.rllib.core.rl_module import Columns, MultiRLModule, RLModule, RLModuleSpec  # noqa: E402
from distcore.rllib.env.multi_agent_env import MultiAgentEnv, make_multi_agent  # noqa: E402

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmConfig",
    "AlgorithmConfigError",
    "CheckpointError",
    "Columns",
    "GPUNotAvailableError",
    "MultiAgentEnv",
    "MultiRLModule",
    "RLModule",
    "RLModuleSpec",
    "RLlibCallback",
    "__version__",
    "get_algorithm_class",
    "make_multi_agent",
    "register_env",
]

register_with_tune()
