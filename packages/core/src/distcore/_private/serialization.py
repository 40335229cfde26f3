"""Serialization of values: cloudpickle, pickle protocol 5, out-of-band buffers.

A serialized value is one contiguous byte layout, so it can be copied into a
shared-memory segment as is and read back zero-copy::

    u32 magic | u32 nbuf | u64 len(pickle) | nbuf x (u64 offset, u64 length)
    pickle bytes | (64-byte aligned) buffer 0 | buffer 1 | ...

Large buffers (numpy arrays, Arrow columns) are pickled out of band, so a
reader's arrays point straight into the segment (read-only).

While a value is pickled, every ``ObjectRef`` inside it reports itself to the
active context, so the caller learns which refs the value contains.
"""

from __future__ import annotations

import pickle
import struct
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle

_MAGIC = 0xDC01
_HEAD = struct.Struct("<IIQ")
_BUF = struct.Struct("<QQ")
_ALIGN = 64

_local = threading.local()


class ErrorValue:
    """A stored exception: ``get`` raises it instead of returning it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> Any:
        return (ErrorValue, (self.error,))


class SerializedObject:
    """The result of :func:`serialize`: layout parts and contained refs."""

    __slots__ = ("pickled", "buffers", "contained_refs", "total_size", "_offsets")

    def __init__(self, pickled: bytes, buffers: list[memoryview], contained_refs: list[Any]) -> None:
        self.pickled = pickled
        self.buffers = buffers
        self.contained_refs = contained_refs
        offset = _HEAD.size + _BUF.size * len(buffers) + len(pickled)
        offsets = []
        for buf in buffers:
            offset = _align(offset)
            offsets.append(offset)
            offset += buf.nbytes
        self._offsets = offsets
        self.total_size = offset

    def write_to(self, out: memoryview) -> None:
        """Write the layout into ``out`` (at least ``total_size`` bytes)."""
        for off, chunk in self.chunks():
            out[off : off + chunk.nbytes] = chunk

    def chunks(self) -> list[tuple[int, memoryview]]:
        """The layout as ``(offset, bytes)`` pieces, for ``pwrite`` into a segment.

        The gaps between pieces (alignment padding) are left unwritten.
        """
        head = bytearray(_HEAD.size + _BUF.size * len(self.buffers))
        _HEAD.pack_into(head, 0, _MAGIC, len(self.buffers), len(self.pickled))
        pos = _HEAD.size
        for off, buf in zip(self._offsets, self.buffers, strict=False):
            _BUF.pack_into(head, pos, off, buf.nbytes)
            pos += _BUF.size
        out = [(0, memoryview(head)), (pos, memoryview(self.pickled))]
        for off, buf in zip(self._offsets, self.buffers, strict=False):
            out.append((off, buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf))
        return out

    def to_bytes(self) -> bytes:
        if not self.buffers:
            head = _HEAD.pack(_MAGIC, 0, len(self.pickled))
            return head + self.pickled
        out = bytearray(self.total_size)
        self.write_to(memoryview(out))
        return bytes(out)


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class _Collector:
    def __init__(self) -> None:
        self.refs: list[Any] = []


def note_contained_ref(ref: Any) -> None:
    """Called by ``ObjectRef.__reduce__``: record a ref being pickled."""
    stack = getattr(_local, "stack", None)
    if stack:
        stack[-1].refs.append(ref)


# Values this common (flags, counts, timeouts, short names) are pickled by the C pickler
# directly: a whole cloudpickle round (a Pickler object, the ref collector) costs ~15 us.
_PLAIN_TYPES = frozenset({type(None), bool, int, float})
_PLAIN_MAX_LEN = 256


def serialize_plain(value: Any) -> bytes | None:
    """The layout of a small ``None``/bool/int/float/str/bytes value (it holds no refs and no
    buffers); None for any other value, which :func:`serialize` handles."""
    kind = type(value)
    if kind in _PLAIN_TYPES or ((kind is str or kind is bytes) and len(value) <= _PLAIN_MAX_LEN):
        pickled = pickle.dumps(value, protocol=5)
        if len(pickled) <= 2 * _PLAIN_MAX_LEN:  # not a huge int
            return _HEAD.pack(_MAGIC, 0, len(pickled)) + pickled
    return None


def serialize(value: Any, describe: Callable[[], str] | None = None) -> SerializedObject:
    """Pickle ``value``; raise a ``TypeError`` naming it when it cannot be."""
    buffers: list[pickle.PickleBuffer] = []
    collector = _Collector()
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(collector)
    try:
        pickled = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:
        what = describe() if describe else f"a value of type {type(value).__name__}"
        raise TypeError(
            f"Could not serialize {what}: {type(exc).__name__}: {exc}. "
            "Pass only picklable values (no open files, locks, sockets or generators), "
            "or create the object inside the task."
        ) from exc
    finally:
        stack.pop()
    views = [b.raw() for b in buffers]
    return SerializedObject(pickled, views, collector.refs)


def deserialize(data: memoryview | bytes) -> Any:
    """Rebuild a value from its layout; buffers stay views into ``data``."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    magic, nbuf, plen = _HEAD.unpack_from(mv, 0)
    if magic != _MAGIC:
        raise ValueError("corrupt object: bad magic number")
    pos = _HEAD.size
    bufs = []
    for _ in range(nbuf):
        off, length = _BUF.unpack_from(mv, pos)
        bufs.append(mv[off : off + length])
        pos += _BUF.size
    return pickle.loads(mv[pos : pos + plen], buffers=bufs)


def dumps_plain(value: Any) -> bytes:
    """Serialize to bytes (inline), for small values and errors."""
    return serialize(value).to_bytes()
