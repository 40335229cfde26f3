"""The torch backend: torch.distributed on the gang (gloo on CPU, nccl on GPUs)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from distcore.train.backend import Backend, BackendConfig, WorkerGroupProtocol, find_free_port


@dataclass
class TorchConfig(BackendConfig):
    """Settings of torch.distributed for ``TorchTrainer``.

    ``backend``: "gloo", "nccl" or None (nccl when every worker has a GPU,
    else gloo). ``timeout_s``: how long a collective may wait for the other
    ranks before it fails (the trainer then reports which ranks waited).
    """

    backend: str | None = None
    init_method: str = "env"
    timeout_s: float = 1800

    def __post_init__(self) -> None:
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"TorchConfig.backend must be 'gloo', 'nccl' or None, got {self.backend!r}")
        if self.init_method not in ("env", "tcp"):
            raise ValueError(f"TorchConfig.init_method must be 'env' or 'tcp', got {self.init_method!r}")
        if not isinstance(self.timeout_s, int | float) or self.timeout_s <= 0:
            raise ValueError(f"TorchConfig.timeout_s must be a number > 0, got {self.timeout_s!r}")

    @property
    def backend_cls(self) -> type[Backend]:
        return TorchBackend


def _setup(env: dict[str, str], backend: str, rank: int, world_size: int, timeout_s: float,
           init_method: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(env)
    if backend == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(0)
    if dist.is_initialized():
        dist.destroy_process_group()
    url = "env://" if init_method == "env" else f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    dist.init_process_group(backend=backend, init_method=url, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def _teardown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class TorchBackend(Backend):
    """Sets MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK... and calls ``init_process_group`` on every worker."""

    preload_modules = ("torch", "torch.distributed")

    def on_start(self, worker_group: WorkerGroupProtocol, backend_config: BackendConfig) -> None:
        assert isinstance(backend_config, TorchConfig)
        workers = worker_group.workers
        backend = backend_config.backend or ("nccl" if all(w.gpu_ids for w in workers) else "gloo")
        master_addr = workers[0].node_ip
        master_port = worker_group.execute_single(0, find_free_port)
        world_size = len(workers)
        per_rank = []
        for w in workers:
            env = {
                "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port), "RANK": str(w.world_rank),
                "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(w.local_rank),
                "LOCAL_WORLD_SIZE": str(w.local_world_size), "NODE_RANK": str(w.node_rank),
                "GROUP_RANK": str(w.node_rank),
            }
            per_rank.append((env, backend, w.world_rank, world_size, backend_config.timeout_s,
                             backend_config.init_method))
        worker_group.execute_each(_setup, per_rank)  # type: ignore[attr-defined]

    def on_shutdown(self, worker_group: WorkerGroupProtocol, backend_config: BackendConfig) -> None:
        worker_group.execute(_teardown, timeout=10)  # type: ignore[call-arg]
