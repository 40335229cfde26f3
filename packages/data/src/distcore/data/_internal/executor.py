"""The streaming executor: runs physical operators as a pipeline under a memory budget.

Operators are connected by queues. Each step the executor moves finished
blocks downstream, then launches work downstream-first while the pipeline's
memory (queued + in-flight blocks + the heap of running tasks, estimated from
block sizes) fits the budget. Sources (reads) never launch over budget, so a
slow consumer throttles the reads instead of filling the object store.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import distcore
from distcore.data._internal.adapt import StartWatcher
from distcore.data._internal.logical import LogicalPlan
from distcore.data._internal.optimizer import optimize
from distcore.data._internal.physical import ActorPoolMapOp, Bundle, MapOp, PhysicalOp, UnionOp
from distcore.data._internal.planner import Planner
from distcore.data._internal.progress import OpProgress, bars_enabled
from distcore.data._internal.stats import ExecutionStats
from distcore.data.exceptions import InsufficientResourcesError

_EPS = 1e-9
logger = logging.getLogger(__name__)


def cluster_totals(ctx: Any) -> tuple[float, float]:
    if not distcore.is_initialized():
        distcore.init()
    res = distcore.cluster_resources()
    limits = ctx.execution_options.resource_limits
    cpus = limits.cpu if limits.cpu is not None else float(res.get("CPU", 0.0))
    gpus = limits.gpu if limits.gpu is not None else float(res.get("GPU", 0.0))
    return cpus, gpus


class StreamingExecutor:
    def __init__(self, plan: LogicalPlan, ctx: Any, name: str = "dataset") -> None:
        self.ctx = ctx
        self.name = name
        self.total_cpus, self.total_gpus = cluster_totals(ctx)
        optimized = optimize(plan, enabled=ctx.enable_optimizer, fusion=ctx.enable_operator_fusion)
        self.ops: list[PhysicalOp] = Planner(ctx, self.total_cpus).plan(optimized.dag)
        self.final = self.ops[-1]
        self.consumers: dict[int, list[tuple[PhysicalOp, int]]] = collections.defaultdict(list)
        for op in self.ops:
            for idx, dep in enumerate(op.deps):
                self.consumers[id(dep)].append((op, idx))
        self.budget = ctx.effective_memory_budget()
        for op in self.ops:
            if isinstance(op, MapOp):
                op.bundle_cap = max(1, self.budget // 4)
        self.output: collections.deque[Bundle] = collections.deque()
        self.consumer_held = 0
        self._signaled: set[int] = set()
        self.finished = False
        self.error: BaseException | None = None
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._started_at = 0.0
        self.peak_usage = 0
        show = bars_enabled(ctx)
        self.bars = [OpProgress(op.name, i, op.expected_rows, show) for i, op in enumerate(self.ops)]
        self.stats = ExecutionStats([op.stats for op in self.ops], memory_budget=self.budget)
        self._check_fits()
        self.watcher = StartWatcher(self._task_ops(), getattr(ctx, "task_start_timeout_s", 5.0))

    # ------------------------------------------------------------------ resources

    def _task_ops(self) -> list[MapOp]:
        return [op for op in self.ops if isinstance(op, MapOp) and not isinstance(op, ActorPoolMapOp)]

    def _check_fits(self) -> None:
        cpus, gpus = self.total_cpus, self.total_gpus
        for op in self.ops:
            if not isinstance(op, MapOp):
                continue
            if isinstance(op, ActorPoolMapOp):
                need_c, need_g, what = op.cpus * op.min_size, op.gpus * op.min_size, f"{op.min_size} actor(s)"
            else:
                need_c, need_g, what = op.cpus, op.gpus, "one task"
            missing = {}
            if need_c > cpus + _EPS:
                missing["CPU"] = need_c - cpus
            if need_g > gpus + _EPS:
                missing["GPU"] = need_g - gpus
            if missing:
                raise InsufficientResourcesError(
                    f"operator {op.name} needs {need_c:g} CPU and {need_g:g} GPU for {what}, but the cluster has "
                    f"{cpus:g} CPU and {gpus:g} GPU (missing {', '.join(f'{v:g} {k}' for k, v in missing.items())})")
        pools = [op for op in self.ops if isinstance(op, ActorPoolMapOp)]
        pool_c = sum(op.cpus * op.min_size for op in pools)
        pool_g = sum(op.gpus * op.min_size for op in pools)
        task_c = max((op.cpus for op in self._task_ops()), default=0.0)
        task_g = max((op.gpus for op in self._task_ops()), default=0.0)
        if pools and (pool_c + task_c > cpus + _EPS or pool_g + task_g > gpus + _EPS):
            names = ", ".join(f"{op.name} ({op.min_size} x {op.cpus:g} CPU/{op.gpus:g} GPU)" for op in pools)
            tasks = ", ".join(op.name for op in self._task_ops() if op.cpus or op.gpus)
            raise InsufficientResourcesError(
                f"the pipeline cannot fit the cluster ({cpus:g} CPU, {gpus:g} GPU): actor pools {names} hold "
                f"{pool_c:g} CPU/{pool_g:g} GPU and task operator(s) {tasks} need {task_c:g} CPU/{task_g:g} GPU "
                f"more (missing {max(0.0, pool_c + task_c - cpus):g} CPU, {max(0.0, pool_g + task_g - gpus):g} "
                f"GPU); lower the pools' concurrency or num_cpus")

    def _used(self) -> tuple[float, float]:
        c = g = 0.0
        for op in self.ops:
            oc, og = op.resource_usage()
            c, g = c + oc, g + og
        return c, g

    # ------------------------------------------------------------------ memory

    def usage(self) -> int:
        held = sum(op.queued_bytes() + op.running_bytes() + op.held_bytes() for op in self.ops)
        # list() copies the deque atomically: the consumer thread pops from it concurrently
        return held + sum(b.size for b in list(self.output)) + self.consumer_held

    # ------------------------------------------------------------------ lifecycle

    def _adapt_to_busy_cluster(self) -> None:
        """When other work (e.g. train workers) holds every CPU at start, default-resource task operators
        start shrunk: one task at a time without a CPU reservation (``StartWatcher`` grows them back
        once a CPU frees, and shrinks any operator whose tasks wait too long later on).
        """
        ops = [op for op in self._task_ops() if op.default_resources and op.cpus > 0]
        if not ops:
            return
        need = max(op.cpus for op in ops)
        try:
            for attempt in range(3):  # a just-started cluster may not report its CPUs yet
                free = float(distcore.available_resources().get("CPU", 0.0))
                if free + _EPS >= need:
                    return
                time.sleep(0.2 * (attempt + 1))
        except Exception:  # noqa: BLE001 - keep the normal requests
            return
        if free + _EPS < need:
            for op in ops:
                op.starve([])
            logger.warning("distcore.data: no free CPU in the cluster (%s CPUs total, all held by other work); "
                           "running its tasks one at a time without a CPU reservation until a CPU frees up", self.total_cpus)

    def start(self) -> StreamingExecutor:
        self._started_at = time.perf_counter()
        self._adapt_to_busy_cluster()
        for op in self.ops:
            op.start(self)
        return self

    def run_in_thread(self) -> StreamingExecutor:
        self.start()
        self._thread = threading.Thread(target=self._run, name=f"distcore-data-executor-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop and not self.finished:
                self.step(0.02)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            with self._lock:
                self.error = exc
                self._lock.notify_all()
        finally:
            self._close_ops()

    def next_bundle(self, timeout: float | None = None) -> Bundle | None:
        """The next output block (None at the end); raises the pipeline's error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is None:
            while not self.output and not self.finished:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"no output from the dataset pipeline within {timeout}s")
                self.step(0.02)
            return self.output.popleft() if self.output else None
        with self._lock:
            while not self.output and not self.finished and self.error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no output from the dataset pipeline within {timeout}s")
                self._lock.wait(0.1 if remaining is None else min(0.1, remaining))
            if self.output:
                bundle = self.output.popleft()
                self._lock.notify_all()
                return bundle
            if self.error is not None:
                raise self.error
            return None

    def shutdown(self) -> None:
        self._stop = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._close_ops()

    def _close_ops(self) -> None:
        for op in self.ops:
            try:
                op.shutdown()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        for bar in self.bars:
            bar.close()
        if self._started_at:
            self.stats.wall_s = time.perf_counter() - self._started_at
        self.stats.peak_memory = self.peak_usage

    def abandon_upstream(self, op: PhysicalOp) -> None:
        stack = list(op.deps)
        while stack:
            dep = stack.pop()
            if not dep.abandoned:
                dep.abandon()
            stack.extend(dep.deps)

    # ------------------------------------------------------------------ one step

    def step(self, timeout: float) -> None:
        self.watcher.check()
        for op in self.ops:
            op.poll(self)
        self._move_outputs()
        self._launch()
        self._wait(timeout)
        for op in self.ops:
            op.poll(self)
        self._move_outputs()
        usage = self.usage()
        self.peak_usage = max(self.peak_usage, usage)
        for op, bar in zip(self.ops, self.bars, strict=True):
            held = op.queued_bytes() + op.running_bytes()
            op.stats.note_memory(held)
            bar.update(op.stats.rows_out, op.stats.blocks_out, len(op.inqueue), held)

    def _move_outputs(self) -> None:
        moved = False
        for op in self.ops:
            while op.outqueue:
                bundle = op.outqueue.popleft()
                if op is self.final:
                    self.output.append(bundle)
                    moved = True
                for consumer, idx in self.consumers.get(id(op), []):
                    consumer.add_input(bundle, idx)
            if op.work_done() and not op.outqueue and id(op) not in self._signaled:
                self._signaled.add(id(op))
                for consumer, idx in self.consumers.get(id(op), []):
                    consumer.mark_input_done(idx)
                if op is self.final:
                    self.finished = True
                    moved = True
        if moved and self._thread is not None:
            with self._lock:
                self._lock.notify_all()

    def _upstream(self, ops: list[PhysicalOp]) -> set[int]:
        seen: set[int] = set()
        stack = list(ops)
        while stack:
            op = stack.pop()
            if id(op) not in seen:
                seen.add(id(op))
                stack.extend(op.deps)
        return seen

    def _ahead(self) -> set[int]:
        """Operators that only feed a union's later inputs: their output would wait in the union, so
        they run only while the whole pipeline, held blocks included, fits the budget."""
        later: set[int] = set()
        current: set[int] = set()
        for op in self.ops:
            if isinstance(op, UnionOp):
                later |= self._upstream(op.later_inputs())
                current |= self._upstream(op.current_inputs())
        return later - current

    def _launch(self) -> None:
        full = self.usage()
        held = sum(op.held_bytes() for op in self.ops)
        ahead = self._ahead() if held else set()
        used_c, used_g = self._used()
        any_running = any(op.num_running() for op in self.ops)
        reserve_c = max((op.cpus for op in self._task_ops() if not op.work_done()), default=0.0)
        for op in reversed(self.ops):
            # what a barrier holds throttles only the operators that feed its not-yet-emitted inputs
            usage = full if id(op) in ahead else full - held
            if isinstance(op, ActorPoolMapOp):
                free_c = self.total_cpus - used_c - (reserve_c if any(
                    not t.work_done() for t in self._task_ops()) else 0.0)
                if op.maybe_scale_up(free_c, self.total_gpus - used_g):
                    used_c += op.cpus
                    used_g += op.gpus
            while op.launchable():
                is_pool = isinstance(op, ActorPoolMapOp)
                need_c = 0.0 if is_pool else getattr(op, "request_cpus", 0.0)
                need_g = 0.0 if is_pool else getattr(op, "gpus", 0.0)
                if need_c > 0 and used_c + need_c > self.total_cpus + _EPS:
                    break
                if need_g > 0 and used_g + need_g > self.total_gpus + _EPS:
                    break
                est = op.launch_estimate()
                if usage + est > self.budget:
                    # Over budget, a source waits unless the pipeline itself is empty (what the consumer
                    # holds does not count here, else a consumer holding blocks would stall forever).
                    if op.is_source and (usage - self.consumer_held > 0 or any_running):
                        break
                    if not op.is_source and op.num_running() > 0:
                        break
                op.launch_one(self)
                any_running = True
                usage += est
                full += est
                used_c += need_c
                used_g += need_g

    def _wait(self, timeout: float) -> None:
        callbacks: dict[Any, Any] = {}
        for op in self.ops:
            callbacks.update(op.pending())
        if not callbacks:
            if not self.finished:
                # Nothing running: wait for the consumer to take a block (it notifies) or a short timeout.
                if self._thread is not None:
                    with self._lock:
                        self._lock.wait(timeout)
                else:
                    time.sleep(0.001)
            return
        refs = list(callbacks)
        ready, rest = distcore.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = distcore.wait(rest, num_returns=len(rest), timeout=0)
            ready = ready + more
        for ref in ready:
            callbacks[ref]()


def execute_to_bundles(plan: LogicalPlan, ctx: Any) -> tuple[list[Bundle], ExecutionStats]:
    """Run a plan to the end and return all its output blocks (in order)."""
    ex = StreamingExecutor(plan, ctx).run_in_thread()
    out: list[Bundle] = []
    try:
        while True:
            b = ex.next_bundle()
            if b is None:
                break
            out.append(b)
    finally:
        ex.shutdown()
    return out, ex.stats
