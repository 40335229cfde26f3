"""TensorBoard event files (scalars only), written synchronously with tensorboardX's
``Event``/``Summary`` protos and its CRC-32C, in TFRecord framing (see ``EventFileWriter``).

tensorboardX's ``SummaryWriter`` starts a thread and a queue per writer, which
costs a trial-per-millisecond experiment more than the trial itself; here records are
framed on the caller's thread in microseconds. tensorboardX's ``flush`` also fsyncs the file, which costs 3-30 ms per trial on a busy disk, so a flush here
hands the bytes to the OS without an fsync (as every other trial file does); a crash
of the driver loses nothing the OS already has. Files are written only when
tensorboardX is installed (``pip install "distcore-tune[tensorboard]"``).

``import tensorboardX`` runs its package ``__init__``, which loads its whole
``SummaryWriter`` stack and with it torch (1.5-2 s of CPU that stalled the driver's
first experiment of every process, 7 s on a busy machine). The protos and the CRC
need none of it, so unless tensorboardX is already imported,
``_light_modules`` registers the package without running its ``__init__`` and
loads only those modules; the first access to anything else in the package (e.g.
the user's ``from tensorboardX import SummaryWriter``) runs the ``__init__`` then.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
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
    """tensorboardX's ``Event`` and ``Summary`` protos and its CRC-32C."""
    with _lock:
        if _PACKAGE not in sys.modules:
            _defer_package_init()
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    return Event, Summary, crc32c


_HOST_PID: tuple[str, int] | None = None


def _host_pid() -> tuple[str, int]:
    global _HOST_PID
    if _HOST_PID is None or _HOST_PID[1] != os.getpid():
        _HOST_PID = (socket.gethostname(), os.getpid())
    return _HOST_PID


class EventFileWriter:
    """One ``events.out.tfevents.*`` file in ``logdir``; ``add_scalars`` appends one event.

    Records use the TFRecord framing TensorBoard reads (little-endian length, masked CRC-32C
    of the length, the serialized ``Event``, masked CRC-32C of it). They collect in memory and
    ``flush`` appends them with one ``write`` on a raw descriptor (opened at the first flush):
    a trial's event file costs three system calls, not the eight of a buffered file object.
    """

    def __init__(self, logdir: str) -> None:
        self._event, self._summary, self._crc = _light_modules()
        now = time.time()
        host, pid = _host_pid()
        self.path: str = os.path.join(logdir, f"events.out.tfevents.{str(now)[:10]}.{host}.{pid}")
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        try:  # (the same second, process and directory name the same file: it is appended to)
            self._end = os.path.getsize(self.path)
        except FileNotFoundError:
            self._end = 0
        self._add(self._event(wall_time=now, file_version="brain.Event:2").SerializeToString())

    def _masked(self, data: bytes) -> bytes:
        crc = self._crc(data) & 0xFFFFFFFF
        return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

    def _add(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        record = header + self._masked(header) + data + self._masked(data)
        self._pending.append(record)
        self._pending_bytes += len(record)

    def position(self) -> int:
        """Where the file ends once the pending records are written."""
        return self._end + self._pending_bytes

    def add_scalars(self, scalars: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if not scalars:
            return
        summary_cls = self._summary
        summary = summary_cls(value=[summary_cls.Value(tag=tag, simple_value=value) for tag, value in scalars.items()])
        self._add(self._event(wall_time=wall_time or time.time(), step=step, summary=summary).SerializeToString())

    def flush(self) -> None:
        """Hand the collected records to the OS (no fsync: see the module's doc)."""
        if not self._pending:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        view = memoryview(b"".join(self._pending))
        self._pending.clear()
        self._end += self._pending_bytes
        self._pending_bytes = 0
        while view:
            view = view[os.write(self._fd, view):]

    def truncate(self, end: int) -> None:
        """Cut the file back to ``end`` bytes (records added since then are dropped)."""
        self.flush()
        if os.path.exists(self.path):
            os.truncate(self.path, end)
        self._end = end

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars of an event file: tag -> [(step, value), ...] (how tests read them back)."""
    event_cls = _light_modules()[0]
    scalars: dict[str, list[tuple[int, float]]] = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        record = data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4
        event = event_cls.FromString(record)
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


__all__ = ["EventFileWriter", "read_scalars", "writer_available"]
