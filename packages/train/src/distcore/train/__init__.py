"""distcore.train: distributed training on distcore (mirrors ``ray.train``).

Example::

    from distcore import train
    from distcore.train import ScalingConfig, RunConfig
    from distcore.train.torch import TorchTrainer

    def train_loop(config):
        for epoch in range(config["epochs"]):
            train.report({"epoch": epoch, "loss": 1.0 / (epoch + 1)})

    result = TorchTrainer(train_loop, train_loop_config={"epochs": 3},
                          scaling_config=ScalingConfig(num_workers=2)).fit()

``import distcore.train`` does not import torch (``distcore.train.torch`` does)
nor ``distcore.data`` (imported when a run is given ``datasets=``).
"""

from __future__ import annotations

from typing import Any

from distcore.train._internal.callbacks import UserCallback
from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.config import (
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)
from distcore.train._internal.context import TrainContext
from distcore.train._internal.errors import TrainingFailedError
from distcore.train._internal.functions import (
    get_checkpoint,
    get_context,
    get_dataset_shard,
    report,
)
from distcore.train._internal.result import Result
from distcore.train._version import CORE_API_MAX, CORE_API_MIN, __version__
from distcore.util.versions import require_core_api

require_core_api("distcore-train", __version__, api_min=CORE_API_MIN, api_max=CORE_API_MAX)

# Trainer classes load on first use (they pull in the actor machinery, not torch).
_LAZY = {
    "DataParallelTrainer": "distcore.train.data_parallel_trainer",
    "DataConfig": "distcore.train.data_parallel_trainer",
    "Backend": "distcore.train.backend",
    "BackendConfig": "distcore.train.backend",
}

__all__ = [
    "Backend",
    "BackendConfig",
    "Checkpoint",
    "CheckpointConfig",
    "DataConfig",
    "DataParallelTrainer",
    "FailureConfig",
    "Result",
    "RunConfig",
    "ScalingConfig",
    "TrainContext",
    "TrainingFailedError",
    "UserCallback",
    "__version__",
    "get_checkpoint",
    "get_context",
    "get_dataset_shard",
    "report",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distcore.train' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
