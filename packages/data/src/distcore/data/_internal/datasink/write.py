"""Running a datasink over a dataset: one write task per block, streamed with a bounded window."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

import distcore
from distcore.data._internal.datasink.datasink import (
    CSVDatasink,
    Datasink,
    JSONDatasink,
    NumpyDatasink,
    ParquetDatasink,
    WriteContext,
)

#: write tasks in flight at once (the engine keeps producing blocks while these run)
MAX_IN_FLIGHT = 8
WRITE_TIMEOUT_S = 3600.0

_SINKS = {"parquet": ParquetDatasink, "csv": CSVDatasink, "json": JSONDatasink, "numpy": NumpyDatasink}


@distcore.remote
def _write_task(sink: Datasink, ctx: WriteContext, block: pa.Table) -> Any:
    return sink.write([block], ctx)


def sink_for(kind: str, path: str, **kwargs: Any) -> Datasink:
    """The file datasink for ``kind`` ("parquet", "csv", "json", "numpy"); ``kwargs`` go to its constructor.

    For parquet/csv, keywords other than ``filename_prefix``/``mode`` are pyarrow writer arguments.
    """
    if kind not in _SINKS:
        raise ValueError(f"unknown write format {kind!r}: expected one of {sorted(_SINKS)}")
    base = {k: kwargs.pop(k) for k in ("filename_prefix", "mode", "filesystem") if k in kwargs}
    if kind == "parquet":
        return ParquetDatasink(path, arrow_parquet_args=kwargs, **base)
    if kind == "csv":
        return CSVDatasink(path, arrow_csv_args=kwargs, **base)
    if kwargs and kind == "json":
        raise TypeError(f"write_json got unexpected arguments {sorted(kwargs)}")
    return _SINKS[kind](path, **kwargs, **base)


def _block_refs(ds: Any) -> Iterator[Any]:
    if hasattr(ds, "_iter_bundles"):
        for bundle in ds._iter_bundles():
            yield bundle.ref
    else:
        yield from ds.to_arrow_refs()


def write_blocks(refs: Any, sink: Datasink, *, timeout: float | None = WRITE_TIMEOUT_S) -> list[Any]:
    """Write each block ref through ``sink`` (at most ``MAX_IN_FLIGHT`` writes at once); the write results."""
    dataset_uuid = uuid.uuid4().hex[:12]
    results: list[Any] = []
    in_flight: deque[Any] = deque()
    sink.on_write_start()
    try:
        for i, ref in enumerate(refs):
            in_flight.append(_write_task.remote(sink, WriteContext(i, dataset_uuid), ref))
            if len(in_flight) >= MAX_IN_FLIGHT:
                results.append(distcore.get(in_flight.popleft(), timeout=timeout))
        while in_flight:
            results.append(distcore.get(in_flight.popleft(), timeout=timeout))
    except Exception as exc:
        sink.on_write_failed(exc)
        raise
    sink.on_write_complete(results)
    return results


def write_dataset(ds: Any, sink: Datasink, *, timeout: float | None = WRITE_TIMEOUT_S) -> list[Any]:
    """Execute ``ds`` and write it through ``sink``, streaming (blocks are written as they are produced)."""
    if not isinstance(sink, Datasink):
        raise TypeError(f"write_datasink needs a Datasink, got {type(sink).__name__}")
    return write_blocks(_block_refs(ds), sink, timeout=timeout)
