"""TorchTrainer.restore after the driver was killed (the driver runs as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from distcore._private.testing import wait_for
from distcore.train import Result
from distcore.train.torch import TorchTrainer

pytestmark = pytest.mark.integration

DRIVER = textwrap.dedent("""
    import os, sys, tempfile, time
    import torch
    import distcore
    from distcore import train
    from distcore.train import Checkpoint, RunConfig, ScalingConfig
    from distcore.train.torch import TorchTrainer

    def loop(config):
        start = 0
        ckpt = train.get_checkpoint()
        if ckpt:
            with ckpt.as_directory() as d:
                start = torch.load(os.path.join(d, "state.pt"))["epoch"] + 1
        for epoch in range(start, config["epochs"]):
            with tempfile.TemporaryDirectory() as d:
                ck = None
                if train.get_context().get_world_rank() == 0:
                    torch.save({"epoch": epoch}, os.path.join(d, "state.pt"))
                    ck = Checkpoint.from_directory(d)
                train.report({"epoch": epoch, "start": start}, checkpoint=ck)
            time.sleep(config["sleep"])

    distcore.init(address=sys.argv[1])
    TorchTrainer(loop, train_loop_config={"epochs": 6, "sleep": 1.0},
                 scaling_config=ScalingConfig(num_workers=2),
                 run_config=RunConfig(name="restorable", storage_path=sys.argv[2])).fit()
""")


def _latest(run_dir: str) -> str | None:
    try:
        with open(os.path.join(run_dir, "checkpoint_state.json")) as f:
            return json.load(f).get("latest")
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_restore_continues_after_the_driver_was_killed(cluster, tmp_path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    run_dir = str(tmp_path / "restorable")
    with open(os.path.join(cluster["session_dir"], "token")) as f:
        env = dict(os.environ, DISTCORE_AUTH_TOKEN=f.read().strip())
    env.pop("DISTCORE_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, str(script), cluster["address"], str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (_latest(run_dir) or "") >= "checkpoint_000001" or proc.poll() is not None,
                 timeout=90, message="the driver never wrote checkpoint_000001")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    interrupted = Result.from_path(run_dir)
    resumed_from = int(interrupted.checkpoint.path.rsplit("_", 1)[1])
    assert interrupted.metrics["epoch"] < 5
    assert TorchTrainer.can_restore(run_dir)
    time.sleep(0.5)
    result = TorchTrainer.restore(run_dir).fit()
    df = result.metrics_dataframe
    assert result.path == run_dir and result.metrics["epoch"] == 5
    new_rows = df[df["training_iteration"] > len(interrupted.metrics_dataframe)]
    # the restored run started right after the latest checkpoint, in the same run directory
    assert new_rows.iloc[0]["start"] == new_rows.iloc[0]["epoch"]
    assert new_rows.iloc[0]["epoch"] >= resumed_from + 1
    assert list(df["training_iteration"]) == list(range(1, len(df) + 1))
    assert result.checkpoint is not None and result.checkpoint.path.endswith(
        f"checkpoint_{int(result.checkpoint.path.rsplit('_', 1)[1]):06d}")


def test_restore_rejects_a_directory_that_is_not_a_run(tmp_path) -> None:
    assert not TorchTrainer.can_restore(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        TorchTrainer.restore(str(tmp_path))
