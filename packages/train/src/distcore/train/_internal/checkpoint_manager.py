"""Bookkeeping of persisted checkpoints: numbering, ranking by score, which to delete.

Pure logic over (index, metrics) pairs: the trainer asks it what to delete
after each new checkpoint and persists its state next to the checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distcore.train._internal.config import CheckpointConfig


def checkpoint_dir_name(index: int) -> str:
    return f"checkpoint_{index:06d}"


@dataclass
class TrackedCheckpoint:
    index: int
    metrics: dict[str, Any]

    @property
    def dir_name(self) -> str:
        return checkpoint_dir_name(self.index)


@dataclass
class CheckpointManager:
    """Keeps the ``num_to_keep`` best checkpoints (by score or recency) plus the latest."""

    config: CheckpointConfig
    kept: list[TrackedCheckpoint] = field(default_factory=list)
    latest: TrackedCheckpoint | None = None
    next_index: int = 0

    def _score(self, tracked: TrackedCheckpoint) -> tuple[int, float]:
        attr = self.config.checkpoint_score_attribute
        if attr is None:
            return (1, float(tracked.index))
        value = tracked.metrics.get(attr)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return (0, float(tracked.index))  # unscored ones rank below every scored one
        return (1, float(value) if self.config.checkpoint_score_order == "max" else -float(value))

    def register(self, index: int, metrics: dict[str, Any]) -> list[str]:
        """Record the new checkpoint ``index``; returns the directory names to delete."""
        tracked = TrackedCheckpoint(index, dict(metrics))
        self.kept.append(tracked)
        self.latest = tracked
        self.next_index = max(self.next_index, index + 1)
        num = self.config.num_to_keep
        if num is None or len(self.kept) <= num:
            return []
        ranked = sorted(self.kept, key=self._score, reverse=True)
        keep = ranked[:num]
        if tracked not in keep:
            keep.append(tracked)  # the latest stays for fault tolerance
        dropped = [t for t in self.kept if t not in keep]
        self.kept = [t for t in self.kept if t in keep]
        return [t.dir_name for t in dropped]

    def best_first(self) -> list[TrackedCheckpoint]:
        return sorted(self.kept, key=self._score, reverse=True)

    def to_state(self) -> dict[str, Any]:
        return {
            "kept": [[t.dir_name, t.metrics] for t in self.best_first()],
            "indices": [t.index for t in self.kept],
            "latest": self.latest.dir_name if self.latest else None,
            "latest_index": self.latest.index if self.latest else None,
            "next_index": self.next_index,
        }

    @classmethod
    def from_state(cls, config: CheckpointConfig, state: dict[str, Any]) -> CheckpointManager:
        mgr = cls(config)
        by_name = {name: metrics for name, metrics in state.get("kept", [])}
        for index in state.get("indices", []):
            mgr.kept.append(TrackedCheckpoint(index, by_name.get(checkpoint_dir_name(index), {})))
        latest_index = state.get("latest_index")
        for t in mgr.kept:
            if t.index == latest_index:
                mgr.latest = t
        mgr.next_index = int(state.get("next_index", 0))
        return mgr
