"""The process-wide core worker (None until init or worker start)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

_core: CoreWorker | None = None


def set_core_worker(core: CoreWorker | None) -> None:
    global _core
    _core = core


def core_worker() -> CoreWorker | None:
    return _core
