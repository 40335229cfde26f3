"""Block helpers shared by the exchanges: concatenation, hashing rows to partitions, splitting, batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import distcore
from distcore.data._internal.datasource._meta import BlockMetadata, metadata_of, table_from_columns

#: default limit for the driver's waits on exchange results (seconds)
EXCHANGE_TIMEOUT_S = 3600.0

_MIX = np.uint64(0x9E3779B97F4A7C15)


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate blocks, promoting compatible types; column-less empty blocks are skipped."""
    real = [t for t in tables if t.num_columns > 0 or t.num_rows > 0]
    if not real:
        return tables[0] if tables else pa.table({})
    if len(real) == 1:
        return real[0]
    try:
        return pa.concat_tables(real, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TypeError(f"blocks have incompatible schemas and cannot be combined: {exc}") from exc


def check_columns(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing and (table.num_columns or table.num_rows):
        raise KeyError(f"{what}: column(s) {missing} not found; the data has columns {table.column_names}")


def _column_hash(col: pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash per value, equal for equal values across processes (nulls hash alike)."""
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_boolean(t):
        col, t = col.cast(pa.int64()), pa.int64()
    if pa.types.is_temporal(t):
        col, t = col.cast(pa.int64()), pa.int64()
    if pa.types.is_integer(t):
        values = pc.fill_null(col.cast(pa.int64()), -0x5A5A5A5A5A5A5A5A).to_numpy()
        return values.astype(np.int64).view(np.uint64)
    if pa.types.is_floating(t):
        values = pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy().copy()
        values[values == 0.0] = 0.0  # -0.0 and 0.0 hash alike
        values[np.isnan(values)] = np.nan
        return values.view(np.uint64)
    import pandas as pd

    # hash each distinct value once (pandas' stable hash), then spread the hashes by index
    encoded = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    values = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    value_hash = pd.util.hash_array(values, categorize=False) if len(values) else np.zeros(0, np.uint64)
    value_hash = np.append(value_hash, np.uint64(0x2545F4914F6CDD1D))  # the last slot: nulls
    indices = pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)
    return value_hash[indices]


def partition_ids(table: pa.Table, keys: Sequence[str], n: int) -> np.ndarray:
    """Partition index in [0, n) of each row by the hash of its key columns."""
    if n <= 1 or table.num_rows == 0:
        return np.zeros(table.num_rows, dtype=np.int64)
    h = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            h = (h * np.uint64(31)) ^ _column_hash(table.column(key))
            h = h * _MIX
            h ^= h >> np.uint64(29)
    return (h % np.uint64(n)).astype(np.int64)


def split_by_ids(table: pa.Table, ids: np.ndarray, n: int) -> list[pa.Table]:
    """``n`` tables: rows of ``table`` whose id is 0, 1, ..., n-1 (row order kept inside each)."""
    if n == 1:
        return [table]
    # one take per partition: each part owns its rows (a slice of one sorted copy would carry, and
    # store, the whole block's buffers in every part)
    order = np.argsort(ids, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=n))])
    return [table.take(pa.array(order[offsets[i]:offsets[i + 1]])) for i in range(n)]


def maybe_single(parts: list[Any], n: int) -> Any:
    """What a task declared with ``num_returns=n`` must return for ``parts``."""
    return parts[0] if n == 1 else tuple(parts)


def as_list(refs: Any, n: int) -> list[Any]:
    return [refs] if n == 1 else list(refs)


def with_metadata(table: pa.Table) -> tuple[pa.Table, BlockMetadata]:
    from distcore.data._internal.block import compact

    table = compact(table)
    return table, metadata_of(table)


def collect(pairs: list[tuple[Any, Any]], timeout: float | None = EXCHANGE_TIMEOUT_S) -> list[tuple[Any, Any]]:
    """``[(block_ref, meta_ref)]`` -> ``[(block_ref, BlockMetadata)]`` (metadata is small)."""
    if not pairs:
        return []
    metas = distcore.get([m for _, m in pairs], timeout=timeout)
    return [(b, m) for (b, _), m in zip(pairs, metas, strict=True)]


# --- batches (the engine's batch module owns the full conversion; these cover the exchanges' needs) ---

def to_batch(table: pa.Table, batch_format: str | None) -> Any:
    fmt = "numpy" if batch_format in (None, "default") else batch_format
    if fmt == "pyarrow":
        return table
    if fmt == "pandas":
        return table.to_pandas()
    if fmt == "numpy":
        out = {}
        for name in table.column_names:
            col = table.column(name)
            if isinstance(col.type, pa.FixedShapeTensorType):
                out[name] = col.combine_chunks().to_numpy_ndarray() if col.num_chunks else \
                    np.empty((0,) + tuple(col.type.shape))
            else:
                out[name] = col.to_numpy()
        return out
    raise ValueError(f"batch_format must be 'numpy', 'pandas', 'pyarrow' or 'default', got {batch_format!r}")


def from_batch(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    import pandas as pd

    if isinstance(batch, pd.DataFrame):
        return pa.Table.from_pandas(batch, preserve_index=False)
    if isinstance(batch, dict):
        return table_from_columns({k: np.asarray(v) if not isinstance(v, (pa.Array, pa.ChunkedArray)) else v
                                   for k, v in batch.items()})
    raise TypeError(f"a UDF must return a dict of arrays, a pandas DataFrame or a pyarrow Table, "
                    f"got {type(batch).__name__}")


@distcore.remote
def num_rows_of(block: pa.Table) -> int:
    return block.num_rows


def row_counts(refs: list[Any], metadata: Sequence[BlockMetadata | None] | None,
               timeout: float | None = EXCHANGE_TIMEOUT_S) -> list[int]:
    """Row count of each block: from ``metadata`` where known, else by a small task."""
    counts: list[int | None] = [getattr(m, "num_rows", None) for m in metadata] if metadata else [None] * len(refs)
    missing = [i for i, c in enumerate(counts) if c is None]
    if missing:
        got = distcore.get([num_rows_of.remote(refs[i]) for i in missing], timeout=timeout)
        for i, c in zip(missing, got, strict=True):
            counts[i] = c
    return [int(c) for c in counts]  # type: ignore[arg-type]


# --- sizing: how many map tasks and output partitions an exchange uses ---

#: aim for output partitions of about this many bytes
TARGET_PARTITION_BYTES = 128 * 1024 * 1024
#: without metadata, at most this many map tasks and default output partitions
MAX_UNSIZED_TASKS = 32


def _cluster_cpus() -> int:
    try:
        return max(1, int(distcore.cluster_resources().get("CPU", 1)))
    except Exception:  # noqa: BLE001 - not connected yet: the first task will connect
        return 1


def _total_bytes(metadata: Sequence[BlockMetadata | None] | None) -> int | None:
    if not metadata or any(getattr(m, "size_bytes", None) is None for m in metadata):
        return None
    return int(sum(m.size_bytes for m in metadata))  # type: ignore[union-attr]


def default_partitions(refs: Sequence[Any], metadata: Sequence[BlockMetadata | None] | None) -> int:
    """Output partitions when the caller names none: enough for every CPU twice, about
    ``TARGET_PARTITION_BYTES`` each for big data, never more than the input blocks."""
    if not refs:
        return 1
    total = _total_bytes(metadata)
    want = 2 * _cluster_cpus()
    if total is not None:
        want = max(want, -(-total // TARGET_PARTITION_BYTES))
    else:
        want = max(want, min(len(refs), MAX_UNSIZED_TASKS))
    return max(1, min(len(refs), want))


def group_inputs(refs: Sequence[Any], metadata: Sequence[BlockMetadata | None] | None) -> list[list[Any]]:
    """Consecutive input blocks grouped for the map tasks: many small blocks share one task, so
    an exchange makes (map tasks x partitions) objects, not (blocks x partitions)."""
    if not refs:
        return []
    total = _total_bytes(metadata)
    tasks = 2 * _cluster_cpus()
    if total is not None:
        tasks = max(tasks, -(-total // TARGET_PARTITION_BYTES))
    else:
        tasks = max(tasks, MAX_UNSIZED_TASKS)
    tasks = max(1, min(len(refs), tasks))
    edges = [len(refs) * i // tasks for i in range(tasks + 1)]
    return [list(refs[edges[i]:edges[i + 1]]) for i in range(tasks)]
