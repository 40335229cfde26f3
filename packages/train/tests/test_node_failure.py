"""A node dying under the gang: the trainer restarts it on the remaining nodes from the latest checkpoint."""

from __future__ import annotations

import os
import tempfile
import threading
import time

import pytest
import torch

import distcore
from distcore import train
from distcore._private.testing import assert_no_leaks, wait_for
from distcore.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from distcore.train.torch import TorchTrainer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def node_loop(config):
    ctx = train.get_context()
    node = distcore.get_runtime_context().get_node_id()
    start = 0
    ckpt = train.get_checkpoint()
    if ckpt:
        start = ckpt.get_metadata()["epoch"] + 1
    with open(os.path.join(config["out"], f"rank{ctx.get_world_rank()}_start{start}"), "w") as f:
        f.write(node)
    for epoch in range(start, config["epochs"]):
        t = torch.ones(1)
        torch.distributed.all_reduce(t)
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if ctx.get_world_rank() == 0:
                ck = Checkpoint.from_directory(d)
                ck.set_metadata({"epoch": epoch})
            train.report({"epoch": epoch, "start": start, "node": node}, checkpoint=ck)
        time.sleep(config["sleep"])


@pytest.fixture
def three_nodes(tmp_path):
    from distcore.cluster_utils import Cluster

    if distcore.is_initialized():
        distcore.shutdown()
    c = Cluster(node_dead_timeout_s=3.0)
    c.add_node(num_cpus=0)
    nodes = [c.add_node(num_cpus=1) for _ in range(3)]
    c.wait_for_nodes()
    c.connect()
    yield c, nodes
    distcore.shutdown()
    c.shutdown()
    assert_no_leaks({c._session_name})


def test_node_death_restarts_the_gang_elsewhere_from_the_checkpoint(three_nodes, tmp_path) -> None:
    cluster, nodes = three_nodes
    out = tmp_path / "out"
    out.mkdir()
    run_dir = tmp_path / "node_ft"
    killed: list[str] = []

    def kill_rank1_node() -> None:
        wait_for(lambda: (run_dir / "checkpoint_000001").exists(), timeout=120)
        victim_id = (out / "rank1_start0").read_text()
        victim = next(n for n in nodes if n.node_id == victim_id)
        killed.append(victim_id)
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill_rank1_node, daemon=True)
    killer.start()
    result = TorchTrainer(
        node_loop, train_loop_config={"epochs": 8, "sleep": 0.5, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=2, placement_strategy="SPREAD"),
        run_config=RunConfig(name="node_ft", storage_path=str(tmp_path), failure_config=FailureConfig(max_failures=2)),
    ).fit()
    killer.join(timeout=10)
    assert killed, "the node was never killed"
    assert len(result.failures) >= 1
    assert result.metrics["epoch"] == 7
    restarted = sorted(p for p in os.listdir(out) if not p.endswith("_start0"))
    assert restarted, os.listdir(out)
    # the restarted gang runs on the surviving nodes only and resumed after a checkpoint
    for name in restarted:
        assert (out / name).read_text() != killed[0]
        assert int(name.rsplit("start", 1)[1]) >= 2
