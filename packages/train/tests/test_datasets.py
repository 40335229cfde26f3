"""datasets= through distcore.data: streaming shards per worker, on a 2-CPU cluster (the small-machine case)."""

from __future__ import annotations

import json
import os

import pytest

from distcore import data, train
from distcore.train import DataConfig, RunConfig, ScalingConfig
from distcore.train.torch import TorchTrainer

pytestmark = pytest.mark.integration


def shard_loop(config):
    ctx = train.get_context()
    shard = train.get_dataset_shard("train")
    whole = train.get_dataset_shard("valid")
    seen = {}
    for epoch in range(2):
        ids = []
        for batch in shard.iter_torch_batches(batch_size=16):
            ids.extend(int(i) for i in batch["id"])
        seen[epoch] = ids
        train.report({"epoch": epoch, "rows": len(ids)})
    valid = [int(r["id"]) for r in whole.iter_rows()]
    with open(os.path.join(config["out"], f"rank{ctx.get_world_rank()}.json"), "w") as f:
        json.dump({"seen": seen, "valid": valid}, f)


def test_shards_are_disjoint_and_cover_the_dataset_on_a_two_cpu_cluster(start_cluster, tmp_path) -> None:
    start_cluster(num_cpus=2)
    ds = data.range(200, override_num_blocks=8).map_batches(lambda b: {"id": b["id"] * 1})
    valid = data.range(10)
    result = TorchTrainer(
        shard_loop, train_loop_config={"out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),  # 2 workers, 2 CPUs: the data tasks must still run
        datasets={"train": ds, "valid": valid},
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(name="shards", storage_path=str(tmp_path), verbose=0),
    ).fit()
    assert result.metrics["rows"] == 100
    per_rank = []
    for r in range(2):
        with open(tmp_path / f"rank{r}.json") as f:
            per_rank.append(json.load(f))
    for epoch in ("0", "1"):
        a, b = (set(p["seen"][epoch]) for p in per_rank)
        assert len(a) == len(b) == 100 and not a & b
        assert a | b == set(range(200))
    # a dataset not split reaches every worker whole
    assert [p["valid"] for p in per_rank] == [list(range(10))] * 2


def test_get_dataset_shard_names_the_known_datasets(cluster, tmp_path) -> None:
    def loop():
        train.get_dataset_shard("nope")

    with pytest.raises(train.TrainingFailedError, match=r"no dataset named 'nope'.*\['train'\]"):
        TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1), datasets={"train": data.range(4)},
                     run_config=RunConfig(name="noshard", storage_path=str(tmp_path), verbose=0)).fit()
