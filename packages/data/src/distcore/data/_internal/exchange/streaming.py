"""Tasks of the streaming hash exchange (``physical_exchange.StreamingExchangeOp`` plans them).

A map task splits its input blocks into ``n`` partitions (by the hash of the
keys, or at random) and either returns the parts (``n`` objects in the store)
or spills them: it writes one Arrow IPC file, partition ``j`` as a run of record
batches, and returns only where each partition lies. A reduce task reads its
partition's parts (store refs, and spilled runs memory-mapped from disk),
combines them and runs ``finish`` on the result. Either way the last return is
the per-partition ``(rows, bytes)`` list, so the driver can size the reduces.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

import distcore
from distcore.data._internal.exchange._blocks import (
    check_columns,
    concat,
    partition_ids,
    split_by_ids,
    with_metadata,
)


@dataclass
class ExchangeSpec:
    """What a streaming exchange does: partition by ``keys`` (or at random when ``keys`` is empty and
    ``random`` is set) into ``n`` partitions; ``prepare`` runs on each map input, ``finish`` per partition."""

    name: str
    keys: list[str]
    n: int | None = None
    prepare: Callable[[pa.Table], pa.Table] | None = None
    finish: Callable[[pa.Table], pa.Table] | None = None
    random: bool = False
    seed: int | None = None
    #: a join: the right input's keys, and ``join(left, right)`` per partition (instead of ``finish``)
    right_keys: list[str] | None = None
    join: Callable[[pa.Table, pa.Table], pa.Table] | None = None
    #: output about as big as the input (not an aggregation): without ``n``, size partitions to the budget
    sized: bool = False

    @property
    def sides(self) -> int:
        return 2 if self.join is not None else 1


def _split(spec: ExchangeSpec, n: int, first_index: int, blocks: tuple, side: int = 0) -> list[pa.Table]:
    if spec.random:
        pieces = []
        for i, block in enumerate(blocks):  # ids drawn per input block: the same seed gives the same result
            rng = np.random.default_rng(None if spec.seed is None else [spec.seed, first_index + i])
            pieces.append(split_by_ids(block, rng.integers(0, n, block.num_rows), n))
        return [concat([p[j] for p in pieces]) for j in range(n)] if pieces else [pa.table({})] * n
    block = concat(blocks)
    keys = spec.right_keys if side == 1 and spec.right_keys is not None else spec.keys
    check_columns(block, keys, spec.name if spec.join is None else f"join ({'right' if side else 'left'} side)")
    if spec.prepare is not None:
        block = spec.prepare(block)
    return split_by_ids(block, partition_ids(block, keys, n), n)


def _sizes(parts: list[pa.Table]) -> list[tuple[int, int]]:
    return [(p.num_rows, int(p.nbytes)) for p in parts]


@distcore.remote
def map_in_store(spec: ExchangeSpec, n: int, first_index: int, side: int, *blocks: pa.Table) -> Any:
    """``n`` parts then their sizes (declare ``num_returns=n + 1``)."""
    from distcore.data._internal.block import compact

    parts = [compact(p) for p in _split(spec, n, first_index, blocks, side)]
    return (*parts, _sizes(parts))


@distcore.remote
def map_to_disk(spec: ExchangeSpec, n: int, first_index: int, side: int, path: str, *blocks: pa.Table) -> Any:
    """Writes the parts to ``path`` (Arrow IPC file); returns ``[(first batch, batches, rows, bytes)]``."""
    return write_parts(_split(spec, n, first_index, blocks, side), path)


@distcore.remote
def spill_parts(path: str, *parts: pa.Table) -> Any:
    """Moves parts already in the store to ``path`` (their refs are dropped once this ran)."""
    return write_parts(list(parts), path)


def write_parts(parts: list[pa.Table], path: str) -> list[tuple[int, int, int, int]]:
    schema = next((p.schema for p in parts if p.num_columns), parts[0].schema)
    layout = []
    tmp = path + ".tmp"
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        batch = 0
        for part in parts:
            batches = [b for b in part.cast(schema).to_batches() if b.num_rows] if part.num_columns else []
            for b in batches:
                writer.write_batch(b)
            layout.append((batch, len(batches), part.num_rows, int(part.nbytes)))
            batch += len(batches)
    os.replace(tmp, path)
    return layout


def _read_run(path: str, first: int, count: int) -> pa.Table:
    with pa.memory_map(path, "r") as source:
        reader = pa.ipc.open_file(source)
        batches = [reader.get_batch(first + i) for i in range(count)]
        return pa.Table.from_batches(batches, schema=reader.schema)


@distcore.remote(num_returns=2)
def reduce_partition(spec: ExchangeSpec, order: list[Any], *refs: pa.Table) -> Any:
    """``order``: per map output in map order, ``(side, None)`` (the next of ``refs``) or
    ``(side, (path, first, count))``."""
    tables: list[list[pa.Table]] = [[] for _ in range(spec.sides)]
    it = iter(refs)
    for side, item in order:
        tables[side].append(next(it) if item is None else _read_run(*item))
    combined = [concat(t) if t else pa.table({}) for t in tables]
    if spec.join is not None:
        return with_metadata(spec.join(combined[0], combined[1]))
    table = combined[0]
    if spec.finish is not None:
        table = spec.finish(table)
    return with_metadata(table)


def spill_root() -> str:
    """Where exchanges spill (``DISTCORE_DATA_SPILL_DIR`` or the temp directory)."""
    return os.environ.get("DISTCORE_DATA_SPILL_DIR") or os.path.join(tempfile.gettempdir(), "distcore-data-spill")


_swept: set[str] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_orphaned_spill_dirs(root: str) -> list[str]:
    """Remove the spill directories of drivers that no longer run (each is named ``<pid>-<id>``:
    a driver that crashed mid-exchange left it behind); returns what was removed."""
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        pid, sep, _ = name.partition("-")
        if not sep or not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        path = os.path.join(root, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


def new_spill_dir() -> str:
    root = spill_root()
    if root not in _swept:  # once per process: what crashed drivers left behind goes first
        _swept.add(root)
        sweep_orphaned_spill_dirs(root)
    path = os.path.join(root, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.makedirs(path, exist_ok=True)
    return path


def remove_spill_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def nodes_share_a_host() -> bool:
    """Spill files are read by reduce tasks on any node: only when every node runs on this host."""
    try:
        addrs = {n.get("NodeManagerAddress") for n in distcore.nodes() if n.get("Alive", True)}
    except Exception:  # noqa: BLE001 - unknown: keep parts in the object store
        return False
    return len(addrs) <= 1
