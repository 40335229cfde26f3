"""Train a small CNN on synthetic CIFAR-like images with distcore.train (DDP on CPU workers).

Every class is a fixed random 3x32x32 pattern; each image is its class pattern
plus noise, so the network learns in a few epochs without downloading anything.

Run (starts a local cluster)::

    .venv/bin/python examples/train_torch_cifar_like.py --num-workers 2 --epochs 3

Prints a progress line per epoch, then the final metrics and the run directory
(with result.json, progress.csv and the checkpoints).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import distcore
from distcore import train
from distcore.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from distcore.train.torch import TorchTrainer, prepare_data_loader, prepare_model


def make_images(n: int, seed: int) -> TensorDataset:
    patterns = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = patterns[labels] + 1.5 * torch.randn(n, 3, 32, 32, generator=g)
    return TensorDataset(images, labels)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_loop(config: dict) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = prepare_model(SmallCNN())
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    train_loader = prepare_data_loader(DataLoader(make_images(config["train_size"], 0), batch_size=64, shuffle=True))
    test_loader = prepare_data_loader(DataLoader(make_images(512, 1), batch_size=128))

    start = 0
    checkpoint = train.get_checkpoint()
    if checkpoint:  # resumed after a failure or by TorchTrainer.restore
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"))
        (model.module if hasattr(model, "module") else model).load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1

    for epoch in range(start, config["epochs"]):
        model.train()
        total_loss, seen = 0.0, 0
        for images, labels in train_loader:
            loss = nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(labels)
            seen += len(labels)
        model.eval()
        correct = count = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
                count += len(labels)
        stats = torch.tensor([total_loss, seen, correct, count], dtype=torch.float64)
        torch.distributed.all_reduce(stats)  # every rank's share, summed
        metrics = {"epoch": epoch, "loss": stats[0].item() / stats[1].item(),
                   "accuracy": stats[2].item() / stats[3].item()}
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if train.get_context().get_world_rank() == 0:
                module = model.module if hasattr(model, "module") else model
                torch.save({"model": module.state_dict(), "opt": opt.state_dict(), "epoch": epoch},
                           os.path.join(d, "state.pt"))
                ckpt = Checkpoint.from_directory(d)
            train.report(metrics, checkpoint=ckpt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--storage-path", default=None, help="where the run directory goes (default ~/distcore_results)")
    parser.add_argument("--address", default=None, help="an existing cluster (default: start a local one)")
    args = parser.parse_args()

    distcore.init(address=args.address) if args.address else distcore.init()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"epochs": args.epochs, "lr": args.lr, "train_size": args.train_size},
        scaling_config=ScalingConfig(num_workers=args.num_workers),
        run_config=RunConfig(storage_path=args.storage_path,
                             checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="accuracy")),
    )
    result = trainer.fit()
    print(f"final: loss={result.metrics['loss']:.4f} accuracy={result.metrics['accuracy']:.3f}")
    print(f"run directory: {result.path}")
    print(f"best checkpoint: {result.get_best_checkpoint('accuracy', 'max')}")
    distcore.shutdown()


if __name__ == "__main__":
    main()
