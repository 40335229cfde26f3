"""Running tasks in a worker: functions, actors, generators, errors.

``push`` is called on the io loop for every ``PushTask``; normal tasks and
plain actor methods run one at a time on the main thread; threaded actors
(``max_concurrency > 1``) run on a thread pool; async actors run their
coroutines on a dedicated event loop. Actor calls from one caller start in
``seq_no`` order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import inspect
import logging
import os
import queue
import signal
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import cloudpickle

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.core_worker.error_hints import hint_for
from distcore._private.core_worker.framed_rpc import ALREADY_SENT, DirectReply, current_direct_reply
from distcore._private.core_worker.objects import INLINE_MAX_BYTES, write_to_store
from distcore._private.rpc import NotThisWorker, RpcError, RpcUnavailable
from distcore._private.serialization import ErrorValue, deserialize, serialize
from distcore.exceptions import AsyncioActorExit, TaskCancelledError, TaskError

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

# While tasks run, the io loop looks this often for replies sent directly by executor threads.
SWEEP_S = 0.05
# Sweeps that find nothing back off (doubling) to this: one long task (a training loop with a poll
# in flight) wakes the io loop, and takes the GIL from the task's thread, about once a second, not 20 times.
SWEEP_MAX_S = 0.8
# How long later actor calls wait for a missing earlier one from the same caller.
SEQ_GAP_TIMEOUT_S = 10.0
# An actor created inside a task checks its owner this often; it ends after
# OWNER_MISSES checks in a row found the owner's process gone.
OWNER_CHECK_INTERVAL_S = 1.0
OWNER_MISSES = 2


class _ExitActor(BaseException):
    """Raised by exit_actor() inside a synchronous actor method."""


class Executor:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.main_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.functions: dict[str, Any] = {}
        self.actor: Any = None
        self.actor_spec: p.TaskSpec | None = None
        self.actor_name = ""
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.async_loop: asyncio.AbstractEventLoop | None = None
        self.async_sem: asyncio.Semaphore | None = None
        self._expected: dict[tuple[str, int], int] = {}
        self._parked: dict[tuple[str, int], dict[int, tuple]] = {}
        self.running: dict[str, int] = {}  # task id -> thread id
        self.current_name = ""
        self.current_placement: tuple[str, int] | None = None
        self.current_capture = False  # child tasks default to current_placement's group
        self.exiting = False
        # Set once a reply says this worker exits: later actor calls fail at once.
        self._closing = False
        self.main_thread_id = threading.get_ident()
        # Cancelling a task on the main thread: a signal interrupts blocking
        # calls (sleep, get) and its handler raises KeyboardInterrupt there.
        self._cancellable: str | None = None  # main-thread task that may be interrupted now
        self._cancel_requested: str | None = None
        self._cancelled: dict[str, None] = {}  # task ids cancelled here (bounded)
        self._async_tasks: dict[str, asyncio.Future] = {}  # running coroutines of an async actor
        self._calls: dict[str, int] = {}  # function id -> tasks run, for max_calls
        # Pushes whose reply may be written by the thread that ran the task (framed_rpc.DirectReply):
        # future -> (its sender, the borrow epoch at push time).
        self._direct: dict[asyncio.Future, tuple[DirectReply, int]] = {}
        self._inflight = 0
        self._sweeping = False
        self._sweep_s = SWEEP_S

    # ------------------------------------------------------------ io-loop side

    async def push(self, req: p.PushTask) -> p.TaskReply:
        spec = req.spec
        if spec.kind == p.ACTOR_TASK and spec.actor_id != self.core.current_actor_id:
            raise NotThisWorker(
                f"worker {self.core.worker_id[:8]} is not actor "
                f"{(spec.actor_id or '')[:8]}: that actor's process is gone"
            )
        if self._closing and spec.kind == p.ACTOR_TASK:
            return p.TaskReply(self._error_returns(spec, _actor_exited()), worker_exiting=True)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        direct = current_direct_reply.get() if spec.kind != p.ACTOR_CREATION_TASK else None
        if direct is not None:
            self._direct[fut] = (direct, self.core.borrow_epoch)
            self._inflight += 1
            if not self._sweeping:
                self._sweeping = True
                loop.call_later(SWEEP_S, self._sweep)
        if spec.kind == p.ACTOR_TASK:
            self._order_actor_call(req, fut)
        else:
            self.main_queue.put((req, fut))
        try:
            reply = await fut
        finally:
            if direct is not None:
                self._inflight -= 1
                self._direct.pop(fut, None)
        if reply is ALREADY_SENT:
            return reply
        # Borrowers registered during the task must reach owners first.
        await self.core.flush_ref_updates()
        return reply

    def push_now(self, req: p.PushTask, direct: DirectReply) -> bool:
        """``push`` for a request of the framed transport, on the io loop, without an asyncio Task:
        the reply goes out through ``direct`` (from the executing thread, or from ``_pushed``).
        False: take the ``push`` path (actor creation, an exiting actor)."""
        spec = req.spec
        if spec.kind == p.ACTOR_CREATION_TASK or (spec.kind == p.ACTOR_TASK and (
                self._closing or spec.actor_id != self.core.current_actor_id)):
            return False
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._direct[fut] = (direct, self.core.borrow_epoch)
        self._inflight += 1
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(SWEEP_S, self._sweep)
        fut.add_done_callback(functools.partial(self._pushed, direct))
        if spec.kind == p.ACTOR_TASK:
            self._order_actor_call(req, fut)
        else:
            self.main_queue.put((req, fut))
        return True

    def _pushed(self, direct: DirectReply, fut: asyncio.Future) -> None:
        self._inflight -= 1
        self._direct.pop(fut, None)
        if fut.cancelled():
            return
        reply = fut.result()
        if reply is ALREADY_SENT:
            return
        core = self.core
        if core._to_register or core._to_free or core._flush_scheduled or core._flush_lock.locked():
            asyncio.ensure_future(self._flush_then_answer(direct, reply))  # borrowers reach owners first
        else:
            direct.answer(reply)

    async def _flush_then_answer(self, direct: DirectReply, reply: p.TaskReply) -> None:
        try:
            await self.core.flush_ref_updates()
        except Exception as exc:  # noqa: BLE001 - the caller learns why instead of waiting
            direct.answer(None, exc)
            return
        direct.answer(reply)

    def _sweep(self) -> None:
        """Resolve the futures of directly sent replies while tasks run (``CoreWorker.defer``)."""
        core = self.core
        found = bool(core._deferred)
        core.drain_deferred()
        if self._inflight > 0:
            self._sweep_s = SWEEP_S if found else min(self._sweep_s * 2, SWEEP_MAX_S)
            asyncio.get_running_loop().call_later(self._sweep_s, self._sweep)
        else:
            self._sweeping = False
            self._sweep_s = SWEEP_S

    def _order_actor_call(self, req: p.PushTask, fut: asyncio.Future) -> None:
        spec = req.spec
        key = (spec.caller_id or "", spec.incarnation)
        parked = self._parked.setdefault(key, {})
        parked[spec.seq_no] = (req, fut)
        expected = self._expected.get(key, 0)
        while expected in parked:
            item = parked.pop(expected)
            expected += 1
            self._dispatch_actor_call(*item)
        self._expected[key] = expected
        if parked:
            # A call the caller gave up on may never arrive: do not park the
            # later ones forever behind it.
            asyncio.get_running_loop().call_later(SEQ_GAP_TIMEOUT_S, self._skip_gap, key, expected)

    def _skip_gap(self, key: tuple[str, int], stuck_at: int) -> None:
        parked = self._parked.get(key)
        if not parked or self._expected.get(key, 0) != stuck_at:
            return
        logger.warning("actor calls from %s: seq %d never arrived; running the later calls", key[0][:8], stuck_at)
        expected = min(parked)
        while expected in parked:
            item = parked.pop(expected)
            expected += 1
            self._dispatch_actor_call(*item)
        self._expected[key] = expected
        if parked:  # another gap further on: no new call may come to trigger its check
            asyncio.get_running_loop().call_later(SEQ_GAP_TIMEOUT_S, self._skip_gap, key, expected)

    def _dispatch_actor_call(self, req: p.PushTask, fut: asyncio.Future) -> None:
        if self.async_loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(req, fut), self.async_loop)
        elif self.pool is not None:
            self.pool.submit(self._execute_and_reply, req, fut)
        else:
            self.main_queue.put((req, fut))

    def _reply(self, fut: asyncio.Future, reply: p.TaskReply) -> None:
        entry = self._direct.pop(fut, None) if self._direct else None
        if entry is not None and self._send_direct(entry, reply):
            # Sent from this thread; the loop learns of it when it next wakes up anyway.
            self.core.defer(_set_result, fut, ALREADY_SENT)
            return
        self.core.call_soon(_set_result, fut, reply)  # batched wake-ups (core_worker.call_soon)

    def _send_direct(self, entry: tuple[DirectReply, int], reply: p.TaskReply) -> bool:
        """Write ``reply`` to the caller from this thread when nothing must reach an owner before it:
        no borrowed ref registered since the push, no ref inside a return, the worker stays."""
        direct, epoch = entry
        core = self.core
        if reply.worker_exiting or self._closing or epoch != core.borrow_epoch or core._to_register:
            return False
        for ret in reply.returns:
            if ret.contained or (ret.value is not None and ret.value.contained):
                return False
        try:
            direct.send(reply)
        except Exception:  # noqa: BLE001 - e.g. an unpicklable reply: the io loop path reports it
            return False
        return True

    # ------------------------------------------------------------ main thread

    def run_forever(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(_CANCEL_SIGNAL, self._on_cancel_signal)
        while not self.exiting:
            req, fut = self.main_queue.get()
            if req is None:
                break
            self._execute_and_reply(req, fut)

    def _execute_and_reply(self, req: p.PushTask, fut: asyncio.Future) -> None:
        if self._closing and req.spec.kind == p.ACTOR_TASK:
            self._reply(fut, p.TaskReply(self._error_returns(req.spec, _actor_exited()), worker_exiting=True))
            return
        start = time.time()
        self.core.task_events.record_started(req.spec, start)
        try:
            reply = self.execute(req)
        except (TaskCancelledError, KeyboardInterrupt):
            # The cancel signal landed in execute's own cleanup: still a cancellation.
            self._cancellable = None
            self.running.pop(req.spec.task_id, None)
            self.core.current_task_id = None
            reply = p.TaskReply(self._error_returns(req.spec, TaskCancelledError(req.spec.task_id)))
        spec = req.spec
        if spec.kind == p.NORMAL_TASK and spec.max_calls:
            calls = self._calls[spec.function_id] = self._calls.get(spec.function_id, 0) + 1
            if calls >= spec.max_calls:
                reply.worker_exiting = True  # max_calls reached: this worker retires
        self._record(req.spec, start, reply)
        if reply.worker_exiting:
            self._closing = True
        self._reply(fut, reply)
        if reply.worker_exiting:
            self.core.call_soon(lambda: asyncio.ensure_future(self._exit_soon()))

    async def _exit_soon(self) -> None:
        await asyncio.sleep(0.05)
        os._exit(0)

    def execute(self, req: p.PushTask) -> p.TaskReply:
        spec = req.spec
        core = self.core
        self.running[spec.task_id] = threading.get_ident()
        prev_task = core.current_task_id
        core.current_task_id = spec.task_id
        core.job_id = spec.job_id or core.job_id
        core.namespace = spec.namespace or core.namespace
        self._set_resources(req)
        self.current_name = spec.name if spec.kind != p.ACTOR_TASK else self.actor_name
        if spec.kind != p.ACTOR_TASK:
            self.current_placement = spec.placement
            self.current_capture = spec.capture_child_tasks
        try:
            if spec.kind == p.ACTOR_CREATION_TASK:
                return self._create_actor(spec)
            fn = self._callable(spec)
            if spec.kind == p.NORMAL_TASK and self.running[spec.task_id] == self.main_thread_id:
                self._cancellable = spec.task_id  # actor methods are not interrupted this way
            if spec.task_id in self._cancelled:
                raise TaskCancelledError(spec.task_id)
            args, kwargs = self._load_args(spec)
            result = fn(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            return self._returns(spec, result)
        except _ExitActor:
            return p.TaskReply(self._error_returns(spec, _actor_exited()), worker_exiting=True)
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
            return self._failure(spec, exc)
        finally:
            if self._cancellable == spec.task_id:
                self._cancellable = None
            self._cancelled.pop(spec.task_id, None)
            self.running.pop(spec.task_id, None)
            core.current_task_id = prev_task

    def _set_resources(self, req: p.PushTask) -> None:
        if req.spec.kind == p.ACTOR_TASK:
            return  # an actor keeps what its creation task was assigned
        # Set on every task, so a reused worker never shows the last task's
        # resources; no GPUs means CUDA_VISIBLE_DEVICES="" (as in Ray).
        self.core.assigned_resources = dict(req.assigned)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in req.gpu_ids)
        self.core.gpu_ids = list(req.gpu_ids)

    def _callable(self, spec: p.TaskSpec) -> Any:
        if spec.kind == p.ACTOR_TASK:
            if self.actor is None:
                raise RuntimeError("this worker hosts no actor")
            if spec.method_name == "__distcore_terminate__":
                raise _ExitActor()
            return getattr(self.actor, spec.method_name or "")
        return self._load_function(spec.function_id)

    def _load_function(self, function_id: str) -> Any:
        fn = self.functions.get(function_id)
        if fn is None:
            blob = self.core.gcs_call("KvGet", p.KvKey("fn", function_id))  # from this thread: no io-loop hop
            if blob is None:
                raise RuntimeError(f"function {function_id} was not exported to the cluster")
            fn = self.functions[function_id] = cloudpickle.loads(blob)
        return fn

    def _load_args(self, spec: p.TaskSpec) -> tuple[list, dict]:
        refs_to_get: list[tuple[str, int | str, p.TaskArg]] = []
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for i, arg in enumerate(spec.args):
            args.append(self._arg_value(arg, refs_to_get, i))
        for k, arg in spec.kwargs.items():
            kwargs[k] = self._arg_value(arg, refs_to_get, k)
        if refs_to_get:
            refs = [self.core.make_ref(a.object_id, a.owner) for _, _, a in refs_to_get]
            values = self.core.get(refs)
            for (_, where, _), value in zip(refs_to_get, values, strict=False):
                if isinstance(where, int):
                    args[where] = value
                else:
                    kwargs[where] = value
        return args, kwargs

    def _arg_value(self, arg: p.TaskArg, refs_to_get: list, where: int | str) -> Any:
        if arg.value is not None:
            value = deserialize(arg.value.data)
            if isinstance(value, ErrorValue):
                raise _ArgError(value.error)
            return value
        refs_to_get.append((None, where, arg))
        return None

    # ------------------------------------------------------------ actors

    def _create_actor(self, spec: p.TaskSpec) -> p.TaskReply:
        cls = self._load_function(spec.function_id)
        args, kwargs = self._load_args(spec)
        self.actor_spec = spec
        self.actor_name = spec.name
        self.current_name = spec.name
        self.core.current_actor_id = spec.actor_id
        if spec.is_asyncio:
            self._start_async_loop(spec.max_concurrency)
            instance = asyncio.run_coroutine_threadsafe(_construct_async(cls, args, kwargs), self.async_loop).result()
        else:
            instance = cls(*args, **kwargs)
            if spec.max_concurrency > 1:
                self.pool = concurrent.futures.ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="actor")
        self.actor = instance
        if spec.parent_task_id is not None and spec.owner is not None:
            # Created inside a task or actor: the actor dies with that worker, as in Ray.
            self.core.call_soon(lambda: asyncio.ensure_future(self._watch_owner(spec)))
        return p.TaskReply([p.ReturnObject(spec.return_ids[0], p.SerializedValue(serialize(None).to_bytes()))])

    async def _watch_owner(self, spec: p.TaskSpec) -> None:
        """End this (non-detached) actor once the worker that created it is gone."""
        core, owner = self.core, spec.owner
        try:
            info: p.ActorInfo | None = await core.gcs().call("Gcs", "GetActorInfo", p.GetActor(spec.actor_id or ""))
        except RpcError:
            return
        if info is None or info.detached:
            return
        misses = 0
        while misses < OWNER_MISSES:
            await asyncio.sleep(OWNER_CHECK_INTERVAL_S)
            try:
                await core.clients.get(owner.target).call("Health", "Check", None, timeout=10)
                misses = 0
            except RpcUnavailable:
                misses += 1
            except Exception:  # noqa: BLE001 - slow or busy: not a death
                misses = 0
        core.clients.drop(owner.target)
        reason = f"the worker that created the actor ({owner.target}) died; a non-detached actor dies with its owner"
        logger.warning("actor %s: %s", (spec.actor_id or "")[:8], reason)
        try:
            await core.gcs().call("Gcs", "KillActor", p.KillActor(spec.actor_id or "", force=True, no_restart=True,
                                                                 reason=reason))
        except RpcError:
            os._exit(1)

    def _start_async_loop(self, max_concurrency: int) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self.async_sem = asyncio.Semaphore(max_concurrency)
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="actor-asyncio", daemon=True).start()
        ready.wait()
        self.async_loop = loop

    async def _run_async(self, req: p.PushTask, fut: asyncio.Future) -> None:
        spec = req.spec
        assert self.async_sem is not None
        if self._closing:
            self._reply(fut, p.TaskReply(self._error_returns(spec, _actor_exited()), worker_exiting=True))
            return
        async with self.async_sem:
            start = time.time()
            self.core.task_events.record_started(spec, start)
            self.core.current_task_id = spec.task_id
            try:
                if spec.method_name == "__distcore_terminate__":
                    raise _ExitActor()
                if spec.task_id in self._cancelled:
                    raise TaskCancelledError(spec.task_id)
                method = getattr(self.actor, spec.method_name or "")
                args, kwargs = await asyncio.to_thread(self._load_args, spec)
                result = method(*args, **kwargs)
                if inspect.isawaitable(result):
                    self.running[spec.task_id] = -1
                    inner = self._async_tasks[spec.task_id] = asyncio.ensure_future(result)
                    if spec.task_id in self._cancelled:
                        inner.cancel()
                    result = await inner
                if inspect.isasyncgen(result) and spec.num_returns == "streaming":
                    # Iterate on the actor's own loop, beside its other coroutines.
                    self.running[spec.task_id] = -1
                    reply = await self._stream_async(spec, result)
                else:
                    reply = await asyncio.to_thread(self._returns, spec, result)
            except (_ExitActor, AsyncioActorExit):
                reply = p.TaskReply(self._error_returns(spec, _actor_exited()), worker_exiting=True)
            except BaseException as exc:  # noqa: BLE001
                reply = self._failure(spec, exc)
            finally:
                self.running.pop(spec.task_id, None)
                self._async_tasks.pop(spec.task_id, None)
                self._cancelled.pop(spec.task_id, None)
        self._record(spec, start, reply)
        if reply.worker_exiting:
            self._closing = True
        self._reply(fut, reply)
        if reply.worker_exiting:
            self.core.call_soon(lambda: asyncio.ensure_future(self._exit_soon()))

    def _record(self, spec: p.TaskSpec, start: float, reply: p.TaskReply) -> None:
        self.core.task_events.record_reply(spec, start, reply)

    # ------------------------------------------------------------ results

    def _returns(self, spec: p.TaskSpec, result: Any) -> p.TaskReply:
        n = spec.num_returns
        if n == "streaming":
            return self._stream(spec, result)
        if n == "dynamic":
            return self._dynamic(spec, result)
        if n == 0:
            return p.TaskReply([])
        if n == 1:
            values = [result]
        else:
            if not isinstance(result, (tuple, list)) or len(result) != n:
                raise ValueError(
                    f"task {spec.name} declared num_returns={n} but returned "
                    f"{type(result).__name__}{' of length ' + str(len(result)) if isinstance(result, (tuple, list)) else ''}"
                )
            values = list(result)
        return p.TaskReply([self._return_object(spec, oid, v) for oid, v in zip(spec.return_ids, values, strict=False)])

    def _return_object(self, spec: p.TaskSpec, object_id: str, value: Any) -> p.ReturnObject:
        serialized = serialize(value, lambda: f"the return value of {spec.name} ({type(value).__name__})")
        contained = [(r.hex(), r.owner_address()) for r in serialized.contained_refs]
        if contained:
            self._lend_to_owner(spec, serialized.contained_refs)
        if serialized.total_size <= INLINE_MAX_BYTES:
            return p.ReturnObject(object_id, p.SerializedValue(serialized.to_bytes(), contained), size=serialized.total_size)
        self.core.run(write_to_store(self.core.node(), object_id, serialized, spec.owner))
        return p.ReturnObject(object_id, None, plasma_node=self.core.node_id, size=serialized.total_size, contained=contained)

    def _lend_to_owner(self, spec: p.TaskSpec, refs: list) -> None:
        """Refs inside a return value: register the caller as their borrower."""
        core = self.core
        by_owner: dict[str, tuple[p.Address, list[str]]] = {}
        for ref in refs:
            owner = ref.owner_address()
            if owner.worker_id == spec.owner.worker_id:
                continue
            if owner.worker_id == core.worker_id:
                core.refs.add_borrower(ref.hex(), spec.owner)
            else:
                by_owner.setdefault(owner.target, (owner, []))[1].append(ref.hex())
        for target, (_, object_ids) in by_owner.items():
            core.run(core.clients.get(target).call(
                "CoreWorker", "UpdateBorrowers", p.UpdateBorrowers(spec.owner, add=object_ids)
            ))

    def _dynamic(self, spec: p.TaskSpec, result: Any) -> p.TaskReply:
        from distcore._private.api.object_ref import ObjectRefGenerator

        returns, refs = [], []
        for i, value in enumerate(result, start=2):
            oid = ids.object_id_for_return(spec.task_id, i)
            returns.append(self._return_object(spec, oid, value))
            refs.append(self.core.make_ref(oid, spec.owner))
        head = self._return_object(spec, spec.return_ids[0], ObjectRefGenerator.static(refs))
        return p.TaskReply([head] + returns)

    def _stream(self, spec: p.TaskSpec, result: Any) -> p.TaskReply:
        owner = self.core.clients.get(spec.owner.target)
        index = 0  # items the owner has acknowledged
        try:
            if inspect.isasyncgen(result):
                result = _sync_iter(result)
            for value in result:
                oid = ids.object_id_for_return(spec.task_id, index + 1)
                obj = self._return_object(spec, oid, value)
                self.core.run(owner.call("CoreWorker", "ReportGeneratorItem", p.GeneratorItem(spec.task_id, index + 1, obj)))
                index += 1
        except BaseException as exc:  # noqa: BLE001 - the error becomes the next item, leaving no gap
            index += 1
            oid = ids.object_id_for_return(spec.task_id, index)
            err = self._error_value(spec, exc)
            obj = p.ReturnObject(oid, err, is_error=True)
            self.core.run(owner.call("CoreWorker", "ReportGeneratorItem", p.GeneratorItem(spec.task_id, index, obj)))
        return p.TaskReply([])

    async def _stream_async(self, spec: p.TaskSpec, agen: Any) -> p.TaskReply:
        """``_stream`` for an async generator of an async actor, run on the actor's loop."""
        index = 0
        try:
            async for value in agen:
                index += 1
                await asyncio.to_thread(self._report_item, spec, index, value)
        except BaseException as exc:  # noqa: BLE001 - the error becomes the next item
            index += 1
            await asyncio.to_thread(self._report_item, spec, index, None, exc)
        return p.TaskReply([])

    def _report_item(self, spec: p.TaskSpec, index: int, value: Any, error: BaseException | None = None) -> None:
        oid = ids.object_id_for_return(spec.task_id, index)
        if error is None:
            obj = self._return_object(spec, oid, value)
        else:
            obj = p.ReturnObject(oid, self._error_value(spec, error), is_error=True)
        owner = self.core.clients.get(spec.owner.target)
        self.core.run(owner.call("CoreWorker", "ReportGeneratorItem", p.GeneratorItem(spec.task_id, index, obj)))

    def _error_value(self, spec: p.TaskSpec, exc: BaseException) -> p.SerializedValue:
        if isinstance(exc, _ArgError):
            error = exc.error
        elif getattr(exc, "_distcore_system", False):
            error = exc  # the runtime's own verdict (the actor exited), not the user's error
        elif isinstance(exc, TaskCancelledError) or (
            isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)) and spec.task_id in self._cancelled
        ):
            error = TaskCancelledError(spec.task_id)
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
            tb += hint_for(exc)  # e.g. a module only the driver has: how to ship it (``error_hints.py``)
            cause: BaseException | None = exc
            try:
                cloudpickle.dumps(exc)
            except Exception:  # noqa: BLE001 - keep the text, drop the object
                cause = RuntimeError(f"{type(exc).__name__}: {exc} (the exception itself could not be pickled)")
            actor = self.actor_name if spec.kind == p.ACTOR_TASK else None
            error = TaskError(spec.name, tb, cause, os.getpid(), self.core.ip, actor)
        return p.SerializedValue(serialize(ErrorValue(error)).to_bytes())

    def _error_returns(self, spec: p.TaskSpec, exc: BaseException) -> list[p.ReturnObject]:
        value = self._error_value(spec, exc)
        return [p.ReturnObject(oid, value, is_error=True) for oid in spec.return_ids]

    def _failure(self, spec: p.TaskSpec, exc: BaseException) -> p.TaskReply:
        reply = p.TaskReply(self._error_returns(spec, exc), is_application_error=True)
        if spec.task_id not in self._cancelled and _retryable(spec.retry_exceptions, exc):
            reply.retryable_error_type = type(exc).__name__
        if spec.kind == p.ACTOR_CREATION_TASK:
            reply.worker_exiting = False
        return reply

    # ------------------------------------------------------------ cancel / exit

    def cancel(self, req: p.CancelTask) -> None:
        """Cancel a task here (called on the io loop); ``recursive`` also cancels its children."""
        submitter = self.core.submitter
        children = [t.spec.task_id for t in submitter.tasks.values() if t.spec.parent_task_id == req.task_id]
        cancels = [submitter.cancel(c, req.force, True) for c in children] if req.recursive else []
        if req.force:
            asyncio.ensure_future(_exit_after(cancels))
            return
        for coro in cancels:
            asyncio.ensure_future(coro)
        # Recorded first, so a task that has not started yet fails when it
        # does (execute checks after marking itself cancellable: no gap).
        self._cancelled[req.task_id] = None
        while len(self._cancelled) > 1000:
            self._cancelled.pop(next(iter(self._cancelled)))
        if self.actor is not None:
            # As in Ray: a running actor method is not interrupted (the actor has
            # state); an async actor's coroutine is cancelled like an asyncio task.
            inner = self._async_tasks.get(req.task_id)
            if inner is not None and self.async_loop is not None:
                self.async_loop.call_soon_threadsafe(inner.cancel)
            return
        thread_id = self.running.get(req.task_id)
        if thread_id == self.main_thread_id:
            self._cancel_requested = req.task_id
            signal.pthread_kill(self.main_thread_id, _CANCEL_SIGNAL)
        elif thread_id is not None and thread_id != -1:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(TaskCancelledError))

    def _on_cancel_signal(self, signum: int, frame: Any) -> None:
        task_id = self._cancel_requested
        if task_id is not None and task_id == self._cancellable:
            self._cancel_requested = None
            # As in Ray: a KeyboardInterrupt, which `except Exception` in user code does not swallow.
            raise KeyboardInterrupt(f"task {task_id} was cancelled")

    def exit(self, req: p.ExitWorker) -> None:
        if req.force:
            os._exit(1)
        self.exiting = True
        self.main_queue.put((None, None))


