"""The algorithms: PPO, DQN, SAC, IMPALA, APPO, and their shared base classes."""

from distcore.rllib.algorithms.algorithm import Algorithm
from distcore.rllib.algorithms.algorithm_config import AlgorithmConfig, AlgorithmConfigError

__all__ = ["Algorithm", "AlgorithmConfig", "AlgorithmConfigError"]
