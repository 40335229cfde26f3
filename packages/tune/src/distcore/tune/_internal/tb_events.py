"""TensorBoard event files (scalars only), written synchronously with tensorboardX's
``RecordWriter`` (record framing and CRCs) and its ``Event``/``Summary`` protos.

tensorboardX's ``SummaryWriter`` starts a thread and a queue per writer, which
costs a trial-per-millisecond experiment more than the trial itself; its lower
writers append records on the caller's thread in microseconds. Their ``flush``
also fsyncs the file, which costs 3-30 ms per trial on a busy disk, so a flush here
hands the bytes to the OS without an fsync (as every other trial file does); a crash
of the driver loses nothing the OS already has. Files are written only when
tensorboardX is installed (``pip install "distcore-tune[tensorboard]"``).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from typing import Any


def writer_available() -> bool:
    """True when tensorboardX is installed."""
    return importlib.util.find_spec("tensorboardX") is not None


class EventFileWriter:
    """One ``events.out.tfevents.*`` file in ``logdir``; ``add_scalars`` appends one event."""

    def __init__(self, logdir: str) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import RecordWriter

        now = time.time()
        self.path: str = os.path.join(
            logdir, f"events.out.tfevents.{str(now)[:10]}.{socket.gethostname()}.{os.getpid()}")
        self._records: Any = RecordWriter(self.path)
        self._records.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())

    def add_scalars(self, scalars: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if not scalars:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])
        self._records.write(Event(wall_time=wall_time or time.time(), step=step, summary=summary).SerializeToString())

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
