"""use_gpu=True on real GPUs: device placement, CUDA_VISIBLE_DEVICES per worker, nccl, a training step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from distcore import train
from distcore.train import RunConfig, ScalingConfig
from distcore.train.torch import TorchTrainer, get_device, prepare_data_loader, prepare_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]


def gpu_loop(config):
    device = get_device()
    model = prepare_model(torch.nn.Linear(8, 1))
    x = torch.randn(64, 8)
    y = x.sum(1, keepdim=True)
    loader = prepare_data_loader(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        for xb, yb in loader:
            assert xb.device.type == "cuda"
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    train.report({
        "device": str(device), "param_device": str(next(model.parameters()).device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "backend": torch.distributed.get_backend(), "first_loss": losses[0], "last_loss": losses[-1],
    })


def test_use_gpu_places_each_worker_on_its_gpu_with_nccl(start_cluster, tmp_path) -> None:
    gpus = torch.cuda.device_count()
    start_cluster(num_cpus=2, num_gpus=gpus)
    result = TorchTrainer(gpu_loop, scaling_config=ScalingConfig(num_workers=1, use_gpu=True),
                          run_config=RunConfig(name="gpu", storage_path=str(tmp_path), verbose=0)).fit()
    m = result.metrics
    assert m["device"] == "cuda:0" and m["param_device"] == "cuda:0"
    assert m["cuda_visible_devices"] not in (None, "")
    assert len(m["cuda_visible_devices"].split(",")) == 1
    assert m["backend"] == "nccl"
    assert m["last_loss"] < m["first_loss"]


CLI_SCRIPT = textwrap.dedent("""
    import os
    import torch
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    t = torch.ones(4, device="cuda") * (dist.get_rank() + 1)
    dist.all_reduce(t)
    print(f"backend={dist.get_backend()} visible={os.environ.get('CUDA_VISIBLE_DEVICES')} "
          f"sum={t.sum().item():g} device={t.device}")
    dist.destroy_process_group()
""")


def test_cli_use_gpu_runs_a_torchrun_script_on_nccl(start_cluster, tmp_path) -> None:
    cluster = start_cluster(num_cpus=2, num_gpus=torch.cuda.device_count())
    script = tmp_path / "gpu_script.py"
    script.write_text(CLI_SCRIPT)
    with open(os.path.join(cluster["session_dir"], "token")) as f:
        env = dict(os.environ, DISTCORE_AUTH_TOKEN=f.read().strip())
    proc = subprocess.run([sys.executable, "-m", "distcore.train.scripts", "run", "--address", cluster["address"],
                           "--num-workers", "1", "--use-gpu", str(script)],
                          env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[rank 0] backend=nccl visible=0 sum=4 device=cuda:0" in proc.stdout, proc.stdout
