"""``tune.report`` / ``tune.get_checkpoint`` / ``tune.get_context`` inside a trial.

A trial actor installs its session here and these calls reach it directly, so a
function trial never imports ``distcore.train`` (and with it pyarrow, ~0.4 s of
actor start-up) unless the user's code does. ``train.report`` & co. work in a
trial too: the trial actor installs the same session in train's session hook
when ``distcore.train`` is loaded, or the moment the user's code imports it.
Outside a trial (e.g. inside a Trainer's workers that a trial runs) the calls go
to ``distcore.train``'s.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from typing import Any

TRAIN_SESSION_MODULE = "distcore.train.session"

_current: Any = None
_lock = threading.Lock()
_hook: _TrainSessionHook | None = None


def get_session() -> Any:
    """The trial session of this process, or None outside a tune trial actor."""
    return _current


def set_session(session: Any) -> None:
    """Install (or with None remove) the trial session, in tune and in train's hook."""
    global _current
    _current = session
    train_session = sys.modules.get(TRAIN_SESSION_MODULE)
    if train_session is not None:
        train_session.set_session(session)
    elif session is not None:
        _install_hook()


class _TrainSessionHook(importlib.abc.MetaPathFinder):
    """When the user's code imports ``distcore.train`` during a trial, hand train the session."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != TRAIN_SESSION_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader)
                return spec
        return None


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        _remove_hook()
        if _current is not None:
            module.set_session(_current)


def _install_hook() -> None:
    global _hook
    with _lock:
        if _hook is None:
            _hook = _TrainSessionHook()
            sys.meta_path.insert(0, _hook)


def _remove_hook() -> None:
    global _hook
    with _lock:
        if _hook is not None and _hook in sys.meta_path:
            sys.meta_path.remove(_hook)
        _hook = None


def _plain(value: Any) -> Any:
    """A 0-d numpy/torch value becomes the Python number it holds (results stay JSON-friendly)."""
    if getattr(value, "ndim", None) != 0 or not hasattr(value, "item") or isinstance(value, str):
        return value
    try:
        number = value.item()
    except Exception:
        return value
    return number if isinstance(number, bool | int | float) else value


def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
    """Report ``metrics`` (a dict with str keys; nested dicts allowed) from a trial, with an
    optional ``Checkpoint``.

    Example::

        def objective(config):
            for step in range(10):
                tune.report({"loss": (config["x"] - 3) ** 2 / (step + 1)})
    """
    session = _current
    if session is None:
        from distcore.train import report as train_report

        train_report(metrics, checkpoint=checkpoint)
        return
    if not isinstance(metrics, dict):
        raise TypeError(f"tune.report: metrics must be a dict, got {type(metrics).__name__}")
    bad = [k for k in metrics if not isinstance(k, str)]
    if bad:
        raise TypeError(f"tune.report: metric names must be str, got {bad!r}")
    if checkpoint is not None and not (hasattr(checkpoint, "to_directory") and hasattr(checkpoint, "path")):
        raise TypeError(f"tune.report: checkpoint must be a tune.Checkpoint, got {type(checkpoint).__name__}")
    session.report({k: _plain(v) for k, v in metrics.items()}, checkpoint)


def get_checkpoint() -> Any:
    """The checkpoint this trial resumes from (after a failure, a pause or a PBT exploit), else None."""
    session = _current
    if session is None:
        from distcore.train import get_checkpoint as train_get_checkpoint

        return train_get_checkpoint()
    return session.get_checkpoint()


def get_context() -> Any:
    """The trial's context: ``get_trial_name()``, ``get_trial_id()``, ``get_trial_dir()``, ..."""
    session = _current
    if session is None:
        from distcore.train import get_context as train_get_context

        return train_get_context()
    return session.get_context()


__all__ = ["get_checkpoint", "get_context", "get_session", "report", "set_session"]
