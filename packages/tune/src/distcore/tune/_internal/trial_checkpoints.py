"""A trial's checkpoints: recording a new one, pruning to ``CheckpointConfig(num_to_keep=...)``, and
finding the newest complete one on disk (restore, retries)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from distcore.tune._internal.trial import Trial
from distcore.tune._internal.trial_actor import CHECKPOINT_META


def record_checkpoint(trial: Trial, path: str, result: dict[str, Any]) -> None:
    """Make ``path`` (reported with ``result``) the trial's latest checkpoint."""
    trial.checkpoint_path = path
    name = os.path.basename(path)
    try:
        trial.checkpoint_index = int(name.rsplit("_", 1)[1]) + 1
    except (IndexError, ValueError):
        trial.checkpoint_index += 1
    trial.checkpoint_iteration = int(result.get("training_iteration", trial.checkpoint_iteration))
    trial.checkpoint_time_total = float(result.get("time_total_s", trial.checkpoint_time_total))
    metrics = {k: v for k, v in result.items() if k != "config"}
    trial.checkpoint_history.append((path, metrics))


def prune_checkpoints(trial: Trial, cfg: Any) -> None:
    """Delete all but the ``num_to_keep`` best (by ``checkpoint_score_attribute``, else newest)
    checkpoints; the latest always stays, so a restart can resume from it."""
    keep = getattr(cfg, "num_to_keep", None)
    if not keep or len(trial.checkpoint_history) <= keep:
        return
    attr = getattr(cfg, "checkpoint_score_attribute", None)
    latest = trial.checkpoint_history[-1]
    history = trial.checkpoint_history
    if attr:
        sign = 1.0 if getattr(cfg, "checkpoint_score_order", "max") == "max" else -1.0
        ranked = sorted(history, key=lambda item: sign * float(item[1].get(attr, float("-inf") * sign)),
                        reverse=True)
    else:
        ranked = list(reversed(history))
    kept = ranked[:keep]
    if latest not in kept:
        kept.append(latest)
    for path, _ in history:
        if all(path != k[0] for k in kept):
            shutil.rmtree(path, ignore_errors=True)
    trial.checkpoint_history = [item for item in history if any(item[0] == k[0] for k in kept)]


def checkpoint_metrics(path: str) -> dict[str, Any]:
    """The result a persisted checkpoint was reported with."""
    try:
        with open(os.path.join(path, CHECKPOINT_META)) as f:
            return dict(json.load(f).get("metrics") or {})
    except (OSError, ValueError):
        return {}


def latest_checkpoint_on_disk(trial_dir: str) -> tuple[str, int, float] | None:
    """The newest complete ``checkpoint_XXXXXX`` of a trial directory, with its iteration."""
    if not os.path.isdir(trial_dir):
        return None
    names = sorted(n for n in os.listdir(trial_dir) if n.startswith("checkpoint_") and ".tmp" not in n)
    for name in reversed(names):
        path = os.path.join(trial_dir, name)
        meta = os.path.join(path, CHECKPOINT_META)
        if os.path.exists(meta):
            with open(meta) as f:
                info = json.load(f)
            return path, int(info.get("training_iteration", 0)), float(info.get("time_total_s", 0.0))
    return None
