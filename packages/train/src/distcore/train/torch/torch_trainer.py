"""``TorchTrainer``: a DataParallelTrainer whose workers form a torch.distributed process group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

from distcore.train._internal.torch.backend import TorchConfig
from distcore.train.data_parallel_trainer import DataParallelTrainer, TrainerOptions


class TorchTrainer(DataParallelTrainer):
    """Runs a PyTorch training function with DDP on ``scaling_config.num_workers`` workers.

    Example::

        def loop(config):
            model = train.torch.prepare_model(torch.nn.Linear(8, 1))
            opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
            for epoch in range(config["epochs"]):
                ...
                train.report({"epoch": epoch, "loss": loss.item()})

        result = TorchTrainer(loop, train_loop_config={"lr": 0.1, "epochs": 5},
                              scaling_config=ScalingConfig(num_workers=2)).fit()

    CPU workers use the gloo backend; ``ScalingConfig(use_gpu=True)`` gives each
    worker a GPU (``CUDA_VISIBLE_DEVICES``) and nccl. The other keyword arguments
    are :class:`DataParallelTrainer`'s (``train_loop_config``, ``scaling_config``,
    ``run_config``, ``datasets``, ``dataset_config``, ``resume_from_checkpoint``,
    ``metadata``).
    """

    _default_backend_config = TorchConfig
    _backend_config_type = TorchConfig

    def __init__(self, train_loop_per_worker: Callable[..., Any], *, torch_config: TorchConfig | None = None,
                 **options: Unpack[TrainerOptions]) -> None:
        self._init(train_loop_per_worker, "torch_config", torch_config, dict(options))
