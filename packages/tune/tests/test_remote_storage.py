"""Experiments on remote storage: a file:// URI, an fsspec memory:// URI, a pyarrow SubTreeFileSystem."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pyarrow.fs as pafs
import pytest

from distcore import tune

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _staging(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTCORE_TUNE_STAGING_DIR", str(tmp_path / "staging"))


def counting(config):
    """Counts to 4 with a checkpoint per step; fails once at step 3 unless config["marker"] exists."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, "step.json")) as f:
            start = json.load(f)["step"]
    for step in range(start + 1, 5):
        if step == 3 and not os.path.exists(config["marker"]):
            raise RuntimeError("planned failure at step 3")
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "step.json"), "w") as f:
            json.dump({"step": step}, f)
        tune.report({"step": step, "score": config["x"] * step, "started_at": start},
                    checkpoint=tune.Checkpoint.from_directory(d))
        shutil.rmtree(d)


def _run(storage_path, name, marker, filesystem=None, x=(1, 2)):
    return tune.Tuner(counting, param_space={"x": tune.grid_search(list(x)), "marker": marker},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem,
                                                verbose=0)).fit()


def test_file_uri_is_a_local_experiment(cluster, tmp_path) -> None:
    marker = tmp_path / "go"
    marker.touch()
    grid = _run(f"file://{tmp_path}/store", "exp", str(marker))
    assert grid.num_errors == 0
    exp = tmp_path / "store" / "exp"
    assert (exp / "experiment_state.json").exists()
    assert tune.Tuner.can_restore(f"file://{exp}") and tune.Tuner.can_restore(exp)
    best = grid.get_best_result()
    assert best.path.startswith(str(exp)) and os.path.isdir(best.checkpoint.path)
    assert not (tmp_path / "staging").exists()  # a local experiment needs no staging copy


def test_memory_uri_mirrors_and_restores_from_the_remote_copy(cluster, tmp_path) -> None:
    import fsspec

    uri = "memory://tune-test-bucket/experiments"
    marker = tmp_path / "go"
    grid = _run(uri, "exp", str(marker))
    assert grid.num_errors == 2  # both trials failed at step 3, with checkpoints up to step 2
    mem = fsspec.filesystem("memory")
    root = "/tune-test-bucket/experiments/exp"
    names = set(mem.ls(root, detail=False))
    assert {f"{root}/experiment_state.json", f"{root}/tuner.pkl"} <= names
    trial_dirs = [n for n in names if mem.isdir(n)]
    assert len(trial_dirs) == 2
    for d in trial_dirs:
        inside = {os.path.basename(p) for p in mem.ls(d, detail=False)}
        assert {"params.json", "result.json", "progress.csv", "error.txt", "checkpoint_000001"} <= inside, inside
    # results name the remote copy; their checkpoints read from it
    result = grid[0]
    assert result.path.startswith(root) and result.filesystem is not None
    assert result.checkpoint.path.startswith(root)
    with result.checkpoint.as_directory() as d, open(os.path.join(d, "step.json")) as f:
        assert json.load(f)["step"] == 2
    assert list(result.metrics_dataframe["step"]) == [1, 2]

    # a new machine: no staging copy; the experiment comes back from the URI
    shutil.rmtree(tmp_path / "staging")
    assert tune.Tuner.can_restore(f"{uri}/exp")
    assert not tune.Tuner.can_restore(f"{uri}/missing")
    marker.touch()
    grid = tune.Tuner.restore(f"{uri}/exp", trainable=counting, resume_errored=True).fit()
    assert grid.num_errors == 0 and grid.num_terminated == 2
    for r in grid:
        assert r.metrics["step"] == 4 and r.metrics["started_at"] == 2  # resumed after its checkpoint
        assert r.checkpoint.path.startswith(root)
    state = json.loads(mem.cat_file(f"{root}/experiment_state.json"))
    assert [t["status"] for t in state["trials"]] == ["TERMINATED", "TERMINATED"]
    mem.rm("/tune-test-bucket", recursive=True)


def test_subtree_filesystem(cluster, tmp_path) -> None:
    marker = tmp_path / "go"
    marker.touch()
    base = tmp_path / "bucket"
    base.mkdir()
    fs = pafs.SubTreeFileSystem(str(base), pafs.LocalFileSystem())
    grid = _run("exps", "sub", str(marker), filesystem=fs, x=(3,))
    assert grid.num_errors == 0
    exp = base / "exps" / "sub"
    assert (exp / "experiment_state.json").exists() and (exp / "tuner.pkl").exists()
    (trial_dir,) = [p for p in exp.iterdir() if p.is_dir()]
    checkpoints = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("checkpoint_"))
    assert checkpoints == [f"checkpoint_{i:06d}" for i in range(4)]
    best = grid.get_best_result()
    assert best.metrics["score"] == 12 and best.filesystem is fs
    assert best.checkpoint.path == f"exps/sub/{trial_dir.name}/checkpoint_000003"
    assert tune.Tuner.can_restore("exps/sub", storage_filesystem=fs)
    assert not tune.Tuner.can_restore("exps/other", storage_filesystem=fs)
