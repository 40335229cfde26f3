"""The session hook: how ``train.report`` & co. reach whatever runs the training function.

For libraries built on train (tune): ``train.report``, ``train.get_checkpoint``,
``train.get_context`` and ``train.get_dataset_shard`` delegate to the current
:class:`Session`. A Trainer's workers install one; tune installs its own in
its trial actors. Any object with these four methods is a Session.

Example (a library's trial runner)::

    from distcore.train import session

    class MySession:
        def report(self, metrics, checkpoint=None): ...
        def get_checkpoint(self): return None
        def get_context(self): return TrainContext(trial_name="t0")
        def get_dataset_shard(self, name): return None

    session.set_session(MySession())
    try:
        user_function(config)          # its train.report(...) calls reach MySession
    finally:
        session.set_session(None)

The current session is per thread/context (a ``contextvars.ContextVar``), with a
process-wide fallback so that threads the user's code starts see it too.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from distcore.train._internal.checkpoint import Checkpoint
    from distcore.train._internal.context import TrainContext

__all__ = ["Session", "get_session", "set_session"]


@runtime_checkable
class Session(Protocol):
    """What runs a training function: receives its reports, serves its checkpoint, context and data."""

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None = None) -> None:
        """Take one report (metrics, optionally with a checkpoint) from the training function."""

    def get_checkpoint(self) -> Checkpoint | None:
        """The checkpoint to resume from, or None on a fresh start."""

    def get_context(self) -> TrainContext:
        """The worker's (or trial's) context."""

    def get_dataset_shard(self, name: str) -> Any:
        """This worker's ``DataIterator`` of dataset ``name`` (None when there is none)."""


_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar("distcore_train_session", default=None)
_global: Session | None = None
_lock = threading.Lock()


def set_session(session: Session | None) -> None:
    """Install ``session`` for this thread/context (and as the process-wide fallback); None removes it."""
    global _global
    if session is not None:
        missing = [m for m in ("report", "get_checkpoint", "get_context", "get_dataset_shard")
                   if not callable(getattr(session, m, None))]
        if missing:
            raise TypeError(f"set_session: {type(session).__name__} is not a Session: it lacks {missing}")
    with _lock:
        previous = _current.get()
        _current.set(session)
        if session is not None:
            _global = session
        elif _global is previous:
            _global = None


def get_session() -> Session | None:
    """The current session: this context's, else the process-wide one, else None."""
    session = _current.get()
    return session if session is not None else _global
