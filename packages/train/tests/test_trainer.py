"""TorchTrainer on a real local cluster (gloo on CPU): training, equivalence, checkpoints, failures."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time

import numpy as np
import pandas as pd
import pytest
import torch

from distcore import train
from distcore.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    TrainingFailedError,
)
from distcore.train._internal.errors import CollectiveTimeoutError, InsufficientResourcesError
from distcore.train.torch import TorchConfig, TorchTrainer, prepare_data_loader, prepare_model

pytestmark = pytest.mark.integration


def _regression_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([[1.5], [-2.0], [0.5], [1.0]]) + 0.3 * torch.sin(3 * x[:, :1]))
    return x, y


def mlp_loop(config):
    torch.manual_seed(0)
    x, y = _regression_data()
    loader = prepare_data_loader(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=config["batch_size"], shuffle=True))
    model = prepare_model(torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for epoch in range(config["epochs"]):
        total, count = 0.0, 0
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            count += len(xb)
        # the mean loss over all ranks' samples
        stats = torch.tensor([total, float(count)])
        torch.distributed.all_reduce(stats)
        train.report({"epoch": epoch, "loss": (stats[0] / stats[1]).item(),
                      "world_size": train.get_context().get_world_size()})


@pytest.mark.parametrize("num_workers", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_mlp_regression_trains_to_a_loss_threshold(cluster, tmp_path, num_workers) -> None:
    result = TorchTrainer(
        mlp_loop, train_loop_config={"epochs": 12, "batch_size": 64 // num_workers},
        scaling_config=ScalingConfig(num_workers=num_workers),
        run_config=RunConfig(name="mlp", storage_path=str(tmp_path), verbose=0),
    ).fit()
    df = result.metrics_dataframe
    assert result.error is None and result.metrics["world_size"] == num_workers
    assert list(df["epoch"]) == list(range(12))
    var_y = float(_regression_data()[1].var())
    assert df["loss"].iloc[0] > 0.3 * var_y  # it really started untrained
    assert result.metrics["loss"] < 0.05 * var_y, df["loss"].tolist()
    # result.json / progress.csv hold one row per report
    with open(os.path.join(result.path, "result.json")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["epoch"] for r in rows] == list(range(12))
    csv = pd.read_csv(os.path.join(result.path, "progress.csv"))
    np.testing.assert_allclose(csv["loss"], df["loss"])


def equivalence_loop(config):
    x, y = _regression_data(64)
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1)
    model = prepare_model(model)
    loader = prepare_data_loader(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=config["global_batch"] // train.get_context().get_world_size(),
        shuffle=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(config["epochs"]):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    module = model.module if hasattr(model, "module") else model
    train.report({"weight": module.weight.detach().flatten().tolist(), "bias": module.bias.item()})


def test_distributed_matches_single_process_with_the_same_global_batch(cluster, tmp_path) -> None:
    cfg = {"global_batch": 16, "epochs": 3}
    result = TorchTrainer(equivalence_loop, train_loop_config=cfg, scaling_config=ScalingConfig(num_workers=2),
                          run_config=RunConfig(name="eq", storage_path=str(tmp_path), verbose=0)).fit()
    # the same training in this process, one worker, the whole global batch
    x, y = _regression_data(64)
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(cfg["epochs"]):
        for i in range(0, 64, 16):
            # DistributedSampler(shuffle=False) gives rank r the indices r, r+2, ...: the global
            # batch of step k is rows 16k..16k+15, the same set single-process training sees.
            xb, yb = x[i:i + 16], y[i:i + 16]
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    np.testing.assert_allclose(result.metrics["weight"], model.weight.detach().flatten().tolist(), rtol=1e-5, atol=1e-6)
    assert result.metrics["bias"] == pytest.approx(model.bias.item(), rel=1e-5, abs=1e-6)


def checkpoint_loop(config):
    ctx = train.get_context()
    start = 0
    ckpt = train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            start = torch.load(os.path.join(d, "state.pt"))["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        if config.get("kill_at") == epoch and ctx.get_world_rank() == 1 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if ctx.get_world_rank() == 0:
                torch.save({"epoch": epoch}, os.path.join(d, "state.pt"))
                ck = Checkpoint.from_directory(d)
            if config.get("sharded"):  # every rank uploads its own shard of the state
                with open(os.path.join(d, f"shard{ctx.get_world_rank()}.txt"), "w") as f:
                    f.write(str(epoch))
                ck = Checkpoint.from_directory(d)
            train.report({"epoch": epoch, "start": start, "score": config.get("scores", {}).get(str(epoch), epoch)},
                         checkpoint=ck)
        time.sleep(config.get("sleep", 0))


def test_checkpoints_are_numbered_kept_by_score_and_reported(cluster, tmp_path) -> None:
    scores = {"0": 5, "1": 9, "2": 1, "3": 7, "4": 3}
    result = TorchTrainer(
        checkpoint_loop, train_loop_config={"epochs": 5, "scores": scores, "sharded": True},
        scaling_config=ScalingConfig(num_workers=2),
        # a URI works as well as a path
        run_config=RunConfig(name="ckpt", storage_path=f"file://{tmp_path}", verbose=0, checkpoint_config=CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="max")),
    ).fit()
    run = tmp_path / "ckpt"
    kept = sorted(p for p in os.listdir(run) if p.startswith("checkpoint_0"))
    # best two by score (epochs 1 and 3) plus the latest (epoch 4)
    assert kept == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    assert not (run / ".staging").exists()
    assert result.checkpoint.path == str(run / "checkpoint_000004")
    assert [m["score"] for _, m in result.best_checkpoints] == [9, 7, 3]
    with result.best_checkpoints[0][0].as_directory() as d:
        assert torch.load(os.path.join(d, "state.pt"))["epoch"] == 1
        # both ranks' shards were merged into the one checkpoint
        assert sorted(f for f in os.listdir(d) if f.startswith("shard")) == ["shard0.txt", "shard1.txt"]
    assert list(result.metrics_dataframe["checkpoint_dir_name"]) == [f"checkpoint_{i:06d}" for i in range(5)]


@pytest.mark.slow
def test_killed_worker_restarts_the_gang_from_the_latest_checkpoint(cluster, tmp_path, capsys) -> None:
    cfg = {"epochs": 5, "kill_at": 3, "marker": str(tmp_path / "killed"), "sleep": 0.2}
    result = TorchTrainer(
        checkpoint_loop, train_loop_config=cfg, scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="ft", storage_path=str(tmp_path), failure_config=FailureConfig(max_failures=1)),
    ).fit()
    assert os.path.exists(cfg["marker"])
    assert len(result.failures) == 1 and "died" in result.failures[0]
    assert "restarting from checkpoint_" in capsys.readouterr().out
    df = result.metrics_dataframe
    assert result.metrics["epoch"] == 4
    restarted = df[df["start"] > 0]
    assert len(restarted) > 0
    first = restarted.iloc[0]
    # the restart resumed right after the checkpoint it was given
    assert first["epoch"] == first["start"]
    before = df.loc[:restarted.index[0] - 1]
    last_ckpt_epoch = before.dropna(subset=["checkpoint_dir_name"])["epoch"].max()
    assert first["start"] == last_ckpt_epoch + 1


def raising_loop(config):
    ctx = train.get_context()
    for step in range(3):
        train.report({"step": step})
    if ctx.get_world_rank() == 1:
        raise ValueError("boom on purpose")
    time.sleep(0.5)


def test_user_exception_names_the_rank_and_carries_its_traceback(cluster, tmp_path) -> None:
    with pytest.raises(TrainingFailedError) as info:
        TorchTrainer(raising_loop, scaling_config=ScalingConfig(num_workers=2),
                     run_config=RunConfig(name="raise", storage_path=str(tmp_path), verbose=0)).fit()
    text = str(info.value)
    assert "rank 1" in text and "ValueError: boom on purpose" in text
    assert "raising_loop" in text  # the worker's traceback
    assert info.value.result.metrics["step"] == 2
    assert str(tmp_path / "raise") in text


def hanging_collective_loop(config):
    if train.get_context().get_world_rank() == 0:
        torch.distributed.all_reduce(torch.ones(1))
    else:
        time.sleep(8)


def test_hung_collective_times_out_naming_the_waiting_ranks(cluster, tmp_path) -> None:
    start = time.monotonic()
    with pytest.raises(TrainingFailedError) as info:
        TorchTrainer(hanging_collective_loop, scaling_config=ScalingConfig(num_workers=2),
                     torch_config=TorchConfig(timeout_s=2),
                     run_config=RunConfig(name="hang", storage_path=str(tmp_path), verbose=0)).fit()
    assert time.monotonic() - start < 60
    cause = info.value.__cause__
    assert isinstance(cause, CollectiveTimeoutError), repr(cause)
    assert "ranks [0] were waiting" in str(cause) and "rank 1 was still running" in str(cause)


def test_a_gang_that_cannot_fit_fails_fast_naming_the_shortfall(cluster, tmp_path) -> None:
    start = time.monotonic()
    with pytest.raises(InsufficientResourcesError, match=r"short by \{CPU: 4\}"):
        TorchTrainer(raising_loop, scaling_config=ScalingConfig(num_workers=8),
                     run_config=RunConfig(name="big", storage_path=str(tmp_path), verbose=0)).fit()
    with pytest.raises(InsufficientResourcesError, match="GPU"):
        TorchTrainer(raising_loop, scaling_config=ScalingConfig(num_workers=1, use_gpu=True),
                     run_config=RunConfig(name="gpu", storage_path=str(tmp_path), verbose=0)).fit()
    assert time.monotonic() - start < 10


def test_bad_arguments_are_rejected_at_construction() -> None:
    with pytest.raises(TypeError, match="train_loop_per_worker"):
        TorchTrainer("not a function")
    with pytest.raises(ValueError, match="zero arguments or one"):
        TorchTrainer(lambda a, b: None)
    with pytest.raises(TypeError, match="scaling_config"):
        TorchTrainer(lambda: None, scaling_config={"num_workers": 2})
    with pytest.raises(TypeError, match="datasets"):
        TorchTrainer(lambda: None, datasets={"train": [1, 2, 3]})


def test_both_trainers_check_their_arguments_the_same_way() -> None:
    """DataParallelTrainer and TorchTrainer share one argument check; each names its backend argument."""
    from distcore.train import DataParallelTrainer
    from distcore.train.torch import TorchConfig

    for cls in (DataParallelTrainer, TorchTrainer):
        with pytest.raises(TypeError, match="run_config must be a RunConfig, got dict"):
            cls(lambda: None, run_config={"name": "x"})
        with pytest.raises(TypeError, match="unexpected keyword argument 'num_workers'"):
            cls(lambda: None, num_workers=2)
        trainer = cls(lambda c: None, train_loop_config={"a": 1}, scaling_config=ScalingConfig(num_workers=3),
                      metadata={"m": 1})
        assert trainer.train_loop_config == {"a": 1} and trainer.scaling_config.num_workers == 3
        assert trainer.metadata == {"m": 1} and trainer.datasets == {}
    with pytest.raises(TypeError, match="pass the backend's config as torch_config="):
        TorchTrainer(lambda: None, backend_config=TorchConfig())
    with pytest.raises(TypeError, match="torch_config must be a TorchConfig"):
        TorchTrainer(lambda: None, torch_config=object())
    assert isinstance(TorchTrainer(lambda: None).backend_config, TorchConfig)
    cfg = TorchConfig(backend="gloo")
    assert DataParallelTrainer(lambda: None, backend_config=cfg).backend_config is cfg


def counting_loop(config):
    start = 0
    ckpt = train.get_checkpoint()
    if ckpt:
        start = ckpt.get_metadata()["epoch"] + 1
    for epoch in range(start, config["epochs"]):
        with tempfile.TemporaryDirectory() as d:
            ck = Checkpoint.from_directory(d)
            ck.set_metadata({"epoch": epoch})
            train.report({"epoch": epoch}, checkpoint=ck if train.get_context().get_world_rank() == 0 else None)


@pytest.mark.slow
def test_a_second_fit_with_the_same_name_continues_the_run(cluster, tmp_path) -> None:
    def fit(epochs):
        return TorchTrainer(counting_loop, train_loop_config={"epochs": epochs},
                            scaling_config=ScalingConfig(num_workers=1),
                            run_config=RunConfig(name="again", storage_path=str(tmp_path), verbose=0)).fit()

    first = fit(2)
    second = fit(4)
    assert first.path == second.path
    assert list(second.metrics_dataframe["epoch"]) == [0, 1, 2, 3]
    assert list(second.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4]
    assert second.checkpoint.get_metadata() == {"epoch": 3}


def test_default_run_names_are_unique() -> None:
    from distcore.train.data_parallel_trainer import default_run_name

    names = {default_run_name("TorchTrainer") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("TorchTrainer_") for n in names)


def test_fit_inside_a_session_forwards_rank0_reports_to_it(cluster, tmp_path) -> None:
    from distcore.train import TrainContext, session

    class Outer:  # what tune installs in a trial
        def __init__(self):
            self.reports = []

        def report(self, metrics, checkpoint=None):
            self.reports.append((metrics, checkpoint))

        def get_checkpoint(self):
            return None

        def get_context(self):
            return TrainContext()

        def get_dataset_shard(self, name):
            return None

    outer = Outer()
    session.set_session(outer)
    try:
        TorchTrainer(counting_loop, train_loop_config={"epochs": 3}, scaling_config=ScalingConfig(num_workers=2),
                     run_config=RunConfig(name="nested", storage_path=str(tmp_path), verbose=0)).fit()
    finally:
        session.set_session(None)
    assert [m["epoch"] for m, _ in outer.reports] == [0, 1, 2]
    assert all(c is not None and c.get_metadata()["epoch"] == m["epoch"] for m, c in outer.reports)


@pytest.mark.slow
def test_run_config_stop_ends_the_run_when_a_metric_reaches_it(cluster, tmp_path) -> None:
    result = TorchTrainer(counting_loop, train_loop_config={"epochs": 50}, scaling_config=ScalingConfig(num_workers=2),
                          run_config=RunConfig(name="stop", storage_path=str(tmp_path), verbose=0,
                                               stop={"epoch": 2})).fit()
    assert result.error is None
    assert list(result.metrics_dataframe["epoch"]) == [0, 1, 2]
    assert result.checkpoint.get_metadata() == {"epoch": 2}
