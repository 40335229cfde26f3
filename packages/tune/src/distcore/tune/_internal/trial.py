"""A trial as the driver sees it: config, status, results, checkpoint, failures."""

from __future__ import annotations

import os
import re
from typing import Any

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text[:12]


def flatten_result(result: dict[str, Any]) -> dict[str, Any]:
    """Nested result dicts as one level with "/" keys ({"env_runners": {"ret": 1}} ->
    {"env_runners/ret": 1}): what metric names, schedulers, searchers and stoppers see.
    A result without nested dicts is returned as is (no copy)."""
    if not any(isinstance(v, dict) and v for v in result.values()):
        return result
    from distcore.tune._internal.variants import flatten

    return flatten(result)


_UNSAFE = re.compile(r"[^\w=,.\-]")


def experiment_tag(index: int, config: dict[str, Any]) -> str:
    if any(isinstance(v, dict) or not isinstance(k, str) for k, v in config.items()):
        from distcore.tune._internal.variants import flatten

        config = flatten(config)
    parts = [f"{key.split('/')[-1]}={_short(value)}" for key, value in config.items()
             if not isinstance(value, (dict, list))]
    tag = f"{index}_" + ",".join(parts)
    return _UNSAFE.sub("_", tag)[:80]


class Trial:
    """One configuration being trained. ``status`` is one of PENDING, RUNNING, PAUSED,
    TERMINATED, ERROR."""

    def __init__(self, trial_id: str, config: dict[str, Any], index: int, experiment_path: str,
                 trainable_name: str, resources: Any, custom_dirname: str | None = None) -> None:
        self.trial_id = trial_id
        self.config = config
        self.index = index
        self.trainable_name = trainable_name
        self.experiment_tag = experiment_tag(index, config)
        dirname = custom_dirname or f"{trainable_name}_{trial_id}_{self.experiment_tag}"
        self.dirname = dirname
        self.local_path = os.path.join(experiment_path, dirname)
        self.resources = resources
        self.status = PENDING
        self._last_result: dict[str, Any] = {}
        self._flat_result: dict[str, Any] | None = None
        self.metric_analysis: dict[str, dict[str, float]] = {}
        self.checkpoint_path: str | None = None  # latest persisted checkpoint
        self.checkpoint_index = 0
        self.checkpoint_iteration = 0
        self.checkpoint_time_total = 0.0
        self.checkpoint_history: list[tuple[str, dict[str, Any]]] = []
        self.num_failures = 0
        self.error: str | None = None
        self.error_exc: BaseException | None = None
        self.custom_name: str | None = None
        self.start_time: float | None = None
        self.num_results = 0
        self.pending_exploit: dict[str, Any] | None = None

    @property
    def last_result(self) -> dict[str, Any]:
        """The latest result as reported (nested dicts kept)."""
        return self._last_result

    @last_result.setter
    def last_result(self, value: dict[str, Any]) -> None:
        self._last_result = value
        self._flat_result = None

    @property
    def flat_result(self) -> dict[str, Any]:
        """The latest result flattened with "/" (see ``flatten_result``)."""
        if self._flat_result is None:
            self._flat_result = flatten_result(self._last_result)
        return self._flat_result

    def mark_done(self) -> None:
        if self._last_result:
            self._last_result["done"] = True
            self.flat_result["done"] = True

    @property
    def path(self) -> str:
        return self.local_path

    def __str__(self) -> str:
        return self.custom_name or f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self) -> str:
        return f"Trial({self}, status={self.status})"

    def is_finished(self) -> bool:
        return self.status in (TERMINATED, ERROR)

    def update_metric_analysis(self, result: dict[str, Any]) -> None:
        for key, value in flatten_result(result).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats = self.metric_analysis.get(key)
                if stats is None:
                    stats = self.metric_analysis[key] = {"max": value, "min": value, "avg": value, "last": value,
                                                         "n": 1, "window": [value]}
                else:
                    stats["max"] = max(stats["max"], value)
                    stats["min"] = min(stats["min"], value)
                    stats["n"] += 1
                    stats["avg"] += (value - stats["avg"]) / stats["n"]
                    stats["last"] = value
                    stats["window"] = [*stats["window"][-9:], value]
                window = stats["window"]
                stats["last-5-avg"] = sum(window[-5:]) / len(window[-5:])
                stats["last-10-avg"] = sum(window) / len(window)

    def to_state(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id, "config": self.config, "index": self.index,
            "trainable_name": self.trainable_name, "dirname": self.dirname, "status": self.status,
            "last_result": self.last_result, "checkpoint_path": self.checkpoint_path,
            "checkpoint_index": self.checkpoint_index, "checkpoint_iteration": self.checkpoint_iteration,
            "checkpoint_time_total": self.checkpoint_time_total, "num_failures": self.num_failures,
            "error": self.error, "custom_name": self.custom_name, "num_results": self.num_results,
            "metric_analysis": self.metric_analysis,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], experiment_path: str, resources: Any) -> Trial:
        trial = cls(state["trial_id"], state["config"], state["index"], experiment_path,
                    state["trainable_name"], resources, custom_dirname=state["dirname"])
        for key in ("status", "last_result", "checkpoint_path", "checkpoint_index", "checkpoint_iteration",
                    "checkpoint_time_total", "num_failures", "error", "custom_name", "num_results",
                    "metric_analysis"):
            setattr(trial, key, state.get(key, getattr(trial, key)))
        if trial.checkpoint_path and not os.path.isabs(trial.checkpoint_path):
            trial.checkpoint_path = os.path.join(trial.local_path, trial.checkpoint_path)
        return trial
