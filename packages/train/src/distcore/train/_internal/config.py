"""Run-level configuration: ``ScalingConfig``, ``RunConfig``, ``CheckpointConfig``, ``FailureConfig``.

Plain dataclasses validated on construction, so a typo fails at the line that
made it rather than minutes into a run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from distcore.train._internal.callbacks import check_callbacks

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _check_resources(name: str, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict of resource name -> quantity, got {type(value).__name__}: {value!r}")
    out: dict[str, float] = {}
    for key, qty in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name}: resource names must be non-empty str, got {key!r}")
        if isinstance(qty, bool) or not isinstance(qty, int | float) or not math.isfinite(qty) or qty < 0:
            raise ValueError(f"{name}[{key!r}] must be a finite number >= 0, got {qty!r}")
        out[key] = qty
    return out


@dataclass
class ScalingConfig:
    """How many workers and what each one holds.

    Example::

        ScalingConfig(num_workers=4, use_gpu=True, resources_per_worker={"CPU": 2, "GPU": 1})

    The workers are a gang reserved together through a placement group with
    ``placement_strategy`` (PACK, SPREAD, STRICT_PACK or STRICT_SPREAD). Each
    worker holds ``resources_per_worker`` (default 1 CPU, plus 1 GPU with
    ``use_gpu``). ``trainer_resources`` is what the coordinating process holds
    (default nothing: it runs in the caller and only waits).
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: str = "PACK"
    trainer_resources: dict[str, float] | None = None
    accelerator_type: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise TypeError(f"ScalingConfig.num_workers must be an int, got {type(self.num_workers).__name__}")
        if self.num_workers < 1:
            raise ValueError(f"ScalingConfig.num_workers must be >= 1, got {self.num_workers}")
        if not isinstance(self.use_gpu, bool):
            raise TypeError(f"ScalingConfig.use_gpu must be True or False, got {self.use_gpu!r}")
        if self.placement_strategy not in _STRATEGIES:
            raise ValueError(f"ScalingConfig.placement_strategy must be one of {_STRATEGIES}, "
                             f"got {self.placement_strategy!r}")
        per_worker = _check_resources("ScalingConfig.resources_per_worker", self.resources_per_worker)
        if not self.use_gpu and per_worker.get("GPU", 0) > 0:
            raise ValueError("ScalingConfig: resources_per_worker asks for GPUs but use_gpu=False; "
                             "set use_gpu=True")
        if self.use_gpu and "GPU" in per_worker and per_worker["GPU"] <= 0:
            raise ValueError("ScalingConfig: use_gpu=True needs resources_per_worker['GPU'] > 0")
        _check_resources("ScalingConfig.trainer_resources", self.trainer_resources)

    @property
    def worker_resources(self) -> dict[str, float]:
        """Resources of one worker, defaults filled in."""
        res = dict(self.resources_per_worker or {})
        res.setdefault("CPU", 1)
        if self.use_gpu:
            res.setdefault("GPU", 1)
        if self.accelerator_type:
            res.setdefault(f"accelerator_type:{self.accelerator_type}", 0.001)
        return {k: v for k, v in res.items() if v > 0}

    @property
    def num_cpus_per_worker(self) -> float:
        return self.worker_resources.get("CPU", 0)

    @property
    def num_gpus_per_worker(self) -> float:
        return self.worker_resources.get("GPU", 0)

    @property
    def additional_resources_per_worker(self) -> dict[str, float]:
        return {k: v for k, v in self.worker_resources.items() if k not in ("CPU", "GPU")}

    @property
    def trainer_resources_dict(self) -> dict[str, float]:
        return {k: v for k, v in (self.trainer_resources or {}).items() if v > 0}

    @property
    def bundles(self) -> list[dict[str, float]]:
        """The gang's placement group bundles: the trainer's (when it holds anything), then one per worker."""
        trainer = self.trainer_resources_dict
        return ([trainer] if trainer else []) + [self.worker_resources for _ in range(self.num_workers)]

    @property
    def total_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for k, v in bundle.items():
                total[k] = total.get(k, 0) + v
        return total


