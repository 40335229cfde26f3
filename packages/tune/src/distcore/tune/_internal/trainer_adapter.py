"""A ``distcore.train`` Trainer as a trainable: each trial runs the trainer (a gang of
workers) with the trial's ``train_loop_config``; the trainer's reports become the trial's."""

from __future__ import annotations

from typing import Any


def is_trainer(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    try:
        from distcore.train import DataParallelTrainer  # type: ignore[attr-defined]
    except ImportError:
        return False
    return isinstance(obj, DataParallelTrainer)


def trainer_to_trainable(trainer: Any) -> Any:
    raise NotImplementedError("tuning a Trainer needs distcore.train's DataParallelTrainer")
