"""Callbacks: subclass :class:`RLlibCallback` and pass it to ``config.callbacks(MyCallback)``.

Example::

    class CountIterations(RLlibCallback):
        def on_train_result(self, *, algorithm, result, **kwargs):
            result["my_counter"] = result["training_iteration"] * 10
"""

from __future__ import annotations

from typing import Any


class RLlibCallback:
    """Hooks called by the Algorithm in the driver process."""

    def on_algorithm_init(self, *, algorithm: Any, **kwargs: Any) -> None:
        """After the algorithm has built its runners and learners."""

    def on_sample_end(self, *, algorithm: Any, samples: list[dict], **kwargs: Any) -> None:
        """After each batch of env runner samples arrives in the driver."""

    def on_episode_end(self, *, algorithm: Any, episode_return: float, episode_length: int,
                       **kwargs: Any) -> None:
        """For each finished episode, when its sample reaches the driver."""

    def on_train_result(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        """After each ``train()`` iteration; may add keys to ``result``."""

    def on_evaluate_end(self, *, algorithm: Any, evaluation_metrics: dict[str, Any], **kwargs: Any) -> None:
        """After ``evaluate()``."""


DefaultCallbacks = RLlibCallback
