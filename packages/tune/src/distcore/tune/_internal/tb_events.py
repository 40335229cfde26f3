"""TensorBoard event files (scalars only), written directly: TFRecord framing around
hand-encoded ``Event``/``Summary`` protos.

tensorboardX's ``SummaryWriter`` starts a thread and a queue per writer, which
costs a trial-per-millisecond experiment more than the trial itself; one small
synchronous file per trial costs microseconds per scalar. Files are written only
when a TensorBoard writer library is installed (the user reads them with it).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import time
from typing import IO


def writer_available() -> bool:
    """True when tensorboardX, or tensorboard (torch.utils.tensorboard's backend), is installed."""
    return importlib.util.find_spec("tensorboardX") is not None or importlib.util.find_spec("tensorboard") is not None


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited field
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, scalars: dict[str, float] | None = None,
                 file_version: str | None = None) -> bytes:
    """An ``Event`` proto: wall_time (1, double), step (2, int64), file_version (3), summary (5)."""
    out = bytearray(b"\x09" + struct.pack("<d", wall_time))
    if step:
        out += b"\x10" + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode())
    if scalars:
        # Summary.value (1) = Value{tag (1), simple_value (2, float)}
        summary = b"".join(_field(1, _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
                           for tag, value in scalars.items())
        out += _field(5, summary)
    return bytes(out)


def frame(record: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC32C, the data, its masked CRC32C."""
    header = struct.pack("<Q", len(record))
    return header + struct.pack("<I", _masked(header)) + record + struct.pack("<I", _masked(record))


class EventFileWriter:
    """One ``events.out.tfevents.*`` file in ``logdir``; ``add_scalars`` appends one event."""

    def __init__(self, logdir: str) -> None:
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._file: IO[bytes] = open(self.path, "ab")
        self._file.write(frame(encode_event(now, file_version="brain.Event:2")))

    def add_scalars(self, scalars: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if scalars:
            self._file.write(frame(encode_event(wall_time or time.time(), step, scalars)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


__all__ = ["EventFileWriter", "crc32c", "encode_event", "frame", "writer_available"]