@dataclass
class CheckpointConfig:
    """Which checkpoints to keep.

    ``num_to_keep`` (None keeps all) ranks checkpoints by the reported metric
    ``checkpoint_score_attribute`` in ``checkpoint_score_order`` ("max" or
    "min"), or by recency without one. The latest checkpoint is always kept
    so a restart can resume from it.
    """

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: Literal["max", "min"] = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (
                isinstance(self.num_to_keep, bool) or not isinstance(self.num_to_keep, int) or self.num_to_keep < 1):
            raise ValueError(f"CheckpointConfig.num_to_keep must be None or an int >= 1, got {self.num_to_keep!r}")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(f"CheckpointConfig.checkpoint_score_order must be 'max' or 'min', "
                             f"got {self.checkpoint_score_order!r}")
        if self.checkpoint_score_attribute is not None and not isinstance(self.checkpoint_score_attribute, str):
            raise TypeError("CheckpointConfig.checkpoint_score_attribute must be a str or None")
        if (isinstance(self.checkpoint_frequency, bool) or not isinstance(self.checkpoint_frequency, int)
                or self.checkpoint_frequency < 0):
            raise ValueError(f"CheckpointConfig.checkpoint_frequency must be an int >= 0, "
                             f"got {self.checkpoint_frequency!r}")
        if self.checkpoint_at_end is not None and not isinstance(self.checkpoint_at_end, bool):
            raise TypeError("CheckpointConfig.checkpoint_at_end must be True, False or None")


@dataclass
class FailureConfig:
    """How many failures a run survives.

    ``max_failures``: restarts of the worker gang after a worker or node dies
    or the training function raises (0: none, -1: unlimited); each restart
    resumes from the latest checkpoint. ``fail_fast`` (tune): stop the whole
    experiment at the first failed trial (``"raise"`` re-raises its error).
    """

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"FailureConfig.max_failures must be an int >= -1 (-1: unlimited), "
                             f"got {self.max_failures!r}")
        if not (isinstance(self.fail_fast, bool) or self.fail_fast == "raise"):
            raise ValueError(f"FailureConfig.fail_fast must be True, False or 'raise', got {self.fail_fast!r}")


@dataclass
class RunConfig:
    """Where a run's files go and how it checkpoints, fails and stops.

    Example::

        RunConfig(name="mnist", storage_path="/mnt/shared/runs",
                  checkpoint_config=CheckpointConfig(num_to_keep=2),
                  failure_config=FailureConfig(max_failures=3))

    ``storage_path`` is a local directory (shared by the nodes when there are
    several) or a pyarrow/fsspec URI (``s3://bucket/runs``, ``memory://runs``);
    default ``$DISTCORE_STORAGE_PATH`` or ``~/distcore_results``. The run's
    directory is ``storage_path/name``. ``verbose``: 0 silent, 1 a progress
    line per report (default), 2 more detail.
    """

    name: str | None = None
    storage_path: str | os.PathLike[str] | None = None
    checkpoint_config: CheckpointConfig | None = None
    failure_config: FailureConfig | None = None
    callbacks: list[Any] | None = None
    stop: Any = None
    verbose: int | None = None
    storage_filesystem: Any = None
    sync_config: Any = None
    log_to_file: bool = False
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name or "/" in self.name):
            raise ValueError(f"RunConfig.name must be a non-empty str without '/', got {self.name!r}")
        if self.storage_path is not None and not isinstance(self.storage_path, str | os.PathLike):
            raise TypeError(f"RunConfig.storage_path must be a str path or URI, got {type(self.storage_path).__name__}")
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        elif not isinstance(self.checkpoint_config, CheckpointConfig):
            raise TypeError(f"RunConfig.checkpoint_config must be a CheckpointConfig, "
                            f"got {type(self.checkpoint_config).__name__}")
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        elif not isinstance(self.failure_config, FailureConfig):
            raise TypeError(f"RunConfig.failure_config must be a FailureConfig, "
                            f"got {type(self.failure_config).__name__}")
        if self.callbacks is not None and not isinstance(self.callbacks, list | tuple):
            raise TypeError("RunConfig.callbacks must be a list")
        check_callbacks(self.callbacks)
        if self.verbose is None:
            self.verbose = 1
        if isinstance(self.verbose, bool) or not isinstance(self.verbose, int) or self.verbose < 0:
            raise ValueError(f"RunConfig.verbose must be an int >= 0, got {self.verbose!r}")
        if self.stop is not None and not (callable(self.stop) or isinstance(self.stop, dict)):
            raise TypeError("RunConfig.stop must be a dict of metric -> threshold or a callable(metrics) -> bool")


def should_stop(stop: Any, metrics: dict[str, Any]) -> bool:
    """True when ``metrics`` meets ``RunConfig.stop`` (a dict of metric >= value, or a callable)."""
    if stop is None:
        return False
    if callable(stop) and not isinstance(stop, dict):
        if hasattr(stop, "stop_all"):  # a tune Stopper: stopper(trial_id, result)
            return bool(stop("", metrics))
        return bool(stop(metrics))
    for key, threshold in stop.items():
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= threshold:
            return True
    return False
