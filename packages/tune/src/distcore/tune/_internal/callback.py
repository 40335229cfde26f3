"""``tune.Callback``: hooks into the experiment loop (``RunConfig(callbacks=[...])``)."""

from __future__ import annotations

from typing import Any


class Callback:
    """Override any hook; each gets ``iteration`` (loop step) and ``trials`` (all trials).

    Example::

        class PrintBest(tune.Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):
                print(trial, result["loss"])
    """

    def setup(self, **info: Any) -> None:
        pass

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        pass

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        pass

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        pass

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        pass

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        pass

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        pass

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        pass
