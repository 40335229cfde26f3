"""Typed errors of train."""

from __future__ import annotations


class TrainingFailedError(RuntimeError):
    """A run failed for good (its failures exceeded ``FailureConfig.max_failures``).

    ``result`` holds what the run left (metrics so far, latest checkpoint, path),
    so ``Trainer.restore(path)`` or ``resume_from_checkpoint`` can continue it.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class WorkerGroupError(RuntimeError):
    """A training worker raised or died; the message names its rank and carries its traceback."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank


class CollectiveTimeoutError(WorkerGroupError):
    """A collective (allreduce, barrier...) timed out: the message names the ranks that waited."""


class InsufficientResourcesError(ValueError):
    """The worker gang can never fit the cluster: the message names the shortfall."""
