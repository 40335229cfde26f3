"""RLModules: the torch models that act in env runners and learn in learners."""

from distcore.rllib.core.rl_module import Columns, MultiRLModule, RLModule, RLModuleSpec

__all__ = ["Columns", "MultiRLModule", "RLModule", "RLModuleSpec"]
