"""DataContext: process-wide settings of distcore.data (mirrors ``ray.data.DataContext``).

Example::

    ctx = distcore.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.memory_budget = 512 * 1024 * 1024   # bytes the whole pipeline may hold
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

_MiB = 1024 * 1024


@dataclass
class ExecutionResources:
    """Limits for one execution (``None`` = derive from the cluster)."""

    cpu: float | None = None
    gpu: float | None = None
    object_store_memory: int | None = None


@dataclass
class ExecutionOptions:
    """Executor options: resource limits, order preservation, locality."""

    resource_limits: ExecutionResources = field(default_factory=ExecutionResources)
    preserve_order: bool = False
    verbose_progress: bool = False


@dataclass
class DataContext:
    """Settings read by the planner and the streaming executor.

    - ``target_max_block_size``: blocks larger than this are split by map tasks (bytes).
    - ``target_min_block_size``: small blocks are bundled up to this before a map task.
    - ``memory_budget``: bytes the whole pipeline may hold (object store bytes of queued and
      in-flight blocks plus the workers' heap estimated from block sizes); ``None`` = 25% of
      the machine's shared memory, at most 2 GiB.
    - ``enable_progress_bars``: one bar per operator; shown only on a TTY unless
      ``progress_bars_in_non_tty`` is set.
    - ``verbose_stats_logs``: ``ds.stats()`` adds per-task detail.
    - ``read_op_min_num_blocks``: default number of read tasks.
    - ``max_tasks_in_flight_per_actor``: calls queued on one pool actor.
    - ``task_start_timeout_s``: a task that waits longer than this for the cluster's CPUs (other work
      holds them) makes its operator shrink its concurrency; it grows back when CPUs free up.
    - ``wait_for_actors_timeout_s``: an actor pool none of whose actors can start fails after this.
    """

    target_max_block_size: int = 128 * _MiB
    target_min_block_size: int = 1 * _MiB
    memory_budget: int | None = None
    enable_progress_bars: bool = True
    progress_bars_in_non_tty: bool = False
    verbose_stats_logs: bool = False
    read_op_min_num_blocks: int = 200
    max_tasks_in_flight_per_actor: int = 2
    actor_pool_scale_up_queue_ratio: float = 2.0
    wait_for_actors_timeout_s: float = 600.0
    task_start_timeout_s: float = 5.0
    execution_options: ExecutionOptions = field(default_factory=ExecutionOptions)
    enable_operator_fusion: bool = True
    enable_optimizer: bool = True

    _current: ClassVar[DataContext | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @staticmethod
    def get_current() -> DataContext:
        """The context of this process (created on first use)."""
        with DataContext._lock:
            if DataContext._current is None:
                DataContext._current = DataContext()
            return DataContext._current

    @staticmethod
    def _set_current(ctx: DataContext) -> None:
        with DataContext._lock:
            DataContext._current = ctx

    def copy(self) -> DataContext:
        return copy.deepcopy(self)

    def effective_memory_budget(self) -> int:
        """The memory budget in bytes (explicit, from resource limits, or derived)."""
        if self.memory_budget is not None:
            return int(self.memory_budget)
        limit = self.execution_options.resource_limits.object_store_memory
        if limit is not None:
            return int(limit)
        return _default_budget()

    def set_config(self, key: str, value: Any) -> None:
        """Set a named setting; unknown names raise ``AttributeError``."""
        if not hasattr(self, key):
            raise AttributeError(f"DataContext has no setting {key!r}")
        setattr(self, key, value)


def _default_budget() -> int:
    import shutil

    try:
        shm = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm = 4 * 1024 * _MiB
    return int(max(256 * _MiB, min(2048 * _MiB, shm // 4)))
