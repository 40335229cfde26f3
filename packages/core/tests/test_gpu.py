"""GPU paths on a real GPU: detection, CUDA_VISIBLE_DEVICES per worker, torch
sees the assigned device. Skipped (with the reason) where no GPU is present."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import distcore
from distcore._private.testing import wait_for


def _gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_gpu_count() == 0, reason="no NVIDIA GPU on this machine (nvidia-smi finds none)"),
]


@pytest.fixture
def gpu_cluster(start_cluster):
    return start_cluster(num_cpus=2)  # num_gpus detected


def test_gpus_are_detected(gpu_cluster):
    assert distcore.cluster_resources().get("GPU") == _gpu_count()


def test_task_gets_its_gpu_and_torch_sees_it(gpu_cluster):
    torch = pytest.importorskip("torch")
    del torch

    @distcore.remote(num_gpus=1)
    def probe():
        import os

        import torch

        x = torch.ones(1024, device="cuda")
        return os.environ["CUDA_VISIBLE_DEVICES"], distcore.get_gpu_ids(), float(x.sum()), torch.cuda.device_count()

    visible, ids, total, count = distcore.get(probe.remote(), timeout=120)
    assert visible == "0" and ids == [0]
    assert total == 1024.0 and count == 1


def test_fractional_gpus_share_one_device(gpu_cluster):
    @distcore.remote(num_gpus=0.5)
    def visible():
        import os
        import time

        time.sleep(1.0)
        return os.environ["CUDA_VISIBLE_DEVICES"]

    assert distcore.get([visible.remote(), visible.remote()], timeout=120) == ["0", "0"]


def test_actor_holds_its_gpu(gpu_cluster):
    @distcore.remote(num_gpus=1)
    class OnGpu:
        def ids(self):
            import os

            return os.environ["CUDA_VISIBLE_DEVICES"], distcore.get_runtime_context().get_accelerator_ids()

    actor = OnGpu.remote()
    visible, acc = distcore.get(actor.ids.remote(), timeout=120)
    assert visible == "0" and acc == {"GPU": ["0"]}
    wait_for(lambda: distcore.available_resources().get("GPU", 0) == 0, timeout=5,
             message="the actor's GPU should be held while it lives")
