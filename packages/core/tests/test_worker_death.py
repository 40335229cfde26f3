"""The errors owners raise for workers their node ended: OutOfMemoryError, WorkerCrashedError."""

from __future__ import annotations

from distcore._private.worker_death import (
    MemoryKill,
    WorkerDeathInfo,
    memory_kill_reason,
    owner_error,
)
from distcore.exceptions import OutOfMemoryError, WorkerCrashedError

GIB = 1024**3


def test_a_memory_kill_becomes_out_of_memory_error_naming_task_node_usage_and_fix():
    kill = MemoryKill(int(7.6 * GIB), 8 * GIB, 0.9, worker_rss_bytes=3 * GIB)
    info = WorkerDeathInfo("w" * 32, "abcdef0123456789", "10.0.0.7", 4242, memory_kill_reason(4242, kill), kill)
    error = owner_error("train_step", info, max_retries=2)
    assert isinstance(error, OutOfMemoryError)
    text = str(error)
    for part in ("train_step", "abcdef01", "10.0.0.7", "7.60 GiB of 8.00 GiB (95%)", "threshold 90%",
                 "max_retries=2", "num_cpus", "--memory-usage-threshold", "DISTCORE_MEMORY_USAGE_THRESHOLD",
                 "using 3072 MiB"):
        assert part in text, (part, text)


def test_other_deaths_stay_worker_crashed_errors_with_the_reason():
    info = WorkerDeathInfo("w" * 32, "n" * 32, "10.0.0.7", 1, "its placement group was removed")
    error = owner_error("f", info, max_retries=0)
    assert isinstance(error, WorkerCrashedError) and not isinstance(error, OutOfMemoryError)
    assert "task f died unexpectedly: its placement group was removed" in str(error)
    unknown = owner_error("f", None, max_retries=3)
    assert "(it was killed, crashed or exited); no retries left (max_retries=3)" in str(unknown)
