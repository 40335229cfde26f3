"""GPU paths of distcore.data on a real GPU: a num_gpus=1 actor pool sees CUDA, iter_torch_batches
moves batches to the device. Skipped (with the reason) where no GPU is present."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import distcore.data as dd


def _gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_gpu_count() == 0, reason="no NVIDIA GPU on this machine (nvidia-smi finds none)"),
]


@pytest.fixture
def gpu_cluster(start_cluster):
    return start_cluster(num_cpus=2)  # num_gpus detected


class OnGpu:
    def __init__(self):
        import torch

        self.device = torch.device("cuda")
        self.w = torch.ones(4, 1, device=self.device)

    def __call__(self, batch):
        import torch

        x = torch.as_tensor(np.stack([batch["id"]] * 4, axis=1), dtype=torch.float32, device=self.device)
        return {"id": batch["id"], "y": (x @ self.w).squeeze(1).cpu().numpy()}


def test_gpu_actor_pool_runs_on_cuda(gpu_cluster) -> None:
    ds = dd.range(1000, override_num_blocks=4).map_batches(OnGpu, concurrency=1, num_gpus=1, batch_size=100)
    out = ds.to_pandas().sort_values("id")
    np.testing.assert_allclose(out["y"], out["id"] * 4.0)


def test_iter_torch_batches_to_cuda(gpu_cluster) -> None:
    import torch

    batches = list(dd.range(64).iter_torch_batches(batch_size=16, device="cuda"))
    assert all(b["id"].device.type == "cuda" for b in batches)
    assert int(torch.cat([b["id"] for b in batches]).sum().item()) == sum(range(64))


def test_pool_needing_more_gpus_than_exist_fails_fast(gpu_cluster) -> None:
    with pytest.raises(dd.InsufficientResourcesError, match="GPU"):
        dd.range(10).map_batches(OnGpu, concurrency=64, num_gpus=1).take_all()
