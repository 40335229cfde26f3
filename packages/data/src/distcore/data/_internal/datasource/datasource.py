"""The datasource interface: a source hands the engine read tasks, each yielding blocks.

Call order, from the engine's side:

1. the optimizer may replace the source with ``with_columns(cols)``,
   ``with_filter(expr)`` or ``with_limit(n)`` when ``supports_projection``,
   ``supports_filter`` or ``supports_limit`` is true (each returns a NEW source);
2. ``estimate_inmemory_data_size()`` sizes the read for the memory budget;
3. ``get_read_tasks(parallelism)`` returns the :class:`ReadTask` list;
4. each ``ReadTask`` is pickled into a distcore task and called there: it yields
   ``pyarrow.Table`` blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from distcore.data._internal.datasource._meta import BlockMetadata

#: rows a read task aims for per yielded block when a source can choose
DEFAULT_TARGET_BLOCK_ROWS = 1 << 20


@dataclass
class ReadTask:
    """One unit of reading: ``read_fn()`` yields the blocks; ``metadata`` holds estimates."""

    read_fn: Callable[[], Iterable[pa.Table]]
    metadata: BlockMetadata

    def __call__(self) -> Iterator[pa.Table]:
        yield from self.read_fn()


class Datasource:
    """Base class of every source; subclasses implement :meth:`get_read_tasks`."""

    supports_projection: bool = False
    supports_filter: bool = False
    supports_limit: bool = False

    def get_name(self) -> str:
        return type(self).__name__.removesuffix("Datasource") or "Datasource"

    def get_read_tasks(self, parallelism: int) -> list[ReadTask]:
        raise NotImplementedError

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def schema(self) -> pa.Schema | None:
        """The output schema when known without reading (None otherwise)."""
        return None

    def with_columns(self, columns: list[str]) -> Datasource:
        raise NotImplementedError(f"{self.get_name()} does not support projection pushdown")

    def with_filter(self, expr: pc.Expression) -> Datasource:
        raise NotImplementedError(f"{self.get_name()} does not support filter pushdown")

    def with_limit(self, n: int) -> Datasource:
        raise NotImplementedError(f"{self.get_name()} does not support limit pushdown")


def split_evenly(items: list[Any], parallelism: int) -> list[list[Any]]:
    """``items`` in at most ``parallelism`` contiguous, non-empty groups of near-equal length."""
    if not items:
        return []
    n = max(1, min(parallelism, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def limit_tables(tables: Iterable[pa.Table], limit: int | None) -> Iterator[pa.Table]:
    """Yield from ``tables`` until ``limit`` rows have been produced (all of them for None)."""
    if limit is None:
        yield from tables
        return
    left = limit
    for table in tables:
        if left <= 0:
            return
        if table.num_rows > left:
            table = table.slice(0, left)
        left -= table.num_rows
        yield table


def resolve_parallelism(parallelism: int | None, num_units: int, default_max: int = 200) -> int:
    """The number of read tasks: ``parallelism`` if positive, else one per unit up to ``default_max``."""
    if parallelism is not None and parallelism > 0:
        return parallelism
    return max(1, min(num_units, default_max))
