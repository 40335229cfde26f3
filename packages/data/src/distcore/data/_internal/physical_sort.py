"""Sort as a streaming exchange bounded by the memory budget (an external merge sort).

Map tasks sort each group of input blocks into a run as the blocks arrive and
sample its keys; a run stays in the object store while the exchange's share of
the budget allows, else it is written to a local Arrow file. Once every run
exists, the samples give the range boundaries and one reduce task per range
slices each run to that range (binary search: the runs are sorted), merges the
slices and sorts them. Reduces launch as the budget allows, in key order.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

import distcore
from distcore.data._internal.exchange._blocks import check_columns, concat, with_metadata
from distcore.data._internal.exchange.sort import boundaries, cut_after, sort_table
from distcore.data._internal.exchange.streaming import ExchangeSpec, _read_run, write_parts
from distcore.data._internal.physical_exchange import StreamingExchangeOp, _Running

#: sampled keys per sorted run
SAMPLES_PER_RUN = 200


def _run_and_sample(keys: list[str], desc: list[bool], seed: int, blocks: tuple) -> tuple[pa.Table, pa.Table]:
    import numpy as np

    block = concat(blocks)
    check_columns(block, keys, "sort")
    run = sort_table(block, keys, desc)
    if run.num_rows == 0 or run.num_columns == 0:
        return run, run
    idx = np.random.default_rng(seed).choice(run.num_rows, size=min(SAMPLES_PER_RUN, run.num_rows), replace=False)
    return run, run.select(keys).take(pa.array(np.sort(idx)))


@distcore.remote(num_returns=2)
def _sort_in_store(keys: list[str], desc: list[bool], seed: int, *blocks: pa.Table) -> Any:
    from distcore.data._internal.block import compact

    run, sample = _run_and_sample(keys, desc, seed, blocks)
    run = compact(run)
    return run, ([(run.num_rows, int(run.nbytes))], sample)


@distcore.remote
def _sort_to_disk(keys: list[str], desc: list[bool], seed: int, path: str, *blocks: pa.Table) -> Any:
    run, sample = _run_and_sample(keys, desc, seed, blocks)
    return write_parts([run], path), sample


@distcore.remote(num_returns=2)
def _sort_range(keys: list[str], desc: list[bool], low: tuple | None, high: tuple | None, order: list[Any],
                *refs: pa.Table) -> Any:
    it = iter(refs)
    pieces = []
    for item in order:
        run = next(it) if item is None else _read_run(*item)
        start = 0 if low is None else cut_after(run, keys, desc, low)
        end = cut_after(run, keys, desc, high)
        if end > start:
            pieces.append(run.slice(start, end - start))
    table = concat(pieces) if pieces else (run.slice(0, 0) if order else pa.table({}))
    return with_metadata(sort_table(table, keys, desc))


class SortSpec(ExchangeSpec):
    """A sort by ``keys`` (``desc`` per key) into ``n`` ranges (``None``: sized to the budget)."""

    def __init__(self, keys: list[str], desc: list[bool], n: int | None = None) -> None:
        super().__init__("sort", keys, n)
        self.desc = desc


class StreamingSortOp(StreamingExchangeOp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ranges = self.spec.n  # None: chosen from the data once every run exists
        self.n = 1  # each map task makes one sorted run
        self._part_store = [0]
        self._part_bytes = [0]
        self._sized = False
        self.samples: list[pa.Table] = []
        self.bounds: list[tuple] | None = None

    def _launch_map(self) -> None:
        side = self._sides[0]
        items = self._map_items(peek=False)
        size = sum(b.size for b in items)
        index = len(self.outputs)
        self.outputs.append(None)
        refs = [b.ref for b in items]
        opts = {"num_cpus": self.request_cpus, "name": self.name}
        keys, desc = self.spec.keys, self.spec.desc
        if self._would_spill(size):
            if self.spill_dir is None:
                from distcore.data._internal.exchange import streaming as X

                self.spill_dir = X.new_spill_dir()
            path = f"{self.spill_dir}/run{index}.arrow"
            ref = _sort_to_disk.options(**opts).remote(keys, desc, index, path, *refs)
            self.running[ref] = _Running("map", index, side, size, 0, path=path)
        else:
            run_ref, meta_ref = _sort_in_store.options(**opts).remote(keys, desc, index, *refs)
            self.running[meta_ref] = _Running("map", index, side, size, size, refs=[run_ref])
        self._in_bytes += size

    def _map_result(self, got: Any) -> Any:
        sizes, sample = got
        if sample.num_rows:
            self.samples.append(sample)
        return sizes

    def _plan_ranges(self) -> None:
        total = sum(self._part_bytes)
        n = self.ranges
        if n is None:
            n = max(2, -(-total // max(1, self.store_cap)))
            n = min(256, n)
        sample = concat(self.samples) if self.samples else pa.table({})
        self.bounds = boundaries(sample, self.spec.keys, self.spec.desc, int(n)) if sample.num_rows else []
        self.n = len(self.bounds) + 1
        self._part_bytes = [total // self.n] * self.n
        self._part_store = [0] * self.n
        self.samples = []

    def launchable(self) -> bool:
        if not self.abandoned and self.bounds is None and self._map_phase_over() and self.outputs:
            self._plan_ranges()
        return super().launchable()

    def _launch_reduce(self) -> None:
        j = self._next_reduce
        self._next_reduce += 1
        bounds = self.bounds or []
        low = bounds[j - 1] if j > 0 else None
        high = bounds[j] if j < len(bounds) else None
        order: list[Any] = []
        refs: list[Any] = []
        last = self._next_reduce >= self.n
        for out in self.outputs:
            if out is None:
                continue
            if out.refs is not None:
                order.append(None)
                refs.append(out.refs[0])
                if last:
                    out.refs = None
            else:
                first, count, _, _ = out.layout[0]  # type: ignore[index]
                if count:
                    order.append((out.path, first, count))
        if last:
            self.in_store = 0
        block_ref, meta_ref = _sort_range.options(num_cpus=self.request_cpus, name=self.name).remote(
            self.spec.keys, self.spec.desc, low, high, order, *refs)
        self.running[meta_ref] = _Running("reduce", j, 0, 0, self._part_bytes[j], block_ref=block_ref)