class _ArgError(Exception):
    def __init__(self, error: BaseException) -> None:
        self.error = error


_CANCEL_SIGNAL = signal.SIGUSR1


async def _exit_after(cancels: list) -> None:
    """Force-cancel: cancel the task's children (bounded), then exit; the owner sees the task cancelled."""
    if cancels:
        await asyncio.wait([asyncio.ensure_future(c) for c in cancels], timeout=2.0)
    os._exit(1)


_PRIVATE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _set_result(fut: asyncio.Future, result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _user_frames(tb: Any) -> Any:
    """The traceback from the first frame outside distcore's internals (all of it if none is)."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PRIVATE_DIR):
        first = first.tb_next
    return first if first is not None else tb


def _retryable(retry_exceptions: Any, exc: BaseException) -> bool:
    if isinstance(exc, (_ArgError, TaskCancelledError)):
        return False
    if isinstance(retry_exceptions, bytes):
        # A list of exception classes, cloudpickled by the caller (plain pickle
        # cannot carry classes defined in a script or a function).
        retry_exceptions = cloudpickle.loads(retry_exceptions)
    if retry_exceptions is True:
        return isinstance(exc, Exception)
    if isinstance(retry_exceptions, (list, tuple)):
        return isinstance(exc, tuple(retry_exceptions))
    return False


def _actor_exited() -> BaseException:
    from distcore.exceptions import ActorDiedError

    error = ActorDiedError("The actor exited (exit_actor was called) before this call ran")
    error._distcore_system = True  # type: ignore[attr-defined]
    return error


async def _construct_async(cls: Any, args: list, kwargs: dict) -> Any:
    return cls(*args, **kwargs)


def _sync_iter(agen: Any):
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()
