"""A hash exchange that streams its map side and keeps the object store within the memory budget.

Map tasks start as input blocks arrive (no barrier on the input), so each input
block is freed once its map task ran. Their partitioned output stays in the
object store while it fits a share of the budget (``STORE_SHARE``); beyond that,
map tasks spill it to local files (``exchange.streaming``). Once every map task
finished, one reduce task per partition runs as the budget allows (the executor
launches them like any operator's tasks) and its parts are released as it starts.
What the exchange keeps in the store counts in the pipeline's memory, so upstream
reads slow down instead of the store growing past the budget.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import distcore
from distcore.data._internal.block import BlockMetadata
from distcore.data._internal.exchange import streaming as X
from distcore.data._internal.physical import Bundle, PhysicalOp

#: the exchange keeps map output in the store up to this fraction of the budget, then spills
STORE_SHARE = 0.25
#: a map task takes queued input up to this fraction of the budget at once
MAP_INPUT_SHARE = 0.125
MAX_MAP_INPUT = 128 * 1024 * 1024
#: at most this many partitions when an exchange sizes them to its input
MAX_PARTITIONS = 256


@dataclass
class _MapOut:
    side: int  # which input (a join has two)
    refs: list[Any] | None  # parts in the store (None when spilled)
    path: str | None
    layout: list[tuple[int, int, int, int]] | None = None  # spilled: (first batch, batches, rows, bytes)
    sizes: list[tuple[int, int]] | None = None  # in the store: (rows, bytes) per partition


@dataclass
class _Running:
    kind: str  # "map" or "reduce"
    index: int
    side: int
    input_bytes: int
    est_out: int
    started: float = field(default_factory=time.perf_counter)
    path: str | None = None
    refs: list[Any] | None = None
    block_ref: Any = None
    spill: bool = False  # moves output already in the store to disk


class StreamingExchangeOp(PhysicalOp):
    def __init__(self, name: str, deps: list[PhysicalOp], spec: X.ExchangeSpec, *, budget: int,
                 cpus: float) -> None:
        super().__init__(name, deps)
        self.spec = spec
        self.budget = max(1, int(budget))
        self.n = spec.n if spec.n is not None else max(1, int(2 * cpus))
        self._sized = spec.n is None and spec.sized  # ``n`` is set from the input's size at the first map
        self.request_cpus = 1.0
        self.store_cap = int(self.budget * STORE_SHARE)
        self.map_cap = max(1, min(MAX_MAP_INPUT, int(self.budget * MAP_INPUT_SHARE)))
        self._spill_ok: bool | None = None
        self._executor: Any = None
        self.spill_dir: str | None = None
        self.spilled_bytes = 0
        self.outputs: list[_MapOut | None] = []  # per map task, in input order
        self.in_store = 0  # bytes of map output held in the store
        self._part_store: list[int] = [0] * self.n  # in-store bytes of each partition
        self._part_bytes: list[int] = [0] * self.n
        self.running: dict[Any, _Running] = {}
        self._blocks_seen = 0
        self._in_bytes = 0
        self._out_bytes = 0
        self._next_reduce = 0
        self._done: dict[int, Bundle] = {}
        self._next_release = 0
        self._sides: collections.deque[int] = collections.deque()  # the input index of each queued bundle

    def add_input(self, item: Any, index: int = 0) -> None:
        self.inqueue.append(item)
        self._sides.append(index)

    # ------------------------------------------------------------------ accounting
    def _store_throttles(self) -> bool:
        """Map output in the store counts against the budget (upstream reads wait for room) while more
        input comes and it can be spilled; otherwise it is held like a barrier's input: it must not
        stall its own input, nor the reduces that release it."""
        return self._spill_ok is not False and not self.all_inputs_done()

    def queued_bytes(self) -> int:
        return super().queued_bytes() + (self.in_store if self._store_throttles() else 0)

    def held_bytes(self) -> int:
        return 0 if self._store_throttles() else self.in_store

    def start(self, executor: Any) -> None:
        self._executor = executor

    def running_bytes(self) -> int:
        return sum(t.input_bytes + t.est_out for t in self.running.values()) + \
            sum(b.size for b in self._done.values())

    def num_running(self) -> int:
        return len(self.running)

    def resource_usage(self) -> tuple[float, float]:
        return float(len(self.running)), 0.0

    def _maps_running(self) -> bool:
        return any(t.kind == "map" for t in self.running.values())

    def _map_phase_over(self) -> bool:
        return self.all_inputs_done() and not self.inqueue and not self._maps_running()

    def _ratio(self) -> float:
        return self._out_bytes / self._in_bytes if self._in_bytes else 1.0

    # ------------------------------------------------------------------ launching
    def _map_items(self, peek: bool) -> list[Bundle]:
        if not self.inqueue:
            return []
        items, size = [], 0
        side = self._sides[0]
        for b, s in zip(self.inqueue, self._sides, strict=True):
            if items and (size + b.size > self.map_cap or s != side):
                break
            items.append(b)
            size += b.size
        # wait for more input while one of our map tasks runs (it batches small blocks), unless full
        if size < self.map_cap and not self.all_inputs_done() and self._maps_running() and \
                len(items) == len(self.inqueue):
            return []
        if not peek:
            for _ in items:
                self.inqueue.popleft()
                self._sides.popleft()
        return items

    def _stalled(self) -> bool:
        """Map output in the store keeps the reads that feed this exchange from starting: nothing runs
        anywhere, no input is queued and more must come. Then that output is spilled."""
        if self.inqueue or self.all_inputs_done() or self.running or self.in_store <= 0:
            return False
        ex = self._executor
        if ex is None or any(op.num_running() for op in ex.ops):
            return False
        if self._spill_ok is None:
            self._spill_ok = X.nodes_share_a_host()
        return bool(self._spill_ok)

    def launchable(self) -> bool:
        if self.abandoned:
            return False
        if not self._map_phase_over():
            return bool(self._map_items(peek=True)) or self._stalled()
        # the reduces make new data like a read does: over the budget they wait for the consumer
        self.is_source = True
        return bool(self.outputs) and self._next_reduce < self.n

    def launch_estimate(self) -> int:
        if not self._map_phase_over():
            size = sum(b.size for b in self._map_items(peek=True))
            est = int(size * self._ratio())
            return 0 if self._would_spill(est) else est
        j = self._next_reduce
        return self._part_bytes[j] if j < self.n else 0

    def _would_spill(self, est: int) -> bool:
        if self.in_store + est <= self.store_cap:
            return False
        if self._spill_ok is None:
            self._spill_ok = X.nodes_share_a_host()
        return self._spill_ok

    def launch_one(self, executor: Any) -> None:
        if not self._map_phase_over() and not self.inqueue:
            self._launch_spill()
        elif not self._map_phase_over():
            self._launch_map()
        else:
            self._launch_reduce()
        self.stats.task_started()

    def _size_partitions(self) -> None:
        """Partitions of about the exchange's store share each: from the rows the inputs will bring (when
        known) times the bytes per row of the first input block."""
        self._sized = False
        first = self.inqueue[0]
        if not first.rows:
            return
        total = 0.0
        for dep in self.deps:
            if dep.expected_rows is not None:
                total += dep.expected_rows * first.size / first.rows
                continue
            blocks = _source_blocks(dep)  # no row count: about one block per read task of its source
            if blocks is None:
                return
            total += blocks * first.size
        n = min(MAX_PARTITIONS, max(self.n, -(-int(total) // max(1, self.store_cap))))
        self.n = int(n)
        self._part_store = [0] * self.n
        self._part_bytes = [0] * self.n

    def _launch_map(self) -> None:
        if self._sized:
            self._size_partitions()
        side = self._sides[0]
        items = self._map_items(peek=False)
        size = sum(b.size for b in items)
        est = int(size * self._ratio())
        index = len(self.outputs)
        self.outputs.append(None)
        first = self._blocks_seen
        self._blocks_seen += len(items)
        refs = [b.ref for b in items]
        opts = {"num_cpus": self.request_cpus, "name": self.name}
        if self._would_spill(est):
            if self.spill_dir is None:
                self.spill_dir = X.new_spill_dir()
            path = f"{self.spill_dir}/map{index}.arrow"
            ref = X.map_to_disk.options(**opts).remote(self.spec, self.n, first, side, path, *refs)
            self.running[ref] = _Running("map", index, side, size, 0, path=path)
        else:
            out = X.map_in_store.options(num_returns=self.n + 1, **opts).remote(self.spec, self.n, first, side,
                                                                                *refs)
            out = list(out)
            self.running[out[-1]] = _Running("map", index, side, size, est, refs=out[:-1])
        self._in_bytes += size

    def _launch_spill(self) -> None:
        """Move the biggest map output held in the store to a file."""
        index, out = max(((i, o) for i, o in enumerate(self.outputs) if o is not None and o.refs is not None),
                         key=lambda io: sum(s for _, s in io[1].sizes or []))
        if self.spill_dir is None:
            self.spill_dir = X.new_spill_dir()
        path = f"{self.spill_dir}/map{index}.arrow"
        ref = X.spill_parts.options(num_cpus=0, name=self.name).remote(path, *out.refs)  # type: ignore[misc]
        self.outputs[index] = None
        for j, (_, nbytes) in enumerate(out.sizes or []):
            self._part_store[j] -= nbytes
            self._part_bytes[j] -= nbytes  # counted again when the spill reports its layout
        self.in_store -= sum(s for _, s in out.sizes or [])
        self._out_bytes -= sum(s for _, s in out.sizes or [])
        self.running[ref] = _Running("map", index, out.side, 0, 0, path=path, spill=True)

    def _launch_reduce(self) -> None:
        if self.spec.join is not None and len({o.side for o in self.outputs if o is not None}) < 2:
            raise ValueError("join needs blocks on both sides (one side has no blocks, so its columns are unknown)")
        j = self._next_reduce
        self._next_reduce += 1
        order: list[Any] = []
        refs: list[Any] = []
        for out in self.outputs:
            if out is None:
                continue
            if out.refs is not None:
                order.append((out.side, None))
                refs.append(out.refs[j])
                out.refs[j] = None  # held by the reduce task only from here
            else:
                first, count, rows, _ = out.layout[j]  # type: ignore[index]
                if count:
                    order.append((out.side, (out.path, first, count)))
        self.in_store -= self._part_store[j]
        est = self._part_bytes[j]
        block_ref, meta_ref = X.reduce_partition.options(num_cpus=self.request_cpus, name=self.name).remote(
            self.spec, order, *refs)
        self.running[meta_ref] = _Running("reduce", j, 0, 0, est, block_ref=block_ref)

    # ------------------------------------------------------------------ completion
    def pending(self) -> dict[Any, Callable[[], None]]:
        return {ref: (lambda r=ref: self._complete(r)) for ref in self.running}

    def _complete(self, ref: Any) -> None:
        task = self.running.pop(ref)
        if self.abandoned:
            return
        wall = time.perf_counter() - task.started
        if task.kind == "map":
            got = distcore.get(ref, timeout=600)
            if not task.spill:
                got = self._map_result(got)
            if task.path is not None:
                out = _MapOut(task.side, None, task.path, layout=got)
                sizes = [(rows, nbytes) for _, _, rows, nbytes in got]
                self.spilled_bytes += sum(s for _, s in sizes)
                self.stats.spilled_bytes = self.spilled_bytes
            else:
                out = _MapOut(task.side, task.refs, None, sizes=got)
                sizes = got
                for j, (_, nbytes) in enumerate(sizes):
                    self._part_store[j] += nbytes
                self.in_store += sum(s for _, s in sizes)
            for j, (_, nbytes) in enumerate(sizes):
                self._part_bytes[j] += nbytes
            self._out_bytes += sum(s for _, s in sizes)
            self.outputs[task.index] = out
            self.stats.task_done(None, wall)
            return
        meta: BlockMetadata = distcore.get(ref, timeout=600)
        self.stats.task_done(meta, wall)
        self._done[task.index] = Bundle(task.block_ref, meta)
        while self._next_release in self._done:
            self.emit(self._done.pop(self._next_release))
            self._next_release += 1
        if self._next_release >= self.n:
            self._cleanup()

    def _map_result(self, got: Any) -> Any:
        """What a map task returned -> its per-partition sizes (in the store) or layout (spilled)."""
        return got

    def work_done(self) -> bool:
        if self.abandoned:
            return not self.running
        return self._map_phase_over() and (not self.outputs or self._next_release >= self.n)

    def abandon(self) -> None:
        super().abandon()
        self._sides.clear()
        self.outputs = []
        self.in_store = 0

    def _cleanup(self) -> None:
        self.outputs = []
        X.remove_spill_dir(self.spill_dir)

    def shutdown(self) -> None:
        self._cleanup()


def _source_blocks(op: PhysicalOp) -> int | None:
    """Read tasks (or input blocks) of the source at the top of a chain of one-input operators."""
    while op.deps:
        if len(op.deps) != 1:
            return None
        op = op.deps[0]
    tasks = getattr(op, "read_tasks", None)
    if tasks is not None:
        return len(tasks)
    bundles = getattr(op, "_bundles", None)
    return len(bundles) if bundles is not None else None
