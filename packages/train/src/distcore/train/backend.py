"""Backends: how a framework sets up its distributed environment on the worker gang.

``DataParallelTrainer`` launches the workers and runs the training function; a
backend prepares each framework in between. To plug in a framework, subclass
:class:`BackendConfig` (its settings) and :class:`Backend` (the hooks), and
pass the config to ``DataParallelTrainer(..., backend_config=...)``.

Order of calls, for each start of the gang (and again after each restart):

1. the workers are placed (placement group) and ranked: world, local and node ranks;
2. ``Backend.on_start(worker_group, backend_config)``: set up the framework's
   process group, e.g. environment variables and ``init_process_group``;
3. ``Backend.on_training_start(worker_group, backend_config)``: last step
   before the training function runs on every worker;
4. the training function runs; reports flow back to the trainer;
5. ``Backend.on_shutdown(worker_group, backend_config)``: tear down, before the
   workers are ended, when the training function finished on every worker (after a
   failure the workers are ended without it: a rank stuck in a collective would hold it).

Example: a backend that hands TensorFlow its cluster spec::

    class TFConfig(BackendConfig):
        @property
        def backend_cls(self):
            return TFBackend

    class TFBackend(Backend):
        def on_start(self, worker_group, backend_config):
            addrs = [f"{w.node_ip}:{port}" for w, port in zip(worker_group.workers,
                     worker_group.execute(find_free_port))]
            for rank in range(len(worker_group)):
                spec = {"cluster": {"worker": addrs}, "task": {"type": "worker", "index": rank}}
                worker_group.execute_single(rank, os.environ.__setitem__, "TF_CONFIG", json.dumps(spec))

``worker_group.execute(fn, *args)`` runs ``fn`` on every worker (in rank order)
and returns the results; ``execute_single(rank, fn, *args)`` runs it on one;
``worker_group.workers[rank]`` has ``node_id``, ``node_ip``, ``pid``,
``gpu_ids``, ``world_rank``, ``local_rank``, ``node_rank``.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol

__all__ = ["Backend", "BackendConfig", "WorkerGroupProtocol", "find_free_port"]


class WorkerGroupProtocol(Protocol):
    workers: list[Any]

    def __len__(self) -> int: ...

    def execute(self, fn: Any, *args: Any, **kwargs: Any) -> list[Any]: ...

    def execute_single(self, rank: int, fn: Any, *args: Any, **kwargs: Any) -> Any: ...


class Backend:
    """Hooks that set up (and tear down) a framework on the worker gang; every hook is optional."""

    #: modules each worker starts importing as soon as it exists (e.g. ("torch",))
    preload_modules: tuple[str, ...] = ()

    def on_start(self, worker_group: WorkerGroupProtocol, backend_config: BackendConfig) -> None:
        """After the workers are placed and ranked, before training starts."""

    def on_training_start(self, worker_group: WorkerGroupProtocol, backend_config: BackendConfig) -> None:
        """Right before the training function starts on every worker."""

    def on_shutdown(self, worker_group: WorkerGroupProtocol, backend_config: BackendConfig) -> None:
        """Before the workers are ended, once training finished on every worker."""


class BackendConfig:
    """Settings of a backend; ``backend_cls`` names the :class:`Backend` that uses them."""

    @property
    def backend_cls(self) -> type[Backend]:
        return Backend

    @property
    def train_func_context(self) -> Any:
        return None


def find_free_port() -> int:
    """A TCP port free on this host right now (run it on the worker that will listen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return int(s.getsockname()[1])


def set_env(values: dict[str, str]) -> None:
    """Set environment variables in the calling process (run it on workers)."""
    os.environ.update(values)
