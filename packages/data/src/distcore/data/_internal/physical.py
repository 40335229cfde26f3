"""Physical operators run by the streaming executor.

Each operator has an input queue (bundles or read tasks), launches distcore
tasks or actor calls, and an output queue of ``Bundle``s (a block ref and its
metadata) released in input order.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import distcore
from distcore.data._internal import block as B
from distcore.data._internal.block import BlockExecStats, BlockMetadata
from distcore.data._internal.stats import OpStats
from distcore.data._internal.transforms import Stage, run_stages

logger = logging.getLogger(__name__)


@dataclass
class Bundle:
    ref: Any
    meta: BlockMetadata

    @property
    def size(self) -> int:
        return int(self.meta.size_bytes or 0)

    @property
    def rows(self) -> int:
        return int(self.meta.num_rows or 0)


def _read_inputs(items: tuple) -> Iterable[pa.Table]:
    for item in items:
        if isinstance(item, pa.Table):
            yield item
        elif hasattr(item, "read_fn"):
            for table in item.read_fn():
                yield B.to_block(table)
        else:
            raise TypeError(f"a map task got an input of type {type(item).__name__}")


def _execute(stages: list[Stage], items: tuple, max_block_bytes: int) -> Iterator[Any]:
    """Yield the output blocks (split to at most ``max_block_bytes`` each), then their metadata list."""
    start, cpu = time.perf_counter(), time.process_time()
    input_files: list[str] = []
    for item in items:
        meta = getattr(item, "metadata", None)
        if meta is not None and getattr(meta, "input_files", None):
            input_files.extend(meta.input_files)
    outs = list(run_stages(stages, _read_inputs(items)))
    table = B.concat(outs) if outs else B.empty_table()
    if table.num_columns and any(isinstance(c, pa.ChunkedArray) and c.num_chunks > 8 for c in table.columns):
        table = table.combine_chunks()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    pieces = B.split_table(table, max_block_bytes)
    stats = BlockExecStats(wall_s=time.perf_counter() - start, cpu_s=time.process_time() - cpu, max_rss_bytes=rss)
    metas = [B.block_metadata(p, input_files, stats if i == 0 else None) for i, p in enumerate(pieces)]
    yield from (B.compact(p) for p in pieces)
    yield metas


@distcore.remote(num_returns="dynamic")
def _map_task(stages: list[Stage], max_block_bytes: int, *items: Any) -> Iterator[Any]:
    yield from _execute(stages, items, max_block_bytes)


@distcore.remote(num_returns=2, num_cpus=0)
def _slice_task(table: pa.Table, start: int, length: int) -> tuple[pa.Table, BlockMetadata]:
    out = B.compact(table.slice(start, length))
    return out, B.block_metadata(out)


class _MapWorker:
    """The actor class of an actor-pool map: builds the stages (constructs the user's class) once."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        for stage in stages:
            stage.init()
        self.pid = os.getpid()

    def ready(self) -> int:
        return self.pid

    @distcore.method(num_returns="dynamic")
    def process(self, max_block_bytes: int, *items: Any) -> Iterator[Any]:
        yield from _execute(self.stages, items, max_block_bytes)


_MapWorkerActor = distcore.remote(_MapWorker)


@dataclass
class _Task:
    seq: int
    block_ref: Any
    meta_ref: Any
    input_bytes: int
    est_output: int
    cpus: float = 0.0
    gpus: float = 0.0
    actor: Any = None
    started: float = field(default_factory=time.perf_counter)
    items: list = field(default_factory=list)
    submitted: float = field(default_factory=time.monotonic)
    #: the cluster showed this task running (so it is not waiting for resources)
    confirmed: bool = False


class PhysicalOp:
    """Base operator: queues, ordered output, completion, per-operator stats."""

    is_source = False

    def __init__(self, name: str, deps: list[PhysicalOp]) -> None:
        self.name = name
        self.deps = deps
        self.inqueue: collections.deque = collections.deque()
        self.outqueue: collections.deque[Bundle] = collections.deque()
        self.inputs_done = [False] * max(1, len(deps))
        self.stats = OpStats(name)
        self.abandoned = False
        #: rows this operator will output when known before it runs (progress bar totals)
        self.expected_rows: int | None = None

    # queues
    def add_input(self, item: Any, index: int = 0) -> None:
        self.inqueue.append(item)

    def mark_input_done(self, index: int = 0) -> None:
        self.inputs_done[index] = True

    def all_inputs_done(self) -> bool:
        return all(self.inputs_done)

    def queued_bytes(self) -> int:
        return sum(i.size for i in self.inqueue if isinstance(i, Bundle)) + sum(b.size for b in self.outqueue)

    def running_bytes(self) -> int:
        return 0

    def held_bytes(self) -> int:
        """Bytes a barrier holds until it can emit them (an exchange's input, a union's later inputs)."""
        return 0

    def num_running(self) -> int:
        return 0

    def pending(self) -> dict[Any, Callable[[], None]]:
        """meta-ref -> completion callback of each running task."""
        return {}

    def work_done(self) -> bool:
        """No more output will be produced (outputs may still be queued)."""
        return self.abandoned or (self.all_inputs_done() and not self.inqueue and self.num_running() == 0)

    def launchable(self) -> bool:
        return False

    def launch_estimate(self) -> int:
        return 0

    def launch_one(self, executor: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def poll(self, executor: Any) -> None:
        """Driver-side work (no tasks): called every step."""

    def emit(self, bundle: Bundle) -> None:
        self.outqueue.append(bundle)
        self.stats.record_output(bundle.meta)

    def abandon(self) -> None:
        """Stop: drop queued input, launch nothing more (a downstream limit was reached)."""
        self.abandoned = True
        self.inqueue.clear()

    def start(self, executor: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def resource_usage(self) -> tuple[float, float]:
        return 0.0, 0.0


class InputDataOp(PhysicalOp):
    is_source = True

    def __init__(self, name: str, bundles: list[Bundle]) -> None:
        super().__init__(name, [])
        self._bundles = bundles
        self.inputs_done = [True]
        rows = [b.meta.num_rows for b in bundles]
        self.expected_rows = None if any(r is None for r in rows) else sum(rows)

    def start(self, executor: Any) -> None:
        for b in self._bundles:
            self.emit(b)


class MapOp(PhysicalOp):
    """A fused chain of stages run as tasks (task pool) or actor calls (actor pool)."""

    def __init__(self, name: str, deps: list[PhysicalOp], stages: list[Stage], *, cpus: float, gpus: float,
                 remote_args: dict, max_concurrency: int | None, min_rows_per_bundle: int | None,
                 min_bundle_bytes: int, max_block_bytes: int, read_tasks: list | None = None) -> None:
        super().__init__(name, deps)
        self.stages = stages
        self.cpus, self.gpus = cpus, gpus
        self.remote_args = remote_args
        #: the CPUs each task asks the cluster for (the executor may lower it to 0 when other work
        #: holds every CPU: the executor still caps this operator's tasks by ``cpus``)
        self.request_cpus = cpus
        self.default_resources = False
        #: set while the cluster has no CPU for this operator's tasks: they run one at a time without
        #: a CPU reservation until a CPU frees up (see ``_internal.adapt``)
        self.starved = False
        self._retry: collections.deque[tuple[int, list]] = collections.deque()  # (seq, items) to resubmit
        #: a bundle never waits for more input than this many bytes (set from the memory budget)
        self.bundle_cap = 1 << 62
        self.max_concurrency = max_concurrency
        self.min_rows_per_bundle = min_rows_per_bundle
        self.min_bundle_bytes = min_bundle_bytes
        self.max_block_bytes = max_block_bytes
        self.read_tasks = read_tasks
        self.is_source = read_tasks is not None
        if read_tasks is not None:
            self.inqueue.extend(read_tasks)
            self.inputs_done = [True]
            rows = [getattr(t.metadata, "num_rows", None) for t in read_tasks]
            if all(r is not None for r in rows) and all(s.row_preserving for s in stages):
                self.expected_rows = int(sum(rows))
        self.running: dict[Any, _Task] = {}
        self._seq = itertools.count()
        self._next_release = 0
        self._done: dict[int, list[Bundle]] = {}
        self._out_sizes: list[int] = []
        self._in_sizes: list[int] = []

    # accounting
    def num_running(self) -> int:
        return len(self.running)

    def running_bytes(self) -> int:
        held = sum(b.size for done in self._done.values() for b in done)
        return sum(t.input_bytes + t.est_output for t in self.running.values()) + held

    def _avg_ratio(self) -> float:
        if self._in_sizes and sum(self._in_sizes):
            return max(0.05, sum(self._out_sizes) / sum(self._in_sizes))
        return 1.0

    def _item_bytes(self, item: Any) -> int:
        if isinstance(item, Bundle):
            return item.size
        meta = getattr(item, "metadata", None)
        size = getattr(meta, "size_bytes", None)
        if size is None:
            return int(sum(self._out_sizes) / len(self._out_sizes)) if self._out_sizes else 1024 * 1024
        return int(size)

    def _next_items(self, peek: bool = False) -> list[Any]:
        if self._retry:
            return self._retry[0][1] if peek else self._retry.popleft()[1]
        if not self.inqueue:
            return []
        if self.read_tasks is not None:
            return [self.inqueue[0]] if peek else [self.inqueue.popleft()]
        items, rows, size = [], 0, 0
        want_rows = self.min_rows_per_bundle or 0
        for item in self.inqueue:
            items.append(item)
            rows += item.rows
            size += item.size
            if (rows >= want_rows and size >= self.min_bundle_bytes) or size >= self.bundle_cap:
                break  # a full bundle, or as much as the memory budget lets upstream produce
        else:
            if not self.all_inputs_done():
                return []  # wait for more input to fill the bundle
        if not peek:
            for _ in items:
                self.inqueue.popleft()
        return items

    def _estimate_output(self, items: list[Any]) -> tuple[int, int]:
        """(estimated input bytes, estimated output bytes) of a task over ``items``."""
        size = sum(self._item_bytes(i) for i in items)
        if self.is_source:
            observed = int(sum(self._out_sizes) / len(self._out_sizes)) if self._out_sizes else 0
            return size, max(size, observed)
        return size, int(size * self._avg_ratio())

    def launch_estimate(self) -> int:
        return self._estimate_output(self._next_items(peek=True))[1]

    def _concurrency_ok(self) -> bool:
        if self.starved and self.running:
            return False
        return self.max_concurrency is None or len(self.running) < self.max_concurrency

    def _probing(self) -> bool:
        """Until one task's output size is known a source with map stages runs one task at a time:
        its read estimate says nothing about what the maps make of it."""
        return self.is_source and bool(self.stages) and not self._out_sizes and bool(self.running)

    def launchable(self) -> bool:
        return not self.abandoned and self._concurrency_ok() and not self._probing() and \
            bool(self._next_items(peek=True))

    def _submit(self, items: list[Any]) -> tuple[Any, Any, Any]:
        args = [i.ref if isinstance(i, Bundle) else i for i in items]
        opts = dict(self.remote_args)
        opts.setdefault("num_cpus", self.request_cpus)
        opts.setdefault("name", self.name)
        if self.gpus:
            opts.setdefault("num_gpus", self.gpus)
        gen_ref = _map_task.options(**opts).remote(self.stages, self.max_block_bytes, *args)
        return None, gen_ref, None

    def launch_one(self, executor: Any) -> None:
        seq = self._retry[0][0] if self._retry else None
        items = self._next_items()
        if seq is None:
            seq = next(self._seq)
        in_bytes = sum(i.size for i in items if isinstance(i, Bundle))
        est, est_out = self._estimate_output(items)
        block_ref, meta_ref, actor = self._submit(items)
        task = _Task(seq, block_ref, meta_ref, in_bytes, est_out, self.request_cpus, self.gpus, actor, items=items)
        task._in_est = est  # type: ignore[attr-defined]
        self.running[meta_ref] = task
        self.stats.task_started()

    def pending(self) -> dict[Any, Callable[[], None]]:
        return {ref: (lambda r=ref: self._complete(r)) for ref in self.running}

    def _complete(self, meta_ref: Any) -> None:
        task = self.running.pop(meta_ref)
        self._task_finished(task)
        refs = list(distcore.get(meta_ref, timeout=600))  # the task's block refs, then its metadata list
        metas: list[BlockMetadata] = distcore.get(refs[-1], timeout=600)
        bundles = [Bundle(r, m) for r, m in zip(refs[:-1], metas, strict=True)]
        self._in_sizes.append(getattr(task, "_in_est", 0))
        self._out_sizes.append(sum(b.size for b in bundles))
        self.stats.task_done(metas[0] if metas else None, time.perf_counter() - task.started)
        self._done[task.seq] = bundles
        while self._next_release in self._done:
            ready = self._done.pop(self._next_release)
            self._next_release += 1
            for bundle in ready:
                self.emit(bundle)

    def _task_finished(self, task: _Task) -> None:
        pass

    def resource_usage(self) -> tuple[float, float]:
        return sum(t.cpus for t in self.running.values()), sum(t.gpus for t in self.running.values())

    def work_done(self) -> bool:
        return super().work_done() and (self.abandoned or not self._retry)

    def abandon(self) -> None:
        super().abandon()
        self._retry.clear()

    def starve(self, stuck: list[_Task]) -> None:
        """Cancel ``stuck`` tasks (still waiting for a CPU) and resubmit their inputs one at a time
        without a CPU reservation, keeping their places in the output order."""
        for task in stuck:
            if self.running.pop(task.meta_ref, None) is None:
                continue
            try:
                distcore.cancel(task.meta_ref)
            except Exception:  # noqa: BLE001 - it may have just finished; its output is dropped either way
                pass
            self._retry.append((task.seq, task.items))
        self._retry = collections.deque(sorted(self._retry, key=lambda r: r[0]))
        self.starved = True
        self.request_cpus = 0.0
        self.stats.starved_count += 1

    def unstarve(self) -> None:
        """A CPU is free again: new tasks reserve ``cpus`` and run at full concurrency."""
        self.starved = False
        self.request_cpus = self.cpus


class ActorPoolMapOp(MapOp):
    """A MapOp on a pool of actors (min..max), scaled up while its queue is long.

    Work goes only to actors that finished their constructor; a pool whose actors cannot
    start (the cluster has no room) fails after ``start_timeout_s`` naming the operator.
    """

    IDLE_S = 5.0

    def __init__(self, *args: Any, min_size: int, max_size: int, max_in_flight: int,
                 scale_ratio: float, start_timeout_s: float = 600.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_size, self.max_size = min_size, max_size
        self.max_in_flight = max_in_flight
        self.scale_ratio = scale_ratio
        self.start_timeout_s = start_timeout_s
        self.actors: dict[Any, int] = {}  # handle -> calls in flight
        self.ready: set[Any] = set()
        self._starting: dict[Any, Any] = {}  # ready() ref -> handle
        self._started_at = time.monotonic()
        self._warned = False
        self._idle_since = time.monotonic()
        self._actor_cls = _MapWorkerActor

    def _new_actor(self) -> None:
        opts = dict(self.remote_args)
        opts["num_cpus"] = self.cpus
        if self.gpus:
            opts["num_gpus"] = self.gpus
        handle = self._actor_cls.options(**opts).remote(self.stages)
        self.actors[handle] = 0
        self._starting[handle.ready.remote()] = handle
        self.stats.actors = max(self.stats.actors, len(self.actors))

    def start(self, executor: Any) -> None:
        self._started_at = time.monotonic()
        for _ in range(self.min_size):
            self._new_actor()

    def resource_usage(self) -> tuple[float, float]:
        return self.cpus * len(self.actors), self.gpus * len(self.actors)

    def pending(self) -> dict[Any, Callable[[], None]]:
        out = super().pending()
        out.update({ref: (lambda r=ref: self._actor_ready(r)) for ref in self._starting})
        return out

    def _actor_ready(self, ref: Any) -> None:
        handle = self._starting.pop(ref)
        distcore.get(ref, timeout=600)  # raises the constructor's error (it names this operator)
        if handle in self.actors:
            self.ready.add(handle)

    def _free_actor(self) -> Any:
        best = min(((h, n) for h, n in self.actors.items() if h in self.ready), key=lambda kv: kv[1],
                   default=None)
        if best is None or best[1] >= self.max_in_flight:
            return None
        return best[0]

    def launchable(self) -> bool:
        return not self.abandoned and not self._probing() and bool(self._next_items(peek=True)) and \
            self._free_actor() is not None

    def maybe_scale_up(self, free_cpus: float, free_gpus: float) -> bool:
        if self.abandoned or len(self.actors) >= self.max_size or not self.inqueue or self._starting:
            return False
        busy = all(n >= 1 for n in self.actors.values())
        if not busy or len(self.inqueue) < self.scale_ratio * max(1, len(self.actors)):
            return False
        if self.cpus > free_cpus + 1e-9 or self.gpus > free_gpus + 1e-9:
            return False
        try:  # other work may hold what this executor believes is free
            avail = distcore.available_resources()
        except Exception:  # noqa: BLE001 - no scale-up without an answer
            return False
        if self.cpus > avail.get("CPU", 0.0) + 1e-9 or self.gpus > avail.get("GPU", 0.0) + 1e-9:
            return False
        self._new_actor()
        return True

    def _submit(self, items: list[Any]) -> tuple[Any, Any, Any]:
        actor = self._free_actor()
        args = [i.ref if isinstance(i, Bundle) else i for i in items]
        gen_ref = actor.process.remote(self.max_block_bytes, *args)
        self.actors[actor] += 1
        return None, gen_ref, actor

    def launch_one(self, executor: Any) -> None:
        super().launch_one(executor)
        for task in self.running.values():
            task.cpus = task.gpus = 0.0

    def _task_finished(self, task: _Task) -> None:
        if task.actor in self.actors:
            self.actors[task.actor] -= 1

    def poll(self, executor: Any) -> None:
        if self.actors and not self.ready and self._starting:
            waited = time.monotonic() - self._started_at
            if waited > min(30.0, self.start_timeout_s) and not self._warned:
                self._warned = True
                logger.warning("distcore.data: operator %s is still waiting for its first actor after %.0fs "
                               "(each needs %g CPU, %g GPU; the cluster has %s available)", self.name, waited,
                               self.cpus, self.gpus, _available())
            if waited > self.start_timeout_s:
                from distcore.data.exceptions import InsufficientResourcesError

                raise InsufficientResourcesError(
                    f"operator {self.name} could not start any of its actors within {self.start_timeout_s:g}s: "
                    f"each needs {self.cpus:g} CPU and {self.gpus:g} GPU; available now: {_available()} "
                    f"(DataContext.wait_for_actors_timeout_s sets this limit)")
        # Scale down: once no more input can come, idle actors go; before that, actors above
        # min_size go after IDLE_S seconds with an empty queue.
        if self.work_done() or (self.all_inputs_done() and not self.inqueue):
            for handle, n in list(self.actors.items()):
                if n == 0:
                    self._kill(handle)
            return
        now = time.monotonic()
        if self.inqueue or any(n for n in self.actors.values()):
            self._idle_since = now
        elif len(self.ready) > self.min_size and now - self._idle_since > self.IDLE_S:
            idle = next(h for h in self.ready if self.actors.get(h) == 0)
            self._kill(idle)
            self._idle_since = now

    def _kill(self, handle: Any) -> None:
        self.actors.pop(handle, None)
        self.ready.discard(handle)
        for ref, h in list(self._starting.items()):
            if h is handle:
                del self._starting[ref]
        try:
            distcore.kill(handle)
        except Exception:  # noqa: BLE001 - the actor may already be gone
            pass

    def shutdown(self) -> None:
        for handle in list(self.actors):
            self._kill(handle)


def _available() -> dict[str, float]:
    try:
        return {k: v for k, v in distcore.available_resources().items() if k in ("CPU", "GPU")}
    except Exception:  # noqa: BLE001 - only for a message
        return {}


class LimitOp(PhysicalOp):
    def __init__(self, name: str, deps: list[PhysicalOp], n: int) -> None:
        super().__init__(name, deps)
        self.n = n
        self.taken = 0
        self.reached = n <= 0
        self._slicing: dict[Any, Any] = {}

    def poll(self, executor: Any) -> None:
        while self.inqueue and not self.reached:
            bundle: Bundle = self.inqueue.popleft()
            left = self.n - self.taken
            if bundle.rows <= left:
                self.taken += bundle.rows
                self.emit(bundle)
            else:
                block_ref, meta_ref = _slice_task.remote(bundle.ref, 0, left)
                self._slicing[meta_ref] = block_ref
                self.taken = self.n
            if self.taken >= self.n:
                self.reached = True
        if self.reached:
            self.inqueue.clear()
            self.abandoned = not self._slicing
            executor.abandon_upstream(self)

    def num_running(self) -> int:
        return len(self._slicing)

    def pending(self) -> dict[Any, Callable[[], None]]:
        return {ref: (lambda r=ref: self._sliced(r)) for ref in self._slicing}

    def _sliced(self, meta_ref: Any) -> None:
        block_ref = self._slicing.pop(meta_ref)
        self.emit(Bundle(block_ref, distcore.get(meta_ref, timeout=600)))
        self.abandoned = self.reached and not self._slicing

    def work_done(self) -> bool:
        if self.reached:
            return not self._slicing
        return self.all_inputs_done() and not self.inqueue and not self._slicing


class UnionOp(PhysicalOp):
    """Outputs its inputs in order: all of input 0, then input 1, ..."""

    def __init__(self, name: str, deps: list[PhysicalOp]) -> None:
        super().__init__(name, deps)
        self.parts: list[collections.deque] = [collections.deque() for _ in deps]
        self._current = 0

    def add_input(self, item: Any, index: int = 0) -> None:
        self.parts[index].append(item)
        self.inqueue.append(item)

    def queued_bytes(self) -> int:
        # Blocks of later inputs wait here until the earlier inputs finish: they are ``held_bytes``,
        # which throttle only the operators that feed those later inputs (see the executor's _launch).
        current = self.parts[self._current] if self._current < len(self.parts) else ()
        return sum(b.size for b in current) + sum(b.size for b in self.outqueue)

    def held_bytes(self) -> int:
        return sum(b.size for part in self.parts[self._current + 1:] for b in part)

    def later_inputs(self) -> list[PhysicalOp]:
        """The inputs this union does not emit yet."""
        return self.deps[self._current + 1:]

    def current_inputs(self) -> list[PhysicalOp]:
        return self.deps[self._current:self._current + 1]

    def poll(self, executor: Any) -> None:
        while self._current < len(self.parts):
            part = self.parts[self._current]
            while part:
                bundle = part.popleft()
                self.inqueue.remove(bundle)
                self.emit(bundle)
            if self.inputs_done[self._current]:
                self._current += 1
            else:
                break


class AllToAllOp(PhysicalOp):
    """A barrier: once every input is done, ``fn(list of bundle lists)`` runs and its blocks are emitted."""

    def __init__(self, name: str, deps: list[PhysicalOp], fn: Callable[[list[list]], list]) -> None:
        super().__init__(name, deps)
        self.fn = fn
        self.parts: list[list[Bundle]] = [[] for _ in deps]
        self._ran = False

    def add_input(self, item: Any, index: int = 0) -> None:
        self.parts[index].append(item)
        self.inqueue.append(item)

    def queued_bytes(self) -> int:
        return sum(b.size for b in self.outqueue)

    def held_bytes(self) -> int:
        # An exchange needs all of its input: what it collects counts in the pipeline's memory, but it
        # does not hold back the reads that feed it (they must finish for the exchange to run).
        return sum(b.size for part in self.parts for b in part)

    def poll(self, executor: Any) -> None:
        if self._ran or self.abandoned or not self.all_inputs_done():
            return
        self._ran = True
        start = time.perf_counter()
        inputs = [[(b.ref, b.meta) for b in part] for part in self.parts]
        # hand the input refs over: the exchange drops them once its map tasks hold them, so each
        # input block is freed as its map task ends (not after the whole exchange)
        self.parts = []
        self.inqueue.clear()
        self.stats.task_started()
        out = self.fn(inputs)
        for ref, meta in out:
            self.emit(Bundle(ref, meta))
        self.stats.task_done(None, time.perf_counter() - start)

    def work_done(self) -> bool:
        return self.abandoned or self._ran
