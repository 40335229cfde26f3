"""TensorBoard event files (scalars only), written synchronously with tensorboardX's
``RecordWriter`` (record framing and CRCs) and its ``Event``/``Summary`` protos.

tensorboardX's ``SummaryWriter`` starts a thread and a queue per writer, which
costs a trial-per-millisecond experiment more than the trial itself; its lower
writers append records on the caller's thread in microseconds. Their ``flush``
also fsyncs the file, which costs 3-30 ms per trial on a busy disk, so a flush here
hands the bytes to the OS without an fsync (as every other trial file does); a crash
of the driver loses nothing the OS already has. Files are written only when
tensorboardX is installed (``pip install "distcore-tune[tensorboard]"``).

``import tensorboardX`` runs its package ``__init__``, which loads its whole
``SummaryWriter`` stack and with it torch (1.5-2 s of CPU that stalled the driver's
first experiment of every process, 7 s on a busy machine). The record writer and
the protos need none of it, so unless tensorboardX is already imported,
``_light_modules`` registers the package without running its ``__init__`` and
loads only those modules; the first access to anything else in the package (e.g.
the user's ``from tensorboardX import SummaryWriter``) runs the ``__init__`` then.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
from typing import Any

_PACKAGE = "tensorboardX"
_lock = threading.Lock()


def writer_available() -> bool:
    """True when tensorboardX is installed."""
    return importlib.util.find_spec("tensorboardX") is not None


def _defer_package_init() -> None:
    """Register tensorboardX in ``sys.modules`` with its ``__init__`` not yet run (see the
    module's doc); a missing attribute runs it, once."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    state = {"ran": False}

    def __getattr__(name: str) -> Any:
        with _lock:
            if not state["ran"]:
                state["ran"] = True
                spec.loader.exec_module(package)  # type: ignore[union-attr]
                return getattr(package, name)
        raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_PACKAGE] = package


def _light_modules() -> tuple[Any, Any, Any]:
    """tensorboardX's ``Event``, ``Summary`` and ``RecordWriter``."""
    with _lock:
        if _PACKAGE not in sys.modules:
            _defer_package_init()
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.record_writer import RecordWriter

    return Event, Summary, RecordWriter


class EventFileWriter:
    """One ``events.out.tfevents.*`` file in ``logdir``; ``add_scalars`` appends one event."""

    def __init__(self, logdir: str) -> None:
        Event, self._summary, RecordWriter = _light_modules()
        self._event = Event
        now = time.time()
        self.path: str = os.path.join(
            logdir, f"events.out.tfevents.{str(now)[:10]}.{socket.gethostname()}.{os.getpid()}")
        self._records: Any = RecordWriter(self.path)
        self._records.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())

    def add_scalars(self, scalars: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if not scalars:
            return
        summary_cls = self._summary
        summary = summary_cls(value=[summary_cls.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])
        event = self._event(wall_time=wall_time or time.time(), step=step, summary=summary)
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        """Hand the buffered records to the OS (no fsync: see the module's doc)."""
        file = getattr(self._records, "_writer", None)
        if file is not None and hasattr(file, "flush"):
            file.flush()
        else:  # a tensorboardX without the attribute: its own flush (with fsync)
            self._records.flush()

    def close(self) -> None:
        self.flush()
        self._records.close()


__all__ = ["EventFileWriter", "writer_available"]
