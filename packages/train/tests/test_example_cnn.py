"""The README's example (examples/train_torch_cifar_like.py): a small CNN on generated images trains."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cloudpickle
import pytest

from distcore.train import RunConfig, ScalingConfig
from distcore.train.torch import TorchTrainer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train_torch_cifar_like.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("train_torch_cifar_like", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)  # workers cannot import it by name
    return module


@pytest.mark.slow
def test_small_cnn_on_generated_images_trains_to_a_loss_threshold(cluster, tmp_path) -> None:
    example = _load_example()
    result = TorchTrainer(
        example.train_loop, train_loop_config={"epochs": 2, "lr": 2e-3, "train_size": 2048},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="cnn", storage_path=str(tmp_path), verbose=0),
    ).fit()
    losses = result.metrics_dataframe["loss"].tolist()
    assert losses[0] > losses[-1]
    assert result.metrics["loss"] < 0.8 and result.metrics["accuracy"] > 0.9, result.metrics
    assert result.checkpoint is not None
