"""TensorBoard event files (scalars only), written synchronously with tensorboardX's
``EventsWriter`` and its ``Event``/``Summary`` protos.

tensorboardX's ``SummaryWriter`` starts a thread and a queue per writer, which
costs a trial-per-millisecond experiment more than the trial itself; its lower
``EventsWriter`` appends records on the caller's thread in microseconds. Files
are written only when tensorboardX is installed (``pip install
"distcore-tune[tensorboard]"``).
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any


def writer_available() -> bool:
    """True when tensorboardX is installed."""
    return importlib.util.find_spec("tensorboardX") is not None


class EventFileWriter:
    """One ``events.out.tfevents.*`` file in ``logdir``; ``add_scalars`` appends one event."""

    def __init__(self, logdir: str) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        self._writer: Any = EventsWriter(os.path.join(logdir, "events"), filename_suffix=f".{os.getpid()}")
        self.path: str = self._writer._file_name

    def add_scalars(self, scalars: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if not scalars:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])
        self._writer.write_event(Event(wall_time=wall_time or time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


__all__ = ["EventFileWriter", "writer_available"]
