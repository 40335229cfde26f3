"""Exceptions raised by distcore.

Every error a remote failure can produce derives from :class:`DistcoreError`.
Ray's names are kept as aliases (``RayTaskError`` is ``TaskError``, ...), so
``except ray.exceptions.RayActorError`` keeps working after the import swap.

Example::

    import distcore
    from distcore.exceptions import TaskError

    @distcore.remote
    def boom():
        raise ValueError("bad")

    try:
        distcore.get(boom.remote())
    except ValueError as e:          # the user's class still matches
        assert isinstance(e, TaskError)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DistcoreError",
    "TaskError",
    "ActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "WorkerCrashedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
    "GetTimeoutError",
    "TaskCancelledError",
    "OutOfMemoryError",
    "ObjectStoreFullError",
    "RuntimeEnvSetupError",
    "NodeDiedError",
    "PlacementGroupSchedulingError",
    "AuthenticationError",
    "VersionMismatchError",
    "CrossLanguageError",
    "RaySystemError",
    "RayError",
    "RayTaskError",
    "RayActorError",
    "ActorUnschedulableError",
    "TaskUnschedulableError",
    "AsyncioActorExit",
]


class DistcoreError(Exception):
    """Base class of every error distcore raises for a remote failure."""


class TaskError(DistcoreError):
    """A task or actor method raised; carries the remote traceback.

    ``get`` raises an instance that is both a ``TaskError`` and an instance of
    the user's exception class (see :meth:`as_instanceof_cause`).
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        self.actor_repr = actor_repr
        # Not super(): in the dual class the next __init__ is the user's, with its own signature.
        Exception.__init__(self, function_name, traceback_str, cause, pid, ip, actor_repr)

    def __reduce__(self) -> Any:
        return (
            TaskError,
            (self.function_name, self.traceback_str, self.cause, self.pid, self.ip, self.actor_repr),
        )

    def __str__(self) -> str:
        where = f" (pid={self.pid}, ip={self.ip})" if self.pid else ""
        who = f" of actor {self.actor_repr}" if self.actor_repr else ""
        return f"{type(self.cause).__name__ if self.cause else 'Error'} in {self.function_name}{who}{where}:\n{self.traceback_str}"

    def as_instanceof_cause(self) -> TaskError:
        """Return an error that is also an instance of the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, TaskError):
            return self
        if not _can_subclass(cause_cls):
            return self
        name = f"TaskError({cause_cls.__name__})"
        try:
            dual = _DUAL_CLASSES.get(cause_cls)
            if dual is None:
                dual = type(name, (TaskError, cause_cls), {"__init__": _dual_init, "__reduce__": _dual_reduce})
                dual.__module__ = cause_cls.__module__
                _DUAL_CLASSES[cause_cls] = dual
        except TypeError:
            return self
        err = dual.__new__(dual)
        _dual_init(err, self)
        return err


_DUAL_CLASSES: dict[type, type] = {}


def _can_subclass(cls: type) -> bool:
    # Exceptions with a C-level layout conflicting with ours cannot be mixed in.
    return issubclass(cls, Exception) and not getattr(cls, "__final__", False)


def _dual_init(self: TaskError, base: TaskError) -> None:
    TaskError.__init__(
        self, base.function_name, base.traceback_str, base.cause, base.pid, base.ip, base.actor_repr
    )
    if base.cause is not None:
        # Give the user's attributes (e.g. OSError.errno) their values.
        try:
            self.__dict__.update(getattr(base.cause, "__dict__", {}))
        except Exception:
            pass
    self.args = (str(self),)


def _dual_reduce(self: TaskError) -> Any:
    return (_rebuild_dual, (TaskError.__reduce__(self)[1],))


def _rebuild_dual(args: tuple) -> TaskError:
    return TaskError(*args).as_instanceof_cause()


class ActorError(DistcoreError):
    """Base of the errors about an actor that cannot run the call."""

    def __init__(self, message: str = "The actor died.", actor_id: str | None = None) -> None:
        self.actor_id = actor_id
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.actor_id))

    def __str__(self) -> str:
        return self.message


class ActorDiedError(ActorError):
    """The actor is dead: killed, crashed, its node died, or its constructor raised."""


class ActorUnavailableError(ActorError):
    """The actor is temporarily unreachable (for example, restarting)."""


class ActorUnschedulableError(ActorError):
    """The actor can never be placed (its placement group was removed, ...)."""


class WorkerCrashedError(DistcoreError):
    """The worker process running the task died before it finished."""


class ObjectLostError(DistcoreError):
    """Every copy of an object is lost and it cannot be reconstructed."""

    def __init__(self, object_id: str = "", owner: str = "", message: str = "") -> None:
        self.object_id = object_id
        self.owner = owner
        self.message = message or (
            f"Object {object_id} is lost: every copy is gone"
            + (f" (owner: {owner})" if owner else "")
            + " and it was created by put, so it cannot be reconstructed."
        )
        super().__init__(self.message)

    def __reduce__(self) -> Any:
        return (type(self), (self.object_id, self.owner, self.message))

    def __str__(self) -> str:
        return self.message


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (created it) has died."""


class ObjectReconstructionFailedError(ObjectLostError):
    """Re-executing the object's lineage failed or ran out of retries."""


class GetTimeoutError(DistcoreError, TimeoutError):
    """``get`` or ``wait`` ran past its ``timeout``."""


class TaskCancelledError(DistcoreError):
    """The task was cancelled with ``distcore.cancel``."""

    def __init__(self, task_id: str | None = None, message: str | None = None) -> None:
        self.task_id = task_id
        self.message = message or (f"Task {task_id} was cancelled." if task_id else "The task was cancelled.")
        super().__init__(self.message)

    def __reduce__(self) -> Any:
        return (type(self), (self.task_id, self.message))

    def __str__(self) -> str:
        return self.message


class OutOfMemoryError(DistcoreError):
    """The node ran low on memory and the memory monitor killed the worker."""


class ObjectStoreFullError(DistcoreError):
    """The shared-memory store is full and neither eviction nor spilling can help."""


class RuntimeEnvSetupError(DistcoreError):
    """The task's or actor's ``runtime_env`` could not be set up."""


class NodeDiedError(DistcoreError):
    """The node running the task died."""


class PlacementGroupSchedulingError(DistcoreError):
    """A placement group can never be placed on this cluster."""


class TaskUnschedulableError(DistcoreError):
    """A task can never be placed (for example, its placement group was removed)."""


class AuthenticationError(DistcoreError):
    """The cluster refused the call: missing or wrong cluster token."""


class VersionMismatchError(DistcoreError):
    """A driver or node runs a different distcore version than the head."""


class CrossLanguageError(DistcoreError):
    """Kept for Ray compatibility; distcore is Python only."""


class AsyncioActorExit(DistcoreError):
    """Raised inside an async actor by ``exit_actor``."""


# Ray's names.
RayError = DistcoreError
RaySystemError = DistcoreError
RayTaskError = TaskError
RayActorError = ActorError
