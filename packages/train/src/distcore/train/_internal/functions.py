"""``train.report`` & co.: thin calls into the current session."""

from __future__ import annotations

from typing import Any

from distcore.train import session as _session
from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.context import TrainContext


def _require(what: str) -> _session.Session:
    current = _session.get_session()
    if current is None:
        raise RuntimeError(
            f"train.{what}() was called outside a training session: call it inside the training "
            "function that a Trainer (e.g. TorchTrainer(train_loop_per_worker)) or a tune Tuner runs."
        )
    return current


def report(metrics: dict[str, Any], checkpoint: Checkpoint | None = None) -> None:
    """Report ``metrics`` (a dict with str keys), optionally with a checkpoint, from the training function.

    Example::

        for epoch in range(epochs):
            loss = train_one_epoch()
            train.report({"epoch": epoch, "loss": loss})

    Metrics of rank 0 become the run's results; a checkpoint is persisted to
    the run's storage (atomically, as ``checkpoint_XXXXXX``) before this returns,
    so the directory it names may be deleted afterwards.
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"train.report: metrics must be a dict, got {type(metrics).__name__}")
    bad = [k for k in metrics if not isinstance(k, str)]
    if bad:
        raise TypeError(f"train.report: metric names must be str, got {bad!r}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"train.report: checkpoint must be a train.Checkpoint, got {type(checkpoint).__name__}")
    clean = {k: _plain(v) for k, v in metrics.items()}
    _require("report").report(clean, checkpoint)


def _plain(value: Any) -> Any:
    """torch/numpy scalars become Python numbers so metrics stay JSON-friendly."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    item = getattr(value, "item", None)
    if item is None or getattr(value, "ndim", 0) != 0:
        return value
    try:
        out = item()
    except Exception:
        return value
    return out if isinstance(out, bool | int | float) else value


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from (the latest one after a restart), or None on a fresh start."""
    return _require("get_checkpoint").get_checkpoint()


def get_context() -> TrainContext:
    """This worker's :class:`TrainContext` (ranks, world size, run information)."""
    return _require("get_context").get_context()


def get_dataset_shard(name: str | None = None) -> Any:
    """This worker's shard of the dataset passed as ``datasets={name: ...}`` (a ``DataIterator``).

    Example::

        for batch in train.get_dataset_shard("train").iter_torch_batches(batch_size=64):
            ...
    """
    current = _require("get_dataset_shard")
    shard = current.get_dataset_shard(name if name is not None else "train")
    return shard
