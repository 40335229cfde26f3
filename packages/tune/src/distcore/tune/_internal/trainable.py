"""The Class API: ``tune.Trainable`` (setup / step / save_checkpoint / load_checkpoint)."""

from __future__ import annotations

import copy
import os
import pickle
import platform
import socket
import tempfile
import time
import uuid
from typing import Any

_DICT_FILE = "_dict_checkpoint.pkl"

#: Result keys every ``train()`` call fills in.
TRAINING_ITERATION = "training_iteration"
DONE = "done"
STANDARD_KEYS = (TRAINING_ITERATION, "time_this_iter_s", "time_total_s", "timestamp", "trial_id",
                 DONE, "pid", "hostname", "node_ip", "iterations_since_restore",
                 "time_since_restore", "date")


def _checkpoint_cls() -> Any:
    from distcore.tune._internal.compat import Checkpoint

    return Checkpoint


def standard_fields(trial_id: str, iteration: int, time_this: float, time_total: float,
                    since_restore: int, time_since_restore: float) -> dict[str, Any]:
    now = time.time()
    return {
        TRAINING_ITERATION: iteration,
        "time_this_iter_s": time_this,
        "time_total_s": time_total,
        "timestamp": int(now),
        "date": time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now)),
        "trial_id": trial_id,
        "pid": os.getpid(),
        "hostname": platform.node(),
        "node_ip": _node_ip(),
        "iterations_since_restore": since_restore,
        "time_since_restore": time_since_restore,
    }


_IP: str | None = None


def _node_ip() -> str:
    global _IP
    if _IP is None:
        try:
            _IP = socket.gethostbyname(socket.gethostname())
        except OSError:
            _IP = "127.0.0.1"
    return _IP


class Trainable:
    """Subclass and implement ``setup(config)`` and ``step() -> dict``; optionally
    ``save_checkpoint(dir) -> dict | None``, ``load_checkpoint(dict | dir)``,
    ``reset_config(new_config) -> bool`` (enables actor reuse) and ``cleanup()``.

    Example::

        class Quadratic(tune.Trainable):
            def setup(self, config):
                self.x = config["x"]
            def step(self):
                return {"loss": (self.x - 3) ** 2}

        Tuner(Quadratic, param_space={"x": tune.uniform(0, 6)},
              run_config=tune.RunConfig(stop={"training_iteration": 5})).fit()
    """

    def __init__(self, config: dict[str, Any] | None = None, logger_creator: Any = None,
                 storage: Any = None, *, trial_id: str | None = None, trial_name: str | None = None,
                 logdir: str | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self._trial_id = trial_id or uuid.uuid4().hex[:8]
        self._trial_name = trial_name or f"{type(self).__name__}_{self._trial_id}"
        self._logdir = logdir or tempfile.mkdtemp(prefix=f"{self._trial_name}_")
        self._iteration = 0
        self._time_total = 0.0
        self._iters_since_restore = 0
        self._time_since_restore = 0.0
        self._restored = False
        self.setup(copy.deepcopy(self.config))

    # ------------------------------------------------------------------ user hooks
    def setup(self, config: dict[str, Any]) -> None:
        """Called once with the trial's config (also on actor reuse via reset_config)."""

    def step(self) -> dict[str, Any]:
        """One iteration of training; returns a dict of metrics."""
        raise NotImplementedError(f"{type(self).__name__} must implement step() -> dict")

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any] | None:
        """Write state into ``checkpoint_dir`` (or return a dict to be pickled there)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement save_checkpoint")

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        """Restore from what ``save_checkpoint`` wrote (the dict it returned, or the directory)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement load_checkpoint")

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reconfigure in place for a new trial; return True if supported."""
        return False

    def cleanup(self) -> None:
        """Release resources when the trial ends."""

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> Any:
        return None

    # ------------------------------------------------------------------ properties
    @property
    def iteration(self) -> int:
        return self._iteration

    @property
    def training_iteration(self) -> int:
        return self._iteration

    @property
    def trial_id(self) -> str:
        return self._trial_id

    @property
    def trial_name(self) -> str:
        return self._trial_name

    @property
    def logdir(self) -> str:
        return self._logdir

    # ------------------------------------------------------------------ driving
    def train(self) -> dict[str, Any]:
        """Run one ``step()`` and return its metrics plus the standard result fields."""
        start = time.monotonic()
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict, got {type(result).__name__}")
        elapsed = time.monotonic() - start
        self._iteration += 1
        self._iters_since_restore += 1
        self._time_total += elapsed
        self._time_since_restore += elapsed
        out = dict(result)
        out.setdefault(DONE, False)
        out.update(standard_fields(self._trial_id, self._iteration, elapsed, self._time_total,
                                   self._iters_since_restore, self._time_since_restore))
        if "time_this_iter_s" in result:
            out["time_this_iter_s"] = result["time_this_iter_s"]
        out["config"] = self.config
        return out

    def save(self, checkpoint_dir: str | None = None) -> Any:
        """Save a checkpoint; returns a ``Checkpoint`` of the directory."""
        directory = checkpoint_dir or tempfile.mkdtemp(prefix="trainable_ckpt_")
        os.makedirs(directory, exist_ok=True)
        state = self.save_checkpoint(directory)
        if state is not None and not isinstance(state, dict):
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint must return a dict or None, got {type(state).__name__}")
        if isinstance(state, dict):
            with open(os.path.join(directory, _DICT_FILE), "wb") as f:
                pickle.dump(state, f)
        with open(os.path.join(directory, ".tune_metadata"), "wb") as f:
            pickle.dump({"iteration": self._iteration, "time_total": self._time_total}, f)
        return _checkpoint_cls().from_directory(directory)

    def restore(self, checkpoint: Any) -> None:
        """Restore from a ``Checkpoint`` or a checkpoint directory path."""
        directory = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else checkpoint.to_directory()
        directory = os.fspath(directory)
        meta_path = os.path.join(directory, ".tune_metadata")
        if os.path.exists(meta_path):
            with open(meta_path, "rb") as f:
                meta = pickle.load(f)
            self._iteration = meta["iteration"]
            self._time_total = meta["time_total"]
        dict_path = os.path.join(directory, _DICT_FILE)
        if os.path.exists(dict_path):
            with open(dict_path, "rb") as f:
                self.load_checkpoint(pickle.load(f))
        else:
            self.load_checkpoint(directory)
        self._iters_since_restore = 0
        self._time_since_restore = 0.0
        self._restored = True

    def reset(self, new_config: dict[str, Any], trial_id: str | None = None, trial_name: str | None = None,
              logdir: str | None = None) -> bool:
        """Reuse this object for a new trial; False when ``reset_config`` does not support it."""
        if not self.reset_config(copy.deepcopy(new_config)):
            return False
        self.config = dict(new_config)
        self._iteration = 0
        self._time_total = 0.0
        self._iters_since_restore = 0
        self._time_since_restore = 0.0
        if trial_id:
            self._trial_id = trial_id
        if trial_name:
            self._trial_name = trial_name
        if logdir:
            self._logdir = logdir
        return True

    def stop(self) -> None:
        """End the trainable (calls ``cleanup``)."""
        self.cleanup()

    @classmethod
    def supports_reset(cls) -> bool:
        return cls.reset_config is not Trainable.reset_config

    @classmethod
    def implements_checkpointing(cls) -> bool:
        return cls.save_checkpoint is not Trainable.save_checkpoint
