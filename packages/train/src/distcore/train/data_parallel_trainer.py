"""``DataParallelTrainer``: run one training function on a gang of workers (any framework).

Example::

    from distcore import train
    from distcore.train import DataParallelTrainer, ScalingConfig

    def loop(config):
        ctx = train.get_context()
        for step in range(config["steps"]):
            train.report({"step": step, "rank": ctx.get_world_rank()})

    result = DataParallelTrainer(loop, train_loop_config={"steps": 3},
                                 scaling_config=ScalingConfig(num_workers=2)).fit()

Frameworks plug in through ``backend_config`` (see :mod:`distcore.train.backend`);
``TorchTrainer`` is this class with the torch backend.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack

import cloudpickle

import distcore
from distcore.train._internal import storage
from distcore.train._internal.checkpoint import Checkpoint
from distcore.train._internal.config import RunConfig, ScalingConfig
from distcore.train._internal.controller import Controller, RunSpec
from distcore.train._internal.result import RESULT_FILE, Result
from distcore.train._internal.run_files import TRAINER_FILE, RunFiles
from distcore.train._internal.worker import _takes_config
from distcore.train.backend import BackendConfig

__all__ = ["DataConfig", "DataParallelTrainer", "TrainerOptions"]


@dataclass
class DataConfig:
    """How ``datasets=`` reach the workers.

    ``datasets_to_split``: "all" (default) or a list of names; each of those is
    split with ``streaming_split(num_workers, equal=True)`` so every worker
    reads a disjoint, equally sized part. Others reach every worker whole.
    """

    datasets_to_split: Literal["all"] | list[str] = "all"

    def __post_init__(self) -> None:
        if self.datasets_to_split != "all" and not (
                isinstance(self.datasets_to_split, list | tuple)
                and all(isinstance(n, str) for n in self.datasets_to_split)):
            raise TypeError(f"DataConfig.datasets_to_split must be 'all' or a list of dataset names, "
                            f"got {self.datasets_to_split!r}")

    def should_split(self, name: str) -> bool:
        return self.datasets_to_split == "all" or name in self.datasets_to_split


def default_run_name(trainer_name: str) -> str:
    """A fresh run name: the trainer's class, the time and a random suffix (never an existing run)."""
    return f"{trainer_name}_{datetime.datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:5]}"


class TrainerOptions(TypedDict, total=False):
    """The keyword arguments every trainer takes besides its backend's config."""

    train_loop_config: dict[str, Any] | None
    scaling_config: ScalingConfig | None
    run_config: RunConfig | None
    datasets: dict[str, Any] | None
    dataset_config: DataConfig | None
    resume_from_checkpoint: Checkpoint | None
    metadata: dict[str, Any] | None


# option -> (the type it must have, how the error names that type)
_OPTION_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "train_loop_config": (dict, "a dict"),
    "scaling_config": (ScalingConfig, "a ScalingConfig"),
    "run_config": (RunConfig, "a RunConfig"),
    "datasets": (dict, "a dict of name -> distcore.data Dataset"),
    "dataset_config": (DataConfig, "a DataConfig"),
    "resume_from_checkpoint": (Checkpoint, "a train.Checkpoint"),
    "metadata": (dict, "a dict"),
}


def check_options(trainer_name: str, backend_arg: str, options: dict[str, Any]) -> None:
    """Raise ``TypeError`` naming the first unknown option or the first option of the wrong type."""
    for key, value in options.items():
        if key not in _OPTION_TYPES:
            hint = f"; pass the backend's config as {backend_arg}=" if key.endswith("_config") else ""
            raise TypeError(f"{trainer_name}() got an unexpected keyword argument {key!r}{hint} (it takes "
                            f"{backend_arg}, {', '.join(_OPTION_TYPES)})")
        expected, what = _OPTION_TYPES[key]
        if value is not None and not isinstance(value, expected):
            raise TypeError(f"{key} must be {what}, got {type(value).__name__}")
    datasets = options.get("datasets") or {}
    for name, ds in datasets.items():
        if not isinstance(name, str):
            raise TypeError(f"datasets must be a dict of name -> distcore.data Dataset; key {name!r} is not a str")
        if not hasattr(ds, "streaming_split") and not hasattr(ds, "iterator"):
            raise TypeError(f"datasets[{name!r}] must be a distcore.data Dataset, got {type(ds).__name__}")


