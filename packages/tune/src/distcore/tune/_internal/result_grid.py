"""``ResultGrid``: the results of every trial of an experiment."""

from __future__ import annotations

import math
import os
from typing import Any

from distcore.tune._internal.compat import Checkpoint, Result
from distcore.tune._internal.loggers import read_results
from distcore.tune._internal.trial import ERROR, TERMINATED, Trial
from distcore.tune._internal.variants import flatten

SCOPES = ("last", "avg", "max", "min", "last-5-avg", "last-10-avg", "all")


class TrialResult(Result):
    """A trial's ``Result``; ``metrics_dataframe`` is read from its files on first use."""

    def __getattribute__(self, name: str) -> Any:
        if name == "metrics_dataframe":
            value = object.__getattribute__(self, "__dict__").get("metrics_dataframe")
            local = object.__getattribute__(self, "__dict__").get("_local_path") or self.path
            if value is None and local is not None:
                import pandas as pd

                rows = [flatten({k: v for k, v in r.items() if k != "config"}) for r in read_results(local)]
                value = pd.DataFrame(rows)
                object.__getattribute__(self, "__dict__")["metrics_dataframe"] = value
            return value
        return object.__getattribute__(self, name)


def trial_to_result(trial: Trial, storage: Any = None) -> TrialResult:
    """A trial's ``Result``; with remote storage its path and checkpoints are the mirror's
    (``Checkpoint(path, filesystem)``) and its metrics are read from the local copy."""
    remote = storage is not None and storage.remote

    def checkpoint_at(path: str) -> Checkpoint:
        if remote:
            return Checkpoint(storage.remote_path_for(path), storage.fs)
        return Checkpoint.from_directory(path)

    checkpoint = checkpoint_at(trial.checkpoint_path) if trial.checkpoint_path and os.path.isdir(
        trial.checkpoint_path) else None
    error = None
    if trial.status == ERROR:
        error = trial.error_exc if trial.error_exc is not None else RuntimeError(trial.error or "trial failed")
    best = [(checkpoint_at(p), m) for p, m in trial.checkpoint_history if os.path.isdir(p)]
    metrics = dict(trial.last_result)
    metrics.setdefault("trial_id", trial.trial_id)
    metrics["config"] = trial.config
    result = TrialResult(metrics=metrics, checkpoint=checkpoint, error=error,
                         path=storage.remote_path_for(trial.local_path) if remote else trial.local_path,
                         metrics_dataframe=None, best_checkpoints=best, config=trial.config,
                         filesystem=storage.fs if remote else None)
    object.__getattribute__(result, "__dict__")["_local_path"] = trial.local_path
    return result


class ResultGrid:
    """Results of ``Tuner.fit()``: index it, iterate it, or ask for the best.

    Example::

        grid = tuner.fit()
        best = grid.get_best_result(metric="loss", mode="min")
        df = grid.get_dataframe()
    """

    def __init__(self, trials: list[Trial], metric: Any = None, mode: Any = None,
                 experiment_path: str | None = None, storage: Any = None) -> None:
        self._trials = list(trials)
        self._metric = metric if isinstance(metric, str) else (metric[0] if isinstance(metric, list) else None)
        self._mode = mode if isinstance(mode, str) else (mode[0] if isinstance(mode, list) else None)
        remote = storage is not None and storage.remote
        self.experiment_path = storage.remote_path if remote else experiment_path
        self.filesystem = storage.fs if remote else None
        self._results = [trial_to_result(t, storage) for t in self._trials]

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, index: int) -> TrialResult:
        return self._results[index]

    def __iter__(self) -> Any:
        return iter(self._results)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} results, {self.num_errors} errors>"

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return sum(1 for t in self._trials if t.status == ERROR)

    @property
    def num_terminated(self) -> int:
        return sum(1 for t in self._trials if t.status == TERMINATED)

    def get_best_result(self, metric: str | None = None, mode: str | None = None, scope: str = "last",
                        filter_nan_and_inf: bool = True) -> TrialResult:
        """The best trial's result by ``metric`` in ``mode``; ``scope`` picks which of each
        trial's values count: "last", "avg", "max", "min", "last-5-avg", "last-10-avg", or
        "all" (the best value over all iterations)."""
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError("get_best_result needs metric and mode (pass them, or set them in TuneConfig)")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        key = ("max" if mode == "max" else "min") if scope == "all" else scope
        best: tuple[float, int] | None = None
        for i, trial in enumerate(self._trials):
            stats = trial.metric_analysis.get(metric)
            if not stats:
                continue
            value = float(stats[key])
            if filter_nan_and_inf and not math.isfinite(value):
                continue
            signed = value if mode == "max" else -value
            if best is None or signed > best[0]:
                best = (signed, i)
        if best is None:
            raise RuntimeError(f"no trial reported a finite {metric!r}: cannot pick a best result")
        return self._results[best[1]]

    def get_dataframe(self, filter_metric: str | None = None, filter_mode: str | None = None) -> Any:
        """One row per trial: its last result (or, with ``filter_metric``/``filter_mode``, the
        result where that metric was best), plus ``config/...`` columns and ``logdir``."""
        import pandas as pd

        rows = []
        for trial, result in zip(self._trials, self._results, strict=True):
            metrics = {k: v for k, v in trial.last_result.items() if k != "config"}
            if filter_metric is not None:
                if filter_mode not in ("min", "max"):
                    raise ValueError("get_dataframe(filter_metric=...) needs filter_mode 'min' or 'max'")
                frame = result.metrics_dataframe
                if frame is not None and filter_metric in frame:
                    index = frame[filter_metric].idxmax() if filter_mode == "max" else frame[filter_metric].idxmin()
                    metrics = frame.loc[index].to_dict()
            row = flatten(metrics)
            row.update({f"config/{k}": v for k, v in flatten(trial.config).items()})
            row["trial_id"] = trial.trial_id
            row["logdir"] = result.path
            rows.append(row)
        return pd.DataFrame(rows)
