"""A ``distcore.train`` Trainer as a trainable: each trial runs the trainer (a gang of
workers) with the trial's ``train_loop_config``; the trainer forwards its rank-0
reports (and checkpoints) to the trial's session, so schedulers see every report."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from distcore.tune._internal.resources import PlacementGroupFactory

TUNABLE = ("train_loop_config", "scaling_config")


def is_trainer(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    try:
        from distcore.train import DataParallelTrainer
    except ImportError:
        return False
    return isinstance(obj, DataParallelTrainer)


def _as_scaling_config(value: Any) -> Any:
    from distcore.train import ScalingConfig

    if isinstance(value, dict):
        return ScalingConfig(**value)
    if not isinstance(value, ScalingConfig):
        raise TypeError(f"param_space['scaling_config'] must be a ScalingConfig or a dict, got {type(value).__name__}")
    return value


def _factory(scaling: Any) -> PlacementGroupFactory:
    """The trial's footprint: the trainer's own resources plus one bundle per worker.
    The trainer reserves its gang itself, so the Tuner only accounts for it."""
    bundles = [dict(scaling.trainer_resources_dict) or {"CPU": 0}] + [
        dict(scaling.worker_resources) for _ in range(scaling.num_workers)]
    factory = PlacementGroupFactory(bundles, strategy=scaling.placement_strategy)
    factory._no_placement_group = True  # type: ignore[attr-defined]
    return factory


class TrainerTrainable:
    """The function trainable a Trainer becomes inside a Tuner."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer
        self.__name__ = type(trainer).__name__
        self.__qualname__ = self.__name__

    def _merge_space(self, space: dict[str, Any]) -> dict[str, Any]:
        unknown = [key for key in space if key not in TUNABLE]
        if unknown:
            raise ValueError(f"tuning a {self.__name__}: param_space keys must be among {TUNABLE}, got {unknown}")
        merged = dict(space)
        base = self._trainer.train_loop_config or {}
        if base or "train_loop_config" in space:
            loop = dict(base)
            loop.update(space.get("train_loop_config") or {})
            merged["train_loop_config"] = loop
        return merged

    def _tune_resources(self, config: dict[str, Any]) -> PlacementGroupFactory:
        scaling = config.get("scaling_config")
        return _factory(_as_scaling_config(scaling) if scaling is not None else self._trainer.scaling_config)

    def __call__(self, config: dict[str, Any]) -> None:
        from distcore import tune

        trainer = copy.copy(self._trainer)
        trainer.train_loop_config = dict(config.get("train_loop_config") or trainer.train_loop_config or {})
        if config.get("scaling_config") is not None:
            trainer.scaling_config = _as_scaling_config(config["scaling_config"])
        context = tune.get_context()
        trainer.run_config = dataclasses.replace(trainer.run_config, name="trainer",
                                                 storage_path=context.get_trial_dir(),
                                                 verbose=0, stop=None)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            trainer.resume_from_checkpoint = checkpoint
        result = trainer.fit()
        if result.error is not None:
            raise result.error


def trainer_to_trainable(trainer: Any) -> TrainerTrainable:
    return TrainerTrainable(trainer)
