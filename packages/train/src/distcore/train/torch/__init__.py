"""distcore.train.torch: PyTorch DDP training on distcore (mirrors ``ray.train.torch``).

Example::

    import torch
    from distcore import train
    from distcore.train import ScalingConfig
    from distcore.train.torch import TorchTrainer, prepare_model, prepare_data_loader

    def loop(config):
        model = prepare_model(torch.nn.Linear(4, 1))
        ...
        train.report({"loss": loss.item()})

    TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2)).fit()

Needs PyTorch: ``pip install 'distcore-train[torch]'``.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "distcore.train.torch needs PyTorch, which is not installed: pip install 'distcore-train[torch]'"
    ) from _exc

from distcore.train._internal.torch.backend import TorchConfig
from distcore.train._internal.torch.train_loop_utils import (
    enable_reproducibility,
    get_device,
    get_devices,
    prepare_data_loader,
    prepare_model,
)
from distcore.train.torch.torch_trainer import TorchTrainer

__all__ = [
    "TorchConfig",
    "TorchTrainer",
    "enable_reproducibility",
    "get_device",
    "get_devices",
    "prepare_data_loader",
    "prepare_model",
]
