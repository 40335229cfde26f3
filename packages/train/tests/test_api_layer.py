"""The pure-python layer tune builds on: configs, Checkpoint, Result, sessions, report()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pyarrow.fs as pafs
import pytest

from distcore import train
from distcore.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    Result,
    RunConfig,
    ScalingConfig,
    TrainContext,
    session,
)
from distcore.train._internal.checkpoint_manager import CheckpointManager
from distcore.train._internal.config import should_stop

EXPECTED_ALL = sorted([
    "Backend", "BackendConfig", "Checkpoint", "CheckpointConfig", "DataConfig", "DataParallelTrainer",
    "FailureConfig", "Result", "RunConfig", "ScalingConfig", "TrainContext", "TrainingFailedError",
    "UserCallback", "__version__", "get_checkpoint", "get_context", "get_dataset_shard", "report",
])


def test_public_surface_is_frozen() -> None:
    assert sorted(train.__all__) == EXPECTED_ALL
    for name in train.__all__:
        assert getattr(train, name) is not None


def test_import_does_not_pull_torch_or_data() -> None:
    code = ("import sys, distcore.train as t; t.Checkpoint; t.RunConfig; "
            "print('torch' in sys.modules, 'distcore.data' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_torch_module_names_the_extra_when_torch_is_missing(tmp_path) -> None:
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('no torch here')\n")
    code = "import distcore.train.torch"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0
    assert "pip install 'distcore-train[torch]'" in out.stderr


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- configs -----------------------------------------------------------------

def test_scaling_config_defaults_and_bundles() -> None:
    sc = ScalingConfig(num_workers=3)
    assert sc.worker_resources == {"CPU": 1}
    assert sc.bundles == [{"CPU": 1}] * 3
    assert sc.total_resources == {"CPU": 3}
    gpu = ScalingConfig(num_workers=2, use_gpu=True, resources_per_worker={"CPU": 2}, trainer_resources={"CPU": 1})
    assert gpu.worker_resources == {"CPU": 2, "GPU": 1}
    assert gpu.bundles[0] == {"CPU": 1} and len(gpu.bundles) == 3
    assert gpu.total_resources == {"CPU": 5, "GPU": 2}
    assert gpu.num_gpus_per_worker == 1 and gpu.num_cpus_per_worker == 2


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"num_workers": 0}, ValueError, "num_workers must be >= 1"),
    ({"num_workers": "2"}, TypeError, "num_workers must be an int"),
    ({"placement_strategy": "TIGHT"}, ValueError, "placement_strategy must be one of"),
    ({"resources_per_worker": {"GPU": 1}}, ValueError, "use_gpu=False"),
    ({"resources_per_worker": {"CPU": -1}}, ValueError, r"resources_per_worker\['CPU'\]"),
    ({"resources_per_worker": [1]}, TypeError, "must be a dict"),
])
def test_scaling_config_rejects_bad_input(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        ScalingConfig(**kwargs)


def test_run_config_defaults_and_validation() -> None:
    rc = RunConfig(name="exp")
    assert isinstance(rc.checkpoint_config, CheckpointConfig) and isinstance(rc.failure_config, FailureConfig)
    assert rc.verbose == 1
    with pytest.raises(ValueError, match="name"):
        RunConfig(name="a/b")
    with pytest.raises(TypeError, match="checkpoint_config"):
        RunConfig(checkpoint_config={"num_to_keep": 1})
    with pytest.raises(ValueError, match="num_to_keep"):
        CheckpointConfig(num_to_keep=0)
    with pytest.raises(ValueError, match="checkpoint_score_order"):
        CheckpointConfig(checkpoint_score_order="up")
    with pytest.raises(ValueError, match="max_failures"):
        FailureConfig(max_failures=-2)


def test_stop_criteria() -> None:
    assert should_stop({"epoch": 3}, {"epoch": 3})
    assert not should_stop({"epoch": 3}, {"epoch": 2})
    assert should_stop(lambda m: m["loss"] < 0.1, {"loss": 0.05})
    assert not should_stop(None, {"loss": 0.05})


# --- Checkpoint ----------------------------------------------------------------

def test_checkpoint_local_roundtrip_and_metadata(tmp_path) -> None:
    src = tmp_path / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"weights")
    (src / "sub" / "opt.bin").write_bytes(b"state")
    ckpt = Checkpoint.from_directory(str(src))
    assert ckpt.path == str(src) and isinstance(ckpt.filesystem, pafs.LocalFileSystem)
    assert ckpt.get_metadata() == {}
    ckpt.set_metadata({"epoch": 3})
    ckpt.update_metadata({"loss": 0.5})
    assert ckpt.get_metadata() == {"epoch": 3, "loss": 0.5}
    out = ckpt.to_directory(str(tmp_path / "copy"))
    assert _read(os.path.join(out, "sub", "opt.bin")) == b"state"
    with ckpt.as_directory() as d:
        assert d == str(src)
    with pytest.raises(TypeError, match="JSON"):
        ckpt.set_metadata({"x": object()})
    with pytest.raises(FileNotFoundError, match="not an existing directory"):
        Checkpoint.from_directory(str(tmp_path / "missing"))


def test_checkpoint_on_an_fsspec_uri(tmp_path) -> None:
    import fsspec

    mem = fsspec.filesystem("memory")
    mem.pipe("/ckpt_test/a/model.bin", b"abc")
    mem.pipe("/ckpt_test/a/deep/x.txt", b"xyz")
    ckpt = Checkpoint.from_directory("memory://ckpt_test/a")
    assert not isinstance(ckpt.filesystem, pafs.LocalFileSystem)
    ckpt.set_metadata({"step": 7})
    assert Checkpoint("memory://ckpt_test/a").get_metadata() == {"step": 7}
    with ckpt.as_directory() as d:
        assert _read(os.path.join(d, "deep", "x.txt")) == b"xyz"
        local = d
    assert not os.path.exists(local)
    out = ckpt.to_directory(str(tmp_path / "dl"))
    assert _read(os.path.join(out, "model.bin")) == b"abc"


def test_checkpoint_pickles(tmp_path) -> None:
    import pickle

    ckpt = Checkpoint.from_directory(str(tmp_path))
    again = pickle.loads(pickle.dumps(ckpt))
    assert again == ckpt and again.path == str(tmp_path)


# --- checkpoint bookkeeping ------------------------------------------------------

def test_checkpoint_manager_keeps_best_by_score_and_the_latest() -> None:
    mgr = CheckpointManager(CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="acc"))
    deleted: list[str] = []
    for i, acc in enumerate([0.5, 0.9, 0.7, 0.8, 0.1]):
        deleted += mgr.register(i, {"acc": acc})
    # kept: best two (0.9 @1, 0.8 @3) + the latest (@4)
    assert [t.index for t in mgr.best_first()] == [1, 3, 4]
    assert deleted == ["checkpoint_000000", "checkpoint_000002"]
    state = json.loads(json.dumps(mgr.to_state()))
    again = CheckpointManager.from_state(mgr.config, state)
    assert [t.index for t in again.best_first()] == [1, 3, 4] and again.next_index == 5
    assert again.latest is not None and again.latest.index == 4


def test_checkpoint_manager_min_order_and_recency() -> None:
    mgr = CheckpointManager(CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="loss",
                                             checkpoint_score_order="min"))
    assert mgr.register(0, {"loss": 1.0}) == []
    assert mgr.register(1, {"loss": 0.2}) == ["checkpoint_000000"]
    assert mgr.register(2, {"loss": 0.5}) == []  # latest stays
    assert mgr.register(3, {"loss": 0.9}) == ["checkpoint_000002"]
    recent = CheckpointManager(CheckpointConfig(num_to_keep=2))
    for i in range(4):
        recent.register(i, {})
    assert [t.index for t in recent.best_first()] == [3, 2]


# --- sessions and report() ------------------------------------------------------

class RecordingSession:
    def __init__(self, ckpt: Checkpoint | None = None) -> None:
        self.reports: list[tuple[dict, Checkpoint | None]] = []
        self.ckpt = ckpt

    def report(self, metrics, checkpoint=None):
        self.reports.append((metrics, checkpoint))

    def get_checkpoint(self):
        return self.ckpt

    def get_context(self):
        return TrainContext(world_rank=1, world_size=4, trial_name="t1", metadata={"a": 1})

    def get_dataset_shard(self, name):
        return f"shard:{name}"


def test_functions_outside_a_session_raise_clearly() -> None:
    session.set_session(None)
    for call in (lambda: train.report({"x": 1}), train.get_checkpoint, train.get_context,
                 lambda: train.get_dataset_shard("train")):
        with pytest.raises(RuntimeError, match="outside a training session"):
            call()


def test_functions_delegate_to_the_current_session(tmp_path) -> None:
    ckpt = Checkpoint.from_directory(str(tmp_path))
    s = RecordingSession(ckpt)
    session.set_session(s)
    try:
        assert session.get_session() is s
        train.report({"loss": 0.25}, checkpoint=ckpt)
        assert s.reports == [({"loss": 0.25}, ckpt)]
        assert train.get_checkpoint() is ckpt
        ctx = train.get_context()
        assert (ctx.get_world_rank(), ctx.get_world_size(), ctx.get_trial_name()) == (1, 4, "t1")
        assert ctx.get_metadata() == {"a": 1}
        assert train.get_dataset_shard("train") == "shard:train"
        with pytest.raises(TypeError, match="metrics must be a dict"):
            train.report([1])
        with pytest.raises(TypeError, match="metric names must be str"):
            train.report({1: 2})
        with pytest.raises(TypeError, match="train.Checkpoint"):
            train.report({}, checkpoint=str(tmp_path))
        # a thread the training function starts sees the session too (process-wide fallback)
        seen = []
        t = threading.Thread(target=lambda: seen.append(session.get_session()))
        t.start()
        t.join()
        assert seen == [s]
    finally:
        session.set_session(None)
    assert session.get_session() is None


def test_report_turns_tensor_scalars_into_numbers() -> None:
    np = pytest.importorskip("numpy")
    s = RecordingSession()
    session.set_session(s)
    try:
        train.report({"loss": np.float32(0.5), "step": np.int64(3), "vec": [1, 2]})
    finally:
        session.set_session(None)
    metrics = s.reports[0][0]
    assert metrics == {"loss": 0.5, "step": 3, "vec": [1, 2]}
    assert type(metrics["loss"]) is float and type(metrics["step"]) is int


def test_set_session_rejects_non_sessions() -> None:
    with pytest.raises(TypeError, match="not a Session"):
        session.set_session(object())


# --- Result ---------------------------------------------------------------------

def test_result_from_path_and_best_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoint_000001").mkdir(parents=True)
    (run / "checkpoint_000002").mkdir()
    rows = [{"loss": 1.0, "training_iteration": 1}, {"loss": 0.5, "training_iteration": 2}]
    (run / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mgr = CheckpointManager(CheckpointConfig())
    mgr.register(1, rows[0])
    mgr.register(2, rows[1])
    (run / "checkpoint_state.json").write_text(json.dumps(mgr.to_state()))
    res = Result.from_path(str(run))
    assert res.metrics == rows[-1]
    assert res.checkpoint is not None and res.checkpoint.path.endswith("checkpoint_000002")
    assert list(res.metrics_dataframe["loss"]) == [1.0, 0.5]
    best = res.get_best_checkpoint("loss", "min")
    assert best is not None and best.path.endswith("checkpoint_000002")
    with pytest.raises(FileNotFoundError, match="result.json"):
        Result.from_path(str(tmp_path))
