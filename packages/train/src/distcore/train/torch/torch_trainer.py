"""``TorchTrainer``: a DataParallelTrainer whose workers form a torch.distributed process group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.config import RunConfig, ScalingConfig
from distcore.train._internal.torch.backend import TorchConfig
from distcore.train.data_parallel_trainer import DataConfig, DataParallelTrainer


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
    worker a GPU (``CUDA_VISIBLE_DEVICES``) and nccl.
    """

    _default_backend_config = TorchConfig

    def __init__(
        self,
        train_loop_per_worker: Callable[..., Any],
        *,
        train_loop_config: dict[str, Any] | None = None,
        torch_config: TorchConfig | None = None,
        scaling_config: ScalingConfig | None = None,
        run_config: RunConfig | None = None,
        datasets: dict[str, Any] | None = None,
        dataset_config: DataConfig | None = None,
        resume_from_checkpoint: Checkpoint | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if torch_config is not None and not isinstance(torch_config, TorchConfig):
            raise TypeError(f"torch_config must be a TorchConfig, got {type(torch_config).__name__}")
        super().__init__(
            train_loop_per_worker, train_loop_config=train_loop_config,
            backend_config=torch_config or TorchConfig(), scaling_config=scaling_config,
            run_config=run_config, datasets=datasets, dataset_config=dataset_config,
            resume_from_checkpoint=resume_from_checkpoint, metadata=metadata,
        )
