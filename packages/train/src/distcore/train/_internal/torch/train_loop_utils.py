"""Helpers for the training function: device, DDP model, distributed data loader, reproducibility."""

from __future__ import annotations

import os
import random
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def get_device() -> torch.device:
    """This worker's device: its GPU (``cuda:N``) when it was given one, else the CPU."""
    if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("",):
        return torch.device(f"cuda:{torch.cuda.current_device()}")
    return torch.device("cpu")


def get_devices() -> list[torch.device]:
    """Every device of this worker."""
    if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", ""):
        return [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    return [torch.device("cpu")]


def prepare_model(model: torch.nn.Module, move_to_device: bool | torch.device = True,
                  parallel_strategy: str | None = "ddp",
                  parallel_strategy_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """Move ``model`` to this worker's device and wrap it in DistributedDataParallel (when world size > 1).

    Example::

        model = train.torch.prepare_model(MyNet())
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"prepare_model expects a torch.nn.Module, got {type(model).__name__}")
    if parallel_strategy not in (None, "ddp"):
        raise ValueError(f"parallel_strategy must be 'ddp' or None, got {parallel_strategy!r}")
    device = move_to_device if isinstance(move_to_device, torch.device) else get_device()
    if move_to_device:
        model = model.to(device)
    _, world_size = _world()
    if parallel_strategy == "ddp" and world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        kwargs = dict(parallel_strategy_kwargs or {})
        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device])
            kwargs.setdefault("output_device", device)
        model = DistributedDataParallel(model, **kwargs)
    return model


def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        moved = [_move(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


class _DeviceDataLoader:
    """Iterates a DataLoader, moving each batch to the device; advances a DistributedSampler's epoch."""

    def __init__(self, loader: DataLoader, device: torch.device) -> None:
        self._loader = loader
        self._device = device
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Any:
        sampler = self._loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(self._epoch)
        self._epoch += 1
        for batch in self._loader:
            yield _move(batch, self._device)


def prepare_data_loader(data_loader: DataLoader, add_dist_sampler: bool = True,
                        move_to_device: bool = True) -> Any:
    """Give ``data_loader`` a DistributedSampler (each rank reads its own part) and move batches to the device.

    Example::

        loader = train.torch.prepare_data_loader(DataLoader(dataset, batch_size=64, shuffle=True))
    """
    if not isinstance(data_loader, DataLoader):
        raise TypeError(f"prepare_data_loader expects a torch DataLoader, got {type(data_loader).__name__}")
    rank, world_size = _world()
    loader = data_loader
    if add_dist_sampler and world_size > 1 and not isinstance(loader.sampler, DistributedSampler) \
            and loader.batch_sampler is not None:
        shuffle = isinstance(loader.sampler, RandomSampler)
        sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle)
        loader = DataLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
            timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
            persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
        )
    if move_to_device:
        return _DeviceDataLoader(loader, get_device())
    return loader


def enable_reproducibility(seed: int = 0) -> None:
    """Seed python, numpy and torch, and make torch pick deterministic algorithms."""
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
