"""Advice appended to a task's error when the cause is a known setup mistake.

The traceback says *what* failed on the worker; a hint says *why that
usually happens* and what to change, e.g. a module the driver imports from
its own ``sys.path`` that the worker's Python cannot find.
"""

from __future__ import annotations

import os
import socket
import sys


def _causes(exc: BaseException):
    """``exc`` and the exceptions it was raised from or while handling (bounded)."""
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1


def missing_module(exc: BaseException) -> str | None:
    """The name of the module a ``ModuleNotFoundError`` in ``exc``'s chain could not find."""
    for cause in _causes(exc):
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            return cause.name
    return None


def hint_for(exc: BaseException) -> str:
    """Text to append to the task's traceback ('' when there is nothing to add)."""
    name = missing_module(exc)
    if name is None:
        return ""
    top = name.split(".", 1)[0]
    return (
        f"\nThe module {name!r} is missing on the worker (host {socket.gethostname()}, Python "
        f"{sys.executable}, cwd {os.getcwd()}): workers do not see the driver's sys.path or local files. "
        f"Ship it with the job or task: runtime_env={{'py_modules': ['path/to/{top}.py']}} (or its package "
        "directory), or runtime_env={'working_dir': '.'} for the driver's directory; "
        f"or install {top!r} into the Python environment of every node."
    )
