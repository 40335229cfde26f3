"""Record boundaries of a CSV file whose quoted values may hold newlines.

A newline ends a record only outside quotes. With RFC 4180 quoting (a quote
inside a quoted value is doubled) a byte is inside quotes exactly when an odd
number of quote characters precede it in the file, so one sequential scan that
counts quotes finds, for each cut, the first newline at or after it that ends a
record. The scan reads the file in chunks (bounded memory) at memchr speed
(numpy over the raw bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_CHUNK = 8 * 1024 * 1024
_NL = 10


@dataclass
class RecordLayout:
    """``bounds``: the cuts moved to record starts; ``header_end``: the end of the first record;
    ``quoted_newlines``: some quoted value holds a newline (the parser must be told)."""

    bounds: list[int]
    header_end: int
    quoted_newlines: bool


def record_layout(f: Any, size: int, cuts: list[int], quote: bytes = b'"') -> RecordLayout:
    """Scan the open file ``f`` (``read_at(n, offset)``) once; ``cuts`` ascend from 0 to ``size``.

    Each inner cut ``c`` becomes the index just past the first record-ending newline at or
    after ``c - 1`` (``size`` when there is none), so the ranges cover every record once.
    """
    q = np.uint8(quote[0])
    inner = list(cuts[1:-1])
    found: list[int] = []
    header_end = -1
    quoted = False
    parity = 0  # quotes seen before the chunk, mod 2
    pos = 0
    while pos < size:
        chunk = f.read_at(min(_CHUNK, size - pos), pos)
        if not chunk:
            break
        arr = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(arr == _NL)
        quotes = arr == q
        if quotes.any():
            before = np.cumsum(quotes, dtype=np.int64)[newlines] if len(newlines) else newlines
            inside = ((before + parity) & 1).astype(bool)
            parity = (parity + int(np.count_nonzero(quotes))) & 1
        else:
            inside = np.full(len(newlines), bool(parity))
        if inside.any():
            quoted = True
        ends = newlines[~inside] + pos + 1  # record starts (just past a record-ending newline)
        if header_end < 0 and len(ends):
            header_end = int(ends[0])
        while len(found) < len(inner) and len(ends):
            i = int(np.searchsorted(ends, inner[len(found)], side="left"))  # first end >= cut, i.e. nl >= cut-1
            if i == len(ends):
                break
            found.append(int(ends[i]))
        pos += len(chunk)
    found.extend([size] * (len(inner) - len(found)))
    return RecordLayout([0, *found, size], size if header_end < 0 else header_end, quoted)
