"""Where each creation/read function comes from: the sources side's ``read_api`` when it
provides the name, else the engine's fallback (range, from_* only)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def _missing(name: str) -> Callable[..., Any]:
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"distcore.data.{name} is not available in this build")

    fn.__name__ = name
    return fn


def get(name: str) -> Callable[..., Any]:
    try:
        read_api = importlib.import_module("distcore.data._internal.read_api")
    except ModuleNotFoundError as exc:
        if exc.name != "distcore.data._internal.read_api":
            raise
        read_api = None
    if read_api is not None and hasattr(read_api, name):
        return getattr(read_api, name)
    from distcore.data._internal import fallback_sources

    if name == "read_datasource":
        return _read_datasource
    return getattr(fallback_sources, name, None) or _missing(name)


def _read_datasource(datasource: Any, *, parallelism: int = -1, override_num_blocks: int | None = None) -> Any:
    from distcore.data._internal.logical import LogicalPlan, Read
    from distcore.data.dataset import Dataset

    return Dataset(LogicalPlan(Read(datasource, override_num_blocks or parallelism)))
