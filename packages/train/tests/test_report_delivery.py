"""Reports made before a worker is killed are delivered, or redone by the resumed run (never lost)."""

from __future__ import annotations

import os
import signal
import tempfile
import time

import psutil
import pytest

from distcore import train
from distcore.train import (
    Checkpoint,
    DataParallelTrainer,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)

pytestmark = pytest.mark.integration

EPOCHS = 5
KILL_EPOCH = 2


def killing_loop(config):
    """Rank 0 checkpoints every epoch. On the first attempt rank 1 is SIGKILLed around epoch 2:
    after its report of epoch 2 (``report_first``) or before it; rank 0 reports epoch 2 only once
    rank 1's process is gone."""
    rank = train.get_context().get_world_rank()
    ckpt = train.get_checkpoint()
    start = ckpt.get_metadata()["epoch"] + 1 if ckpt else 0
    first_attempt = not os.path.exists(config["marker"])
    pid_file = config["marker"] + ".pid"
    if first_attempt and rank == 1:
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(pid_file + ".tmp", pid_file)
    for epoch in range(start, EPOCHS):
        if first_attempt and epoch == KILL_EPOCH:
            if rank == 1:
                if config["report_first"]:
                    train.report({"epoch": epoch, "first_attempt": True})
                time.sleep(0.3)  # the trainer has taken the reports made so far by now
                open(config["marker"], "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # rank 0: wait until rank 1 is dead, then a little more
                if os.path.exists(pid_file):
                    with open(pid_file) as f:
                        if not psutil.pid_exists(int(f.read())):
                            break
                time.sleep(0.05)
            time.sleep(0.5)
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if rank == 0:
                ck = Checkpoint.from_directory(d)
                ck.set_metadata({"epoch": epoch})
            train.report({"epoch": epoch, "first_attempt": first_attempt}, checkpoint=ck)
    if first_attempt and rank == 0:
        time.sleep(30)  # rank 0 outlives the attempt: the trainer ends it


def _run(tmp_path, report_first: bool, capsys):
    result = DataParallelTrainer(
        killing_loop, train_loop_config={"marker": str(tmp_path / "killed"), "report_first": report_first},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="kill", storage_path=str(tmp_path), verbose=1,
                             failure_config=FailureConfig(max_failures=1)),
    ).fit()
    assert os.path.exists(tmp_path / "killed")
    assert len(result.failures) == 1 and "died" in result.failures[0]
    df = result.metrics_dataframe
    # every epoch is recorded exactly once: nothing lost, nothing recorded twice
    assert list(df["epoch"]) == list(range(EPOCHS))
    # every recorded epoch came with its checkpoint, in order
    assert list(df["checkpoint_dir_name"]) == [f"checkpoint_{i:06d}" for i in range(EPOCHS)]
    return df, capsys.readouterr().out


def test_a_round_every_rank_reported_before_the_kill_is_delivered(cluster, tmp_path, capsys) -> None:
    df, out = _run(tmp_path, report_first=True, capsys=capsys)
    # rank 1 reported epoch 2 and died; rank 0 reported it afterwards: the round was complete, so it is
    # recorded from the first attempt, and the restart resumes after its checkpoint
    assert list(df["first_attempt"]) == [True, True, True, False, False]
    assert "restarting from checkpoint_000002" in out


@pytest.mark.slow
def test_a_round_a_dead_rank_never_reported_is_redone_by_the_resumed_run(cluster, tmp_path, capsys) -> None:
    df, out = _run(tmp_path, report_first=False, capsys=capsys)
    # rank 1 died before its report of epoch 2: rank 0's report (and checkpoint) of epoch 2 are not
    # recorded; the restart resumes from epoch 1's checkpoint and redoes epoch 2
    assert list(df["first_attempt"]) == [True, True, False, False, False]
    assert "restarting from checkpoint_000001" in out