class DataParallelTrainer:
    """Runs ``train_loop_per_worker`` on ``scaling_config.num_workers`` workers and collects its reports.

    Keyword arguments (all optional): ``train_loop_config`` (the dict passed to the
    function), ``backend_config`` (how the framework is set up on the workers),
    ``scaling_config``, ``run_config``, ``datasets`` (name -> Dataset, sharded
    per ``dataset_config``), ``resume_from_checkpoint`` and ``metadata``
    (attached to every checkpoint's context).
    """

    _default_backend_config: Callable[[], BackendConfig] = BackendConfig
    _backend_config_type: type = BackendConfig

    def __init__(self, train_loop_per_worker: Callable[..., Any], *, backend_config: BackendConfig | None = None,
                 **options: Unpack[TrainerOptions]) -> None:
        self._init(train_loop_per_worker, "backend_config", backend_config, dict(options))

    def _init(self, train_loop_per_worker: Callable[..., Any], backend_arg: str, backend_config: Any,
              options: dict[str, Any]) -> None:
        """Check and store the arguments (shared by every trainer's ``__init__``)."""
        name = type(self).__name__
        if not callable(train_loop_per_worker):
            raise TypeError(f"train_loop_per_worker must be a function, got {type(train_loop_per_worker).__name__}")
        _takes_config(train_loop_per_worker)
        if backend_config is not None and not isinstance(backend_config, self._backend_config_type):
            raise TypeError(f"{backend_arg} must be a {self._backend_config_type.__name__}, "
                            f"got {type(backend_config).__name__}")
        check_options(name, backend_arg, options)
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = options.get("train_loop_config")
        self.backend_config = backend_config or type(self)._default_backend_config()
        self.scaling_config = options.get("scaling_config") or ScalingConfig()
        self.run_config = options.get("run_config") or RunConfig()
        self.datasets = dict(options.get("datasets") or {})
        self.dataset_config = options.get("dataset_config") or DataConfig()
        self.resume_from_checkpoint = options.get("resume_from_checkpoint")
        self.metadata = dict(options.get("metadata") or {})
        self._restore_dir: str | None = None

    def _spec(self) -> RunSpec:
        return RunSpec(
            train_fn=self.train_loop_per_worker, train_loop_config=self.train_loop_config,
            scaling_config=self.scaling_config, run_config=self.run_config,
            backend_config=self.backend_config, datasets=self.datasets, dataset_config=self.dataset_config,
            resume_from_checkpoint=self.resume_from_checkpoint, metadata=self.metadata,
            trainer_name=type(self).__name__,
        )

    def fit(self) -> Result:
        """Train; returns the :class:`Result`, raises ``TrainingFailedError`` when the run failed for good."""
        if not distcore.is_initialized():
            distcore.init()
        name = self.run_config.name or default_run_name(type(self).__name__)
        storage_ctx = storage.StorageContext.create(self.run_config.storage_path, name,
                                                    self.run_config.storage_filesystem)
        spec = self._spec()
        # A run directory that already holds results is continued (as in Ray Train): the
        # latest checkpoint there is where this fit resumes, and its rows go on.
        restoring = self._restore_dir is not None or storage.exists(
            storage_ctx.storage_filesystem, storage.join(storage_ctx.experiment_fs_path, RESULT_FILE))
        if self._restore_dir is None:
            files = RunFiles(storage_ctx.storage_filesystem, storage_ctx.experiment_fs_path)
            files.write_params(self.train_loop_config)
            state = {"cls": type(self), "spec": {**spec.__dict__, "datasets": {}},
                     "dataset_names": sorted(self.datasets)}
            try:
                files.write_trainer(cloudpickle.dumps(state))
            except Exception as exc:  # noqa: BLE001 - restore is optional, training is not
                import logging

                logging.getLogger("distcore.train").warning(
                    "train: cannot save the trainer for restore (%s); TorchTrainer.restore will not work", exc)
        return Controller(spec, storage_ctx, restoring=restoring).run()

    @classmethod
    def can_restore(cls, path: str | os.PathLike[str], storage_filesystem: Any = None) -> bool:
        """True when ``path`` is a run directory ``restore`` can continue."""
        fs, inner = storage.resolve(path, storage_filesystem)
        return storage.exists(fs, storage.join(inner, TRAINER_FILE))

    @classmethod
    def restore(cls, path: str | os.PathLike[str], *, train_loop_per_worker: Callable[..., Any] | None = None,
                train_loop_config: dict[str, Any] | None = None, datasets: dict[str, Any] | None = None,
                scaling_config: ScalingConfig | None = None, storage_filesystem: Any = None,
                **_ignored: Any) -> DataParallelTrainer:
        """A trainer that continues the interrupted run in ``path`` from its latest checkpoint.

        Example::

            trainer = TorchTrainer.restore("~/distcore_results/my_run")
            result = trainer.fit()   # same run directory; iterations and checkpoints continue

        ``datasets`` must be given again when the run had some (datasets are not saved).
        """
        fs, inner = storage.resolve(path, storage_filesystem)
        pkl = storage.join(inner, TRAINER_FILE)
        if not storage.exists(fs, pkl):
            raise FileNotFoundError(f"{os.fspath(path)!r} is not a run directory a trainer can restore "
                                    f"(no {TRAINER_FILE}); check the path (RunConfig.storage_path/name)")
        state = cloudpickle.loads(storage.read_bytes(fs, pkl))
        saved_cls = state["cls"]
        if not issubclass(saved_cls, cls) and not issubclass(cls, saved_cls):
            raise TypeError(f"{os.fspath(path)!r} holds a {saved_cls.__name__} run; restore it with "
                            f"{saved_cls.__name__}.restore")
        spec = RunSpec(**state["spec"])
        missing = [n for n in state["dataset_names"] if n not in (datasets or {})]
        if missing:
            raise ValueError(f"the run used datasets {state['dataset_names']}; pass them again: "
                             f"restore(path, datasets={{...}}) is missing {missing}")
        run_config = spec.run_config
        parent, name = inner.rstrip("/").rsplit("/", 1)
        run_config.name = name
        run_config.storage_path = parent
        run_config.storage_filesystem = fs
        trainer = saved_cls.__new__(saved_cls)
        trainer._init(train_loop_per_worker or spec.train_fn, "backend_config", spec.backend_config, {
            "train_loop_config": train_loop_config if train_loop_config is not None else spec.train_loop_config,
            "scaling_config": scaling_config or spec.scaling_config, "run_config": run_config,
            "datasets": datasets, "dataset_config": spec.dataset_config,
            "resume_from_checkpoint": spec.resume_from_checkpoint, "metadata": spec.metadata,
        })
        trainer._restore_dir = inner
        return trainer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_workers={self.scaling_config.num_workers}, name={self.run_config.name!r})"
