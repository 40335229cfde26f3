"""Replay buffers: uniform and prioritized (proportional, sum/min segment trees)."""

from __future__ import annotations

from typing import Any

import numpy as np


class ReplayBuffer:
    """A ring buffer of transitions stored column-wise in numpy arrays."""

    def __init__(self, capacity: int, seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._columns: dict[str, np.ndarray] = {}
        self._next = 0
        self._size = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self._size

    def add(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Append a batch of transitions; returns the slots they went to."""
        n = len(next(iter(batch.values())))
        if not self._columns:
            for key, col in batch.items():
                col = np.asarray(col)
                self._columns[key] = np.zeros((self.capacity,) + col.shape[1:], dtype=col.dtype)
        idx = (self._next + np.arange(n)) % self.capacity
        for key, col in batch.items():
            self._columns[key][idx] = col
        self._next = int((self._next + n) % self.capacity)
        self._size = min(self._size + n, self.capacity)
        return idx

    def _gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self._columns.items()}

    def sample(self, num_items: int, **kwargs: Any) -> dict[str, np.ndarray]:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self._rng.integers(0, self._size, size=num_items)
        out = self._gather(idx)
        out["batch_indexes"] = idx
        out["weights"] = np.ones(num_items, dtype=np.float32)
        return out

    def get_state(self) -> dict[str, Any]:
        """Contents, write position and sampling RNG (arrays + JSON-able values)."""
        return {"type": type(self).__name__, "capacity": self.capacity, "columns": dict(self._columns),
                "next": self._next, "size": self._size, "rng": self._rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        if int(state.get("capacity", self.capacity)) != self.capacity:
            raise ValueError(f"replay buffer state has capacity {state['capacity']}, this buffer {self.capacity}")
        self._columns = {k: np.array(v) for k, v in state["columns"].items()}
        self._next, self._size = int(state["next"]), int(state["size"])
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]


class _SegmentTree:
    """A complete binary tree over ``capacity`` leaves (power of two) reducing with sum or min."""

    def __init__(self, capacity: int, op: Any, neutral: float) -> None:
        size = 1
        while size < capacity:
            size *= 2
        self.size = size
        self.op, self.neutral = op, neutral
        self.tree = np.full(2 * size, neutral, dtype=np.float64)

    def set(self, idx: np.ndarray, values: np.ndarray) -> None:
        pos = np.asarray(idx, dtype=np.int64) + self.size
        self.tree[pos] = np.asarray(values, dtype=np.float64)  # the last write wins for repeated slots
        pos = np.unique(pos // 2)
        while pos[0] >= 1:
            self.tree[pos] = self.op(self.tree[2 * pos], self.tree[2 * pos + 1])
            if pos[0] == 1:
                break
            pos = np.unique(pos // 2)

    def root(self) -> float:
        return float(self.tree[1])

    def find_prefix(self, mass: float) -> int:
        """The smallest leaf i with sum(leaves[:i+1]) > mass (sum trees only)."""
        pos = 1
        while pos < self.size:
            left = 2 * pos
            if self.tree[left] > mass:
                pos = left
            else:
                mass -= self.tree[left]
                pos = left + 1
        return pos - self.size


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016).

    P(i) = p_i**alpha / sum_k p_k**alpha; importance weights w_i = (N * P(i))**-beta,
    divided by the largest possible weight. New items get the highest priority seen.
    """

    def __init__(self, capacity: int, alpha: float = 0.6, seed: int | None = None) -> None:
        super().__init__(capacity, seed)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self._sum = _SegmentTree(capacity, np.add, 0.0)
        self._min = _SegmentTree(capacity, np.minimum, float("inf"))
        self._max_priority = 1.0

    def add(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        idx = super().add(batch)
        p = np.full(len(idx), self._max_priority ** self.alpha)
        self._sum.set(idx, p)
        self._min.set(idx, p)
        return idx

    def sample(self, num_items: int, beta: float = 0.4, **kwargs: Any) -> dict[str, np.ndarray]:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        total = self._sum.root()
        # Stratified: one uniform draw in each of num_items equal slices of the total mass.
        bounds = (np.arange(num_items) + self._rng.random(num_items)) * (total / num_items)
        idx = np.array([min(self._sum.find_prefix(m), self._size - 1) for m in bounds.tolist()], dtype=np.int64)
        probs = self._sum.tree[idx + self._sum.size] / total
        p_min = self._min.root() / total
        max_weight = (p_min * self._size) ** (-beta)
        weights = (probs * self._size) ** (-beta) / max_weight
        out = self._gather(idx)
        out["batch_indexes"] = idx
        out["weights"] = weights.astype(np.float32)
        return out

    def update_priorities(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        priorities = np.asarray(priorities, dtype=np.float64)
        if np.any(priorities <= 0):
            raise ValueError("priorities must be > 0 (add a small epsilon to TD errors)")
        self._max_priority = max(self._max_priority, float(priorities.max()))
        p = priorities ** self.alpha
        self._sum.set(idx, p)
        self._min.set(idx, p)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(sum=self._sum.tree.copy(), min=self._min.tree.copy(), max_priority=self._max_priority,
                     alpha=self.alpha)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._sum.tree, self._min.tree = np.array(state["sum"], dtype=np.float64), np.array(state["min"], dtype=np.float64)
        self._max_priority = float(state["max_priority"])
