"""Submitting normal tasks: resolve arguments, lease workers, push, retry.

Tasks are grouped by *scheduling key* (resource shape, runtime env,
strategy, placement). Each key has a FIFO queue and the workers leased for
it; a leased worker runs one task at a time and is kept while its key has
queued tasks, then returned to its node manager.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.core_worker.locality import leases_follow_locality, preferred_nodes
from distcore._private.rpc import RpcError, RpcUnavailable
from distcore._private.serialization import ErrorValue, deserialize
from distcore._private.worker_death import WorkerDeathInfo, fetch_death_info, owner_error
from distcore.exceptions import (
    ObjectLostError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    TaskCancelledError,
    TaskUnschedulableError,
)

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

MAX_LEASE_REQUESTS_PER_KEY = 10
INFEASIBLE_RETRY_S = 1.0
# How long an idle leased worker is kept for the next task of the same shape.
LEASE_LINGER_S = 0.1


@dataclass
class _Task:
    spec: p.TaskSpec
    deps: list[str]  # ids counted as "submitted" until the task is done
    cancelled: bool = False
    running_on: _Leased | None = None
    force_cancel: bool = False


@dataclass(eq=False)
class _Leased:
    lease_id: str
    worker: p.Address
    node_address: str
    assigned: dict[str, float]
    gpu_ids: list[int]
    busy: bool = False
    idle_since: float = field(default_factory=time.monotonic)  # when it last finished a task


@dataclass
class _KeyState:
    queue: deque = field(default_factory=deque)
    leased: list[_Leased] = field(default_factory=list)
    requesting: int = 0
    warned: str = ""
    linger: asyncio.TimerHandle | None = None  # the pending _return_idle, one per key


@dataclass
class _Generator:
    items: dict[int, str] = field(default_factory=dict)
    total: int | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class TaskSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.keys: dict[Any, _KeyState] = {}
        self.tasks: dict[str, _Task] = {}
        self.generators: dict[str, _Generator] = {}
        self._closing = False
        # Guards the leased workers' ``busy`` flags and lists: caller threads (``_send_direct``) and
        # the io loop both hand tasks to idle leased workers.
        self._lock = threading.Lock()

    # ------------------------------------------------------------ submission

    def submit_call(self, spec: p.TaskSpec, deps: list[str]) -> None:
        """Submit a task from the caller's thread (``RemoteFunction.remote``).

        When a worker leased for the task's shape is idle (a sync loop's next task), nothing is
        queued before it and it has no ref arguments, the task is pushed from this thread: marked
        busy here, the request frame written here, the reply handled by the io loop as it arrives
        (``_DirectRun``). Everything else goes through the io loop (``submit``)."""
        if not deps and isinstance(spec.num_returns, int) and self._send_direct(spec):
            return
        self.core.submit_soon(self.submit(spec, deps))

    def _send_direct(self, spec: p.TaskSpec) -> bool:
        core = self.core
        key = _scheduling_key(spec)
        state = self.keys.get(key)
        if state is None or state.queue or self._closing or core._closed:
            return False
        with self._lock:
            idle = next((w for w in state.leased if not w.busy), None)
            if idle is None:
                return False
            framed = core.clients.framed(idle.worker.target)
            if framed is None:
                return False
            task = _Task(spec, [], running_on=idle)
            idle.busy = True
            self.tasks[spec.task_id] = task
            # Before the send, so that the reply handler (_DirectRun drains it first) finds it; a
            # second record of the same task (the fallback below) is a no-op.
            core.defer(core.lineage.record, spec, [])
            if not framed.send_direct("PushTask", p.PushTask(spec, idle.assigned, idle.gpu_ids),
                                      _DirectRun(self, key, state, idle, task)):
                idle.busy = False
                del self.tasks[spec.task_id]
                return False
        core.task_events.record_submitted(spec)
        return True

    async def submit(self, spec: p.TaskSpec, deps: list[str]) -> None:
        self.core.task_events.record_submitted(spec)
        task = _Task(spec, deps)
        self.tasks[spec.task_id] = task
        self.core.lineage.record(spec, deps)  # kept while its returns are referenced (reconstruction.py)
        if spec.num_returns == "streaming":
            self.start_generator(spec.task_id)
        try:
            await self._resolve_args(spec)
        except Exception as exc:  # noqa: BLE001 - a lost argument fails the task
            if not task.cancelled:
                self._finish_with_error(task, exc)
            return
        if task.cancelled:
            return  # cancel() already failed it
        key = _scheduling_key(spec)
        state = self.keys.setdefault(key, _KeyState())
        state.queue.append(task)
        self._pump(key, state)

    async def _resolve_args(self, spec: p.TaskSpec) -> None:
        """Wait for top-level ref arguments; inline the small ones."""
        args = list(spec.args) + list(spec.kwargs.values())
        waits = [self._resolve_one(a) for a in args if a.object_id is not None]
        if waits:
            await asyncio.gather(*waits)

    async def _resolve_one(self, arg: p.TaskArg) -> None:
        obj = await self.core.resolve(arg.object_id, arg.owner, None)
        if obj is None:
            return
        if obj.value is not None:
            arg.value = obj.value
        else:
            arg.in_plasma_node = obj.plasma_node

    def _pump(self, key: Any, state: _KeyState) -> None:
        while state.queue:
            with self._lock:
                idle = next((w for w in state.leased if not w.busy), None)
                if idle is None:
                    break
                task = state.queue.popleft()
                if not task.cancelled:
                    idle.busy = True
            if task.cancelled:
                self._finish_with_error(task, TaskCancelledError(task.spec.task_id))
                continue
            task.running_on = idle
            asyncio.ensure_future(self._run(key, state, idle, task))
        want = min(len(state.queue), MAX_LEASE_REQUESTS_PER_KEY) - state.requesting
        for _ in range(max(0, want)):
            state.requesting += 1
            asyncio.ensure_future(self._lease(key, state, state.queue[0].spec))
        if not state.queue and state.linger is None and any(not w.busy for w in state.leased):
            # Keep idle leases briefly: a caller that submits, waits and submits
            # again (a sync loop) reuses the worker without two lease round trips.
            state.linger = asyncio.get_running_loop().call_later(LEASE_LINGER_S, self._return_idle, state)

    def _return_idle(self, state: _KeyState) -> None:
        """Give back the workers idle for ``LEASE_LINGER_S`` (not those that just finished a task: a
        sync loop's worker is idle for a moment between its tasks; returning it then cost one lease
        cycle per ~6 tasks). One timer per key, re-armed for the next worker due."""
        state.linger = None
        if state.queue:
            return  # _pump arms it again once the queue is empty
        now = time.monotonic()
        due = None
        with self._lock:
            idle = [w for w in state.leased if not w.busy]
            expired = [w for w in idle if w.idle_since + LEASE_LINGER_S <= now + 0.002]
            for leased in expired:
                state.leased.remove(leased)
        for leased in expired:
            asyncio.ensure_future(self._return(leased))
        for leased in idle:
            if leased not in expired:
                due = leased.idle_since + LEASE_LINGER_S if due is None else min(due, leased.idle_since + LEASE_LINGER_S)
        if due is not None:
            state.linger = asyncio.get_running_loop().call_later(max(0.0, due - now), self._return_idle, state)

    def return_idle_on(self, node_id: str) -> None:
        """Give back the idle leased workers on ``node_id`` now: it died (or lost an object), and a
        task pushed there blindly would spend a retry (``reconstruction.py`` calls this)."""
        for state in self.keys.values():
            with self._lock:
                gone = [w for w in state.leased if not w.busy and w.worker.node_id == node_id]
                for leased in gone:
                    state.leased.remove(leased)
            for leased in gone:
                asyncio.ensure_future(self._return(leased))

    async def _lease(self, key: Any, state: _KeyState, spec: p.TaskSpec) -> None:
        try:
            leased = await self._acquire(state, spec)
        finally:
            state.requesting -= 1
        if leased is not None:
            state.leased.append(leased)
        self._pump(key, state)

    async def _acquire(self, state: _KeyState, spec: p.TaskSpec) -> _Leased | None:
        core = self.core
        target = core.node_address
        # Nodes holding the task's large arguments, most bytes first (``locality.py``).
        preferred = preferred_nodes(spec, lambda oid: getattr(core.memory.get(oid), "size", 0))
        if spec.placement is not None:
            target = await self._bundle_node(spec)
            if target is None:
                self._fail_queue(state, TaskUnschedulableError(
                    f"task {spec.name} cannot run: its placement group {spec.placement[0][:8]} was removed or never created"
                ))
                return None
        elif preferred and leases_follow_locality(spec):
            target = await core.node_address_of(preferred[0]) or core.node_address
        spilled_from = None
        while state.queue and not self._closing:
            request = p.LeaseRequest(
                lease_id=ids.random_hex(8), resources=spec.resources, runtime_env=spec.runtime_env,
                runtime_env_key=spec.runtime_env_key, job_id=spec.job_id, owner=core.address,
                strategy=spec.strategy, placement=spec.placement, spilled_from=spilled_from, name=spec.name,
                preferred_nodes=preferred,
                backlog=len(state.queue),
                retriable=spec.max_retries == -1 or spec.attempt < spec.max_retries,
            )
            try:
                reply: p.LeaseReply = await core.clients.get(target).call("NodeManager", "RequestWorkerLease", request)
            except RpcError as exc:
                logger.warning("lease request for %s failed: %s; retrying", spec.name, exc)
                await asyncio.sleep(0.5)
                target = core.node_address
                continue
            if reply.granted:
                assert reply.worker is not None
                return _Leased(reply.lease_id, reply.worker, target, reply.assigned, reply.gpu_ids)
            if reply.retry_at_address:
                target, spilled_from = reply.retry_at_address, core.node_id
                continue
            if reply.infeasible:
                if state.warned != reply.reason:
                    state.warned = reply.reason
                    logger.warning(
                        "task %s is infeasible and waits for the cluster to grow: it needs %s, %s",
                        spec.name, spec.resources, reply.reason,
                    )
                    _warn_user(f"Task {spec.name} cannot be scheduled: it needs {spec.resources}, but {reply.reason}. "
                               "It stays queued until a node that fits joins the cluster.")
                await asyncio.sleep(INFEASIBLE_RETRY_S)
                target, spilled_from = core.node_address, None
                if spec.placement is not None:
                    reply.rejected = True  # re-find the bundle's node: the group may be gone
                else:
                    continue
            if reply.failed:
                from distcore.exceptions import RuntimeEnvSetupError

                self._fail_queue(state, RuntimeEnvSetupError(f"task {spec.name} could not start a worker: {reply.reason}"))
                return None
            if reply.rejected:
                await asyncio.sleep(0.2)
                if spec.placement is not None:
                    found = await self._bundle_node(spec)
                    if found is None:
                        self._fail_queue(state, TaskUnschedulableError(
                            f"task {spec.name} cannot run: its placement group {spec.placement[0][:8]} was removed"
                        ))
                        return None
                    target = found
                continue
        return None

    async def _bundle_node(self, spec: p.TaskSpec) -> str | None:
        assert spec.placement is not None
        pg_id, index = spec.placement
        info: p.PlacementGroupInfo | None = await self.core.gcs().call(
            "Gcs", "GetPlacementGroup", p.GetPlacementGroup(pg_id=pg_id, wait_ready=True)
        )
        if info is None or info.state != "CREATED":
            return None
        if index >= 0:
            node_id = info.bundle_nodes.get(index)
        elif self.core.node_id in info.bundle_nodes.values():
            node_id = self.core.node_id
        else:
            node_id = next(iter(info.bundle_nodes.values()), None)
        return await self.core.node_address_of(node_id) if node_id else None

    def _fail_queue(self, state: _KeyState, error: Exception) -> None:
        while state.queue:
            self._finish_with_error(state.queue.popleft(), error)

    async def _return(self, leased: _Leased, exiting: bool = False) -> None:
        try:
            await self.core.clients.get(leased.node_address).call(
                "NodeManager", "ReturnWorker", p.ReturnWorker(leased.lease_id, worker_exiting=exiting)
            )
        except RpcError:
            pass

    # ------------------------------------------------------------ running

    async def _run(self, key: Any, state: _KeyState, leased: _Leased, task: _Task) -> None:
        spec = task.spec
        worker_died = False
        try:
            reply: p.TaskReply = await self.core.clients.get(leased.worker.target).call(
                "CoreWorker", "PushTask", p.PushTask(spec, leased.assigned, leased.gpu_ids)
            )
        except RpcUnavailable:
            reply = None
            worker_died = True
        except RpcError as exc:
            reply = p.TaskReply([], system_error=str(exc))
        await self._ran(key, state, leased, task, reply, worker_died)

    def _ran_ok(self, key: Any, state: _KeyState, leased: _Leased, task: _Task, reply: p.TaskReply) -> None:
        """``_ran`` for a reply from a worker that stays (no await: straight from the reply frame)."""
        task.running_on = None
        leased.idle_since = time.monotonic()
        leased.busy = False
        self._on_reply(key, state, task, reply)
        self._pump(key, state)

    async def _ran(self, key: Any, state: _KeyState, leased: _Leased, task: _Task, reply: p.TaskReply | None,
                   worker_died: bool) -> None:
        task.running_on = None
        leased.idle_since = time.monotonic()
        cause: WorkerDeathInfo | None = None
        if worker_died or (reply is not None and reply.worker_exiting):
            with self._lock:  # gone before it looks idle to a caller thread
                if leased in state.leased:  # close() may have returned it meanwhile
                    state.leased.remove(leased)
                leased.busy = False
            self.core.clients.drop(leased.worker.target)
            if worker_died:  # ask why first: returning the lease below ends the worker "on request"
                cause = await fetch_death_info(self.core.clients, leased.node_address, leased.worker.worker_id)
            asyncio.ensure_future(self._return(leased, exiting=True))
        else:
            leased.busy = False
        if worker_died:
            self._on_worker_died(key, state, task, cause)
        else:
            assert reply is not None
            self._on_reply(key, state, task, reply)
        self._pump(key, state)

    def _on_worker_died(self, key: Any, state: _KeyState, task: _Task, cause: WorkerDeathInfo | None = None) -> None:
        spec = task.spec
        if task.cancelled:
            self._finish_with_error(task, TaskCancelledError(spec.task_id))
            return
        if spec.max_retries == -1 or spec.attempt < spec.max_retries:
            spec.attempt += 1
            logger.info("task %s: worker died (%s), retrying (attempt %d)", spec.name,
                        cause.reason if cause else "crashed or killed", spec.attempt)
            state.queue.appendleft(task)
            return
        # OutOfMemoryError when the memory monitor killed it, else WorkerCrashedError (``worker_death.py``).
        self._finish_with_error(task, owner_error(spec.name, cause, spec.max_retries))

    def _on_reply(self, key: Any, state: _KeyState, task: _Task, reply: p.TaskReply) -> None:
        spec = task.spec
        if reply.system_error:
            self._finish_with_error(task, _system_error(spec, reply.system_error))
            return
        if (reply.retryable_error_type or (reply.is_application_error and lost_argument(spec, reply))) \
                and not task.cancelled and (spec.max_retries == -1 or spec.attempt < spec.max_retries):
            spec.attempt += 1
            state.queue.appendleft(task)
            return
        for ret in reply.returns:
            self.core.store_return(ret)
        self.core.task_events.record_done_by_owner(spec, reply)
        self.finish_generator(spec.task_id)
        self._done(task)

    def _finish_with_error(self, task: _Task, error: BaseException) -> None:
        error = self.core.lineage.wrap_error(task.spec, error)  # a failed re-run: ObjectReconstructionFailedError
        self.core.task_events.record_failed(task.spec, error)
        self.core.store_error(list(task.spec.return_ids), error)
        self.finish_generator(task.spec.task_id, error)
        self._done(task)

    def _done(self, task: _Task) -> None:
        self.tasks.pop(task.spec.task_id, None)
        self.core.lineage.on_task_done(task.spec)  # its kept spec drops the argument values it resolved
        self.core.refs.remove_submitted(task.deps)

    # ------------------------------------------------------------ generators

    def start_generator(self, task_id: str) -> None:
        self.generators[task_id] = _Generator()

    def finish_generator(self, task_id: str, error: BaseException | None = None) -> None:
        """The generator task ended; an error becomes its last item."""
        gen = self.generators.get(task_id)
        if gen is None or gen.total is not None:
            return
        if error is not None:
            index = len(gen.items) + 1
            oid = ids.object_id_for_return(task_id, index)
            self.core.refs.add_owned(oid)
            self.core.store_error([oid], error)
            gen.items[index] = oid
        gen.total = len(gen.items)
        gen.changed.set()
        gen.changed = asyncio.Event()

    def on_generator_item(self, item: p.GeneratorItem) -> None:
        gen = self.generators.get(item.task_id)
        if gen is None:
            return
        if item.obj is not None:
            obj, index = item.obj, item.index
            if obj.is_error and index in gen.items:
                # The worker was interrupted (cancelled) while reporting item
                # ``index``, which got here anyway: the error goes after it
                # instead of replacing a value the caller may have read.
                index = max(gen.items) + 1
                obj = dataclasses.replace(obj, object_id=ids.object_id_for_return(item.task_id, index))
            self.core.refs.add_owned(obj.object_id)
            self.core.store_return(obj)
            gen.items[index] = obj.object_id
        gen.changed.set()
        gen.changed = asyncio.Event()

    async def next_generator_item(self, task_id: str, index: int, timeout: float | None) -> str | None:
        """The id of item ``index`` (1-based), or None once the stream ended."""
        gen = self.generators.get(task_id)
        if gen is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while index not in gen.items:
            if gen.total is not None:
                return None  # the stream ended before this item
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no item {index} of the generator within {timeout} s")
            event = gen.changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
        return gen.items[index]

    def release_generator(self, task_id: str) -> None:
        self.generators.pop(task_id, None)

    # ------------------------------------------------------------ cancel

    async def cancel(self, task_id: str, force: bool, recursive: bool) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return await self.core.actors.cancel(task_id, force, recursive)
        task.cancelled = True
        for state in self.keys.values():
            if task in state.queue:
                state.queue.remove(task)
                self._finish_with_error(task, TaskCancelledError(task_id))
                return True
        leased = task.running_on
        if leased is None:
            # Still waiting for its arguments: fail it now; submit() drops it once they resolve.
            self._finish_with_error(task, TaskCancelledError(task_id))
            return True
        # The worker cancels the task's children first (recursive), then
        # interrupts the task, or exits at once (force).
        try:
            await self.core.clients.get(leased.worker.target).call(
                "CoreWorker", "CancelTask", p.CancelTask(task_id, force, recursive)
            )
        except RpcError:
            pass
        return True

    async def close(self) -> None:
        self._closing = True
        for state in self.keys.values():
            if state.linger is not None:
                state.linger.cancel()
                state.linger = None
            for leased in list(state.leased):
                await self._return(leased)
            state.leased.clear()


class _DirectRun:
    """The pending entry of a task pushed by a caller thread (``TaskSubmitter._send_direct``): the
    framed client hands it the reply on the io loop, where it finishes the task as ``_run`` would."""

    __slots__ = ("_sub", "_key", "_state", "_leased", "_task")

    def __init__(self, sub: TaskSubmitter, key: Any, state: _KeyState, leased: _Leased, task: _Task) -> None:
        self._sub = sub
        self._key = key
        self._state = state
        self._leased = leased
        self._task = task

    def done(self) -> bool:
        return False

    def set_result(self, result: tuple) -> None:
        sub = self._sub
        sub.core.drain_deferred()  # this task's own bookkeeping first (lineage.record)
        status, reply = result
        if status == 0 and not reply.worker_exiting:
            sub._ran_ok(self._key, self._state, self._leased, self._task, reply)
            return
        if status != 0:
            reply = p.TaskReply([], system_error=str(reply))
        asyncio.ensure_future(sub._ran(self._key, self._state, self._leased, self._task, reply, False))

    def set_exception(self, exc: BaseException) -> None:
        sub = self._sub
        sub.core.drain_deferred()
        died = isinstance(exc, RpcUnavailable)
        reply = None if died else p.TaskReply([], system_error=str(exc))
        asyncio.ensure_future(sub._ran(self._key, self._state, self._leased, self._task, reply, died))


def _scheduling_key(spec: p.TaskSpec) -> Any:
    return (
        tuple(sorted(spec.resources.items())),
        spec.runtime_env_key,
        repr(spec.strategy),
        spec.placement,
    )


def _system_error(spec: p.TaskSpec, message: str) -> BaseException:
    from distcore.exceptions import DistcoreError

    return DistcoreError(f"task {spec.name} could not run: {message}")


def _warn_user(message: str) -> None:
    import sys

    print(f"distcore warning: {message}", file=sys.stderr, flush=True)


def decode_value(value: p.SerializedValue) -> Any:
    out = deserialize(value.data)
    if isinstance(out, ErrorValue):
        raise out.error
    return out


def lost_argument(spec: p.TaskSpec, reply: p.TaskReply) -> bool:
    """True when the task failed only because its worker could not fetch one of its arguments.

    That is a system failure, not the user's: the worker's own node went away
    while it pulled the argument (it lives on until it notices), or the copy
    was lost again while it was being recovered. The task is retried like a
    crashed one; its new worker asks the owner for the argument again, which
    reconstructs it when needed. A permanent loss (the owner died, the
    reconstruction failed) is not retried.
    """
    arg_ids = {a.object_id for a in [*spec.args, *spec.kwargs.values()] if a.object_id is not None}
    if not arg_ids:
        return False
    for ret in reply.returns:
        if not ret.is_error or ret.value is None:
            continue
        try:
            value = deserialize(ret.value.data)
        except Exception:  # noqa: BLE001 - not ours to judge: leave it an application error
            return False
        error = value.error if isinstance(value, ErrorValue) else None
        cause = getattr(error, "cause", error)
        return (isinstance(cause, ObjectLostError) and not isinstance(cause, (OwnerDiedError, ObjectReconstructionFailedError))
                and cause.object_id in arg_ids)
    return False
