"""The Searcher interface and the searchers that need no third-party library.

Call order (driven by the Tuner): ``set_search_properties(metric, mode, param_space,
num_samples=...)`` once, then ``suggest(trial_id)`` whenever a trial slot is free
(``None``: nothing now, ask later; ``Searcher.FINISHED``: no more trials), then for each
trial any number of ``on_trial_result`` and exactly one ``on_trial_complete``.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections import defaultdict
from typing import Any

import numpy as np

from distcore.tune._internal import variants


def check_mode(mode: Any) -> None:
    modes = mode if isinstance(mode, (list, tuple)) else [mode]
    for m in modes:
        if m not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {m!r}")


class Searcher:
    """Suggests configs and learns from their results."""

    FINISHED = "FINISHED"
    #: True for searchers that count samples themselves (the Tuner then does not cap them).
    counts_samples = False

    def __init__(self, metric: str | list[str] | None = None, mode: str | list[str] | None = None) -> None:
        check_mode(mode)
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> Any:
        return self._metric

    @property
    def mode(self) -> Any:
        return self._mode

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        """Fill in metric/mode/space given to the Tuner; False if already set differently."""
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Write this searcher's state to a file (atomically)."""
        import cloudpickle

        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "wb") as f:
            cloudpickle.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Load the state written by :meth:`save`."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def save_to_dir(self, directory: str, session_str: str = "default") -> None:
        self.save(os.path.join(directory, f"searcher-state-{session_str}.pkl"))

    def restore_from_dir(self, directory: str) -> None:
        candidates = sorted(name for name in os.listdir(directory) if name.startswith("searcher-state-"))
        if not candidates:
            raise FileNotFoundError(f"no searcher-state-*.pkl in {directory}")
        self.restore(os.path.join(directory, candidates[-1]))


class BasicVariantGenerator(Searcher):
    """Grid search crossed with random sampling: every ``grid_search`` combination
    is repeated ``num_samples`` times with fresh random values. ``points_to_evaluate``
    (partial configs) run first and count toward ``num_samples``."""

    counts_samples = True

    def __init__(self, points_to_evaluate: list[dict[str, Any]] | None = None, max_concurrent: int = 0,
                 constant_grid_search: bool = False, random_state: int | None = None) -> None:
        super().__init__()
        if points_to_evaluate is not None and not isinstance(points_to_evaluate, list):
            raise TypeError("points_to_evaluate must be a list of dicts")
        self._points = list(points_to_evaluate or [])
        self._max_concurrent = max_concurrent
        self._constant_grid = constant_grid_search
        self._rng = np.random.default_rng(random_state)
        self._space: dict[str, Any] = {}
        self._live: set[str] = set()
        self._num_samples = 1

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        self._space = config or {}
        self._num_samples = int(spec.get("num_samples", 1))
        return True

    def total_trials(self) -> int:
        grid = variants.grid_size(self._space)
        return max(self._num_samples, len(self._points)) * grid if self._points else self._num_samples * grid

    def _make(self, position: int) -> dict[str, Any] | None:
        if self._grids is None:
            self._grids = variants.grid_assignments(self._space)
        grids = self._grids
        n_points = len(self._points) * len(grids)
        if position < n_points:
            point = self._points[position // len(grids)]
            return variants.resolve(self._space, self._rng, grid=grids[position % len(grids)], preset=point)
        position -= n_points
        n_random = max(self._num_samples - len(self._points), 0) if self._num_samples >= 0 else None
        sample, index = divmod(position, len(grids))
        if n_random is not None and sample >= n_random:
            return None
        if self._constant_grid:
            if index == 0:
                self._base = variants.resolve(self._space, self._rng, grid=grids[0])
            fixed = copy.deepcopy(self._base)
            for path, value in grids[index].items():
                variants.set_path(fixed, path, value)
            return fixed
        return variants.resolve(self._space, self._rng, grid=grids[index])

    _grids: list[dict[Any, Any]] | None = None
    _base: dict[str, Any] = {}  # noqa: RUF012
    _position = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._max_concurrent and len(self._live) >= self._max_concurrent:
            return None
        config = self._make(self._position)
        if config is None:
            return Searcher.FINISHED
        self._position += 1
        self._live.add(trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self._live.discard(trial_id)


class _WrappingSearcher(Searcher):
    """A searcher that wraps another: metric, mode and search properties are the wrapped one's."""

    def __init__(self, searcher: Searcher) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(f"{type(self).__name__} wraps a Searcher, got {type(searcher).__name__}")
        super().__init__(searcher.metric, searcher.mode)
        self.searcher = searcher

    @property
    def metric(self) -> Any:
        return self.searcher.metric

    @property
    def mode(self) -> Any:
        return self.searcher.mode

    def set_search_properties(self, metric: Any, mode: Any, config: dict[str, Any], **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)


class ConcurrencyLimiter(_WrappingSearcher):
    """Lets ``searcher`` have at most ``max_concurrent`` live trials (``batch``: wait
    until the whole batch finishes before suggesting again)."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        super().__init__(searcher)
        self.max_concurrent = max_concurrent
        self.batch = batch
        self._live: set[str] = set()
        self._in_batch: set[str] = set()

    @property
    def counts_samples(self) -> bool:  # type: ignore[override]
        return self.searcher.counts_samples

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.batch and self._batch_closed:
            return None
        if len(self._live) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict):
            self._live.add(trial_id)
            if self.batch:
                self._in_batch.add(trial_id)
                self._batch_closed = len(self._in_batch) >= self.max_concurrent
        return suggestion

    _batch_closed = False

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        self._live.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result, error)
        if self.batch and trial_id in self._in_batch and not (self._live & self._in_batch):
            self._in_batch.clear()
            self._batch_closed = False

    def get_state(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key != "searcher"}
        state["searcher_state"] = self.searcher.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.searcher.set_state(state.pop("searcher_state"))
        self.__dict__.update(state)


class Repeater(_WrappingSearcher):
    """Runs each suggestion ``repeat`` times (configs get ``__trial_index__`` when
    ``set_index``) and reports the mean of the metric to the wrapped searcher."""

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        super().__init__(searcher)
        self.repeat = repeat
        self.set_index = set_index
        self._current: tuple[str, dict[str, Any]] | None = None
        self._issued = 0
        self._groups: dict[str, list[str]] = defaultdict(list)
        self._group_of: dict[str, str] = {}
        self._scores: dict[str, list[float | None]] = defaultdict(list)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._current is None or self._issued >= self.repeat:
            suggestion = self.searcher.suggest(trial_id)
            if not isinstance(suggestion, dict):
                return suggestion
            self._current, self._issued = (trial_id, suggestion), 0
        group_id, config = self._current
        config = copy.deepcopy(config)
        if self.set_index:
            config["__trial_index__"] = self._issued
        self._issued += 1
        self._groups[group_id].append(trial_id)
        self._group_of[trial_id] = group_id
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        group_id = self._group_of.get(trial_id)
        if group_id is None:
            return
        metric = self.searcher.metric
        value = None if (error or not result or metric not in result) else result[metric]
        self._scores[group_id].append(value)
        if len(self._scores[group_id]) == self.repeat:
            values = [v for v in self._scores[group_id] if v is not None]
            if values:
                self.searcher.on_trial_complete(group_id, {metric: float(np.mean(values))})
            else:
                self.searcher.on_trial_complete(group_id, None, error=True)

    def get_state(self) -> dict[str, Any]:
        state = {key: value for key, value in self.__dict__.items() if key != "searcher"}
        state["searcher_state"] = self.searcher.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.searcher.set_state(state.pop("searcher_state"))
        self.__dict__.update(state)
