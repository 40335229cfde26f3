"""DataIterator: batches, rows and torch tensors from a stream of blocks.

``Dataset.iterator()`` and ``Dataset.streaming_split(n)`` return these; a
split's iterator is picklable and can be handed to an actor (e.g. a train worker).

Example::

    it = ds.iterator()
    for batch in it.iter_batches(batch_size=128, batch_format="numpy"):
        ...
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

import distcore
from distcore.data._internal import block as B
from distcore.data._internal.batch import Batcher, check_batch_format, to_batch


class DataIterator:
    """Iterate over a dataset's output (base class; subclasses provide the block stream)."""

    def _iter_blocks(self, stop: threading.Event | None = None) -> Iterator[pa.Table]:  # pragma: no cover
        """The blocks; a producer thread sets ``stop`` when the consumer went away."""
        raise NotImplementedError

    def stats(self) -> str:
        return ""

    # -- core iteration
    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: int | None = 256,
                     batch_format: str | None = "default", drop_last: bool = False,
                     local_shuffle_buffer_size: int | None = None, local_shuffle_seed: int | None = None,
                     _collate_fn: Callable | None = None) -> Iterator[Any]:
        """Batches of ``batch_size`` rows (None: one per block) as numpy dicts, DataFrames or Tables."""
        fmt = check_batch_format(batch_format)
        if local_shuffle_buffer_size is not None and (not isinstance(local_shuffle_buffer_size, int)
                                                      or local_shuffle_buffer_size <= 0):
            raise ValueError(f"local_shuffle_buffer_size must be a positive int, got {local_shuffle_buffer_size!r}")
        if prefetch_batches < 0:
            raise ValueError(f"prefetch_batches must be >= 0, got {prefetch_batches}")
        batcher = Batcher(batch_size)
        blocks = _prefetch(self._iter_blocks, prefetch_batches)
        if local_shuffle_buffer_size:
            tables = _local_shuffle(blocks, batch_size or 1, local_shuffle_buffer_size, local_shuffle_seed)
            batcher = Batcher(batch_size)
        else:
            tables = blocks

        def batches() -> Iterator[pa.Table]:
            for table in tables:
                yield from batcher.add(table)
            for last in batcher.finish():
                if drop_last and batch_size is not None and last.num_rows < batch_size:
                    return
                yield last

        for table in batches():
            yield to_batch(table, fmt)

    def iter_rows(self, *, prefetch_batches: int = 1) -> Iterator[dict[str, Any]]:
        """Rows as dicts."""
        for table in _prefetch(self._iter_blocks, prefetch_batches):
            yield from B.rows_of(table)

    def iter_torch_batches(self, *, prefetch_batches: int = 1, batch_size: int | None = 256,
                           dtypes: Any = None, device: str | Any = "auto", collate_fn: Callable | None = None,
                           drop_last: bool = False, local_shuffle_buffer_size: int | None = None,
                           local_shuffle_seed: int | None = None) -> Iterator[Any]:
        """Batches as dicts of torch tensors (``dtypes``: one dtype or per column; ``device``: where)."""
        import torch

        if device == "auto":
            dev = None
        else:
            dev = torch.device(device) if device is not None else None
        for batch in self.iter_batches(prefetch_batches=prefetch_batches, batch_size=batch_size,
                                       batch_format="numpy", drop_last=drop_last,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            if collate_fn is not None:
                yield collate_fn(batch)
                continue
            out = {}
            for name, arr in batch.items():
                dtype = dtypes.get(name) if isinstance(dtypes, dict) else dtypes
                out[name] = _to_tensor(name, arr, dtype, dev)
            yield out

    def to_torch(self, **kwargs: Any) -> Any:  # pragma: no cover - thin alias
        return self.iter_torch_batches(**kwargs)

    def materialize(self) -> Any:
        from distcore.data.dataset import from_blocks

        return from_blocks(list(self._iter_blocks()))


def _to_tensor(name: str, arr: np.ndarray, dtype: Any, device: Any) -> Any:
    import torch

    if arr.dtype == object:
        try:
            arr = np.stack(list(arr))
        except (ValueError, TypeError) as exc:
            raise TypeError(f"column {name!r} holds ragged or non-numeric values and cannot become a tensor; "
                            f"pass collate_fn to iter_torch_batches") from exc
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.as_tensor(arr)
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t


_END = object()


def _prefetch(make_blocks: Callable[[threading.Event], Iterator[pa.Table]], n: int) -> Iterator[pa.Table]:
    """Fetch up to ``n`` blocks ahead in a background thread (it never holds more than ``n``).

    When the consumer stops early, the block stream sees ``stop`` and ends its execution.
    """
    stop = threading.Event()
    blocks = make_blocks(stop)
    if n <= 0:
        try:
            yield from blocks
        finally:
            blocks.close()
        return
    q: queue.Queue = queue.Queue()
    slots = threading.Semaphore(n)

    def produce() -> None:
        try:
            while not stop.is_set():
                if not slots.acquire(timeout=0.1):
                    continue
                try:
                    item: Any = next(blocks)
                except StopIteration:
                    item = _END
                q.put(item)
                if item is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(exc)

    t = threading.Thread(target=produce, daemon=True, name="distcore-data-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            slots.release()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
    finally:
        stop.set()
        slots.release()
        t.join(timeout=5)
        close = getattr(blocks, "close", None)
        if not t.is_alive() and close is not None:
            close()


def _local_shuffle(blocks: Iterator[pa.Table], batch_size: int, buffer_size: int,
                   seed: int | None) -> Iterator[pa.Table]:
    rng = np.random.default_rng(seed)
    buf: list[pa.Table] = []
    rows = 0
    for table in blocks:
        buf.append(table)
        rows += table.num_rows
        if rows >= buffer_size + batch_size:
            merged = B.concat(buf)
            merged = merged.take(pa.array(rng.permutation(merged.num_rows)))
            emit = merged.num_rows - buffer_size
            yield merged.slice(0, emit)
            rest = merged.slice(emit)
            buf, rows = [rest], rest.num_rows
    if rows:
        merged = B.concat(buf)
        yield merged.take(pa.array(rng.permutation(merged.num_rows)))


class DatasetIterator(DataIterator):
    """Iterates one Dataset by running its plan in a streaming executor."""

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset

    def _iter_blocks(self, stop: threading.Event | None = None) -> Iterator[pa.Table]:
        yield from self._dataset._iter_tables(stop=stop)

    def stats(self) -> str:
        return self._dataset.stats()


class StreamSplitDataIterator(DataIterator):
    """One of ``n`` splits of ``Dataset.streaming_split``; picklable (holds the coordinator actor)."""

    def __init__(self, coordinator: Any, index: int, n: int, timeout_s: float = 600.0) -> None:
        self._coord = coordinator
        self._index = index
        self._n = n
        self._epoch = 0
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"StreamSplitDataIterator(split={self._index}/{self._n})"

    def _iter_blocks(self, stop: threading.Event | None = None) -> Iterator[pa.Table]:
        epoch = self._epoch
        self._epoch += 1
        waited_since = time.monotonic()
        while stop is None or not stop.is_set():
            status, refs = distcore.get(self._coord.get.remote(self._index, epoch), timeout=self._timeout_s)
            if status == "end":
                return
            if status == "wait":
                if time.monotonic() - waited_since > self._timeout_s:
                    raise TimeoutError(f"split {self._index} got no data for {self._timeout_s}s (are the other "
                                       f"{self._n - 1} splits being iterated?)")
                continue
            waited_since = time.monotonic()
            for ref in refs:
                yield distcore.get(ref, timeout=self._timeout_s)

    def stats(self) -> str:
        return distcore.get(self._coord.stats.remote(), timeout=60)
