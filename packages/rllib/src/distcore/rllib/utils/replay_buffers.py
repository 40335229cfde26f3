"""Replay buffers for off-policy algorithms (uniform and prioritized)."""

from distcore.rllib._internal.replay_buffers import PrioritizedReplayBuffer, ReplayBuffer

__all__ = ["PrioritizedReplayBuffer", "ReplayBuffer"]
