"""Submitting actor method calls: in order, straight to the actor's worker.

Each caller numbers its calls per actor incarnation (``seq_no``); the actor
runs them in that order. Calls wait while the actor is being created or
restarted; when the actor's worker dies, in-flight calls are retried up to
``max_task_retries`` on the restarted actor, or fail with
``ActorDiedError`` / ``ActorUnavailableError``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.rpc import NotThisWorker, RpcError, RpcUnavailable
from distcore._private.serialization import ErrorValue, deserialize
from distcore.exceptions import ActorDiedError, ActorUnavailableError, TaskCancelledError, TaskError

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

TERMINATE_METHOD = "__distcore_terminate__"


@dataclass
class _Call:
    order: int
    spec: p.TaskSpec
    deps: list[str]
    retries_left: int
    resolved: asyncio.Future | None  # None: nothing to wait for (sent by the caller's thread)
    cancelled: bool = False


@dataclass
class _Actor:
    actor_id: str
    address: p.Address | None = None
    incarnation: int = -1
    seq: int = 0
    waiting: deque = field(default_factory=deque)
    in_flight: dict[str, _Call] = field(default_factory=dict)
    stale: int = 0  # in-flight calls pushed to an earlier incarnation
    resolving: bool = False
    dead: BaseException | None = None
    queued: int = 0  # calls posted to the io loop by submit_call, not yet in ``waiting``


class ActorSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.actors: dict[str, _Actor] = {}
        self._order = itertools.count()
        # anchor object id -> (actor id, class name): actors this process created,
        # ended when no handle (here or borrowed elsewhere) refers to them any more.
        self.anchors: dict[str, tuple[str, str]] = {}
        # Guards what caller threads (submit_call) and the io loop both change: an actor's sequence
        # numbers, incarnation, address and ``queued``.
        self._lock = threading.Lock()

    def _state(self, actor_id: str) -> _Actor:
        state = self.actors.get(actor_id)
        if state is None:
            with self._lock:
                state = self.actors.get(actor_id)
                if state is None:
                    state = self.actors[actor_id] = _Actor(actor_id)
        return state

    def submit_call(self, spec: p.TaskSpec, deps: list[str], max_task_retries: int) -> None:
        """Submit an actor call from the caller's thread (``ActorMethod.remote``).

        The common case (an actor already reached, nothing queued before the call, no ref
        arguments to wait for, the framed connection open) is sent from this thread: it takes its
        sequence number here and writes the request frame itself, and its reply is handled by the
        io loop as the frame arrives (``_DirectPush``): no wake-up of the loop to send, no asyncio
        Task per call. Everything else goes through the io loop (``submit``)."""
        assert spec.actor_id is not None
        state = self._state(spec.actor_id)
        if not deps and spec.num_returns != "streaming" and self._send_direct(state, spec, max_task_retries):
            return
        with self._lock:
            state.queued += 1  # later calls must not overtake this one through the direct path
        self.core.submit_soon(self.submit(spec, deps, max_task_retries, queued=True))

    def _send_direct(self, state: _Actor, spec: p.TaskSpec, max_task_retries: int) -> bool:
        core = self.core
        with self._lock:
            address = state.address
            if (address is None or state.stale or state.resolving or state.dead is not None or state.waiting
                    or state.queued or core._closed):
                return False
            framed = core.clients.framed(address.target)
            if framed is None:
                return False
            call = _Call(next(self._order), spec, [], max_task_retries, None)
            spec.seq_no = state.seq
            spec.incarnation = state.incarnation
            spec.caller_id = core.worker_id
            state.in_flight[spec.task_id] = call  # before the send: the reply may land at once
            core.defer(core.lineage.note_actor_task, spec)  # its returns are not reconstructed (for the error)
            if not framed.send_direct("PushTask", p.PushTask(spec), _DirectPush(self, state, call, address)):
                del state.in_flight[spec.task_id]
                return False
            state.seq += 1
        core.task_events.record_submitted(spec)
        return True

    async def submit(self, spec: p.TaskSpec, deps: list[str], max_task_retries: int, queued: bool = False) -> None:
        assert spec.actor_id is not None
        self.core.task_events.record_submitted(spec)
        self.core.lineage.note_actor_task(spec)  # its returns are not reconstructed (for the error)
        state = self._state(spec.actor_id)
        if spec.num_returns == "streaming":
            self.core.submitter.start_generator(spec.task_id)
        call = _Call(next(self._order), spec, deps, max_task_retries, asyncio.get_running_loop().create_future())
        with self._lock:
            if queued:
                state.queued -= 1
            if state.dead is None:
                state.waiting.append(call)
        if state.dead is not None:
            self._fail(call, state.dead)
            return
        try:
            await self.core.submitter._resolve_args(spec)
            call.resolved.set_result(None)
        except Exception as exc:  # noqa: BLE001
            if not call.cancelled:
                state.waiting.remove(call)
                self._fail(call, exc)
            return
        self._flush(state)

    def _flush(self, state: _Actor) -> None:
        if state.address is None:
            if not state.resolving and state.dead is None:
                state.resolving = True
                asyncio.ensure_future(self._resolve(state))
            return
        if state.stale:
            # Calls to the previous incarnation land first: those that must be
            # retried go back into the queue in order before anything is pushed.
            return
        with self._lock:
            while state.waiting and (state.waiting[0].resolved is None or state.waiting[0].resolved.done()):
                call = state.waiting.popleft()
                call.spec.seq_no = state.seq
                call.spec.incarnation = state.incarnation
                call.spec.caller_id = self.core.worker_id
                state.seq += 1
                state.in_flight[call.spec.task_id] = call
                asyncio.ensure_future(self._push(state, call, state.address))

    async def _resolve(self, state: _Actor) -> None:
        try:
            while True:
                try:
                    info: p.ActorInfo | None = await self.core.gcs().call(
                        "Gcs", "GetActorInfo",
                        p.GetActor(state.actor_id, wait_for_alive=True, timeout=30.0, after_incarnation=state.incarnation),
                    )
                except RpcError as exc:
                    logger.warning("looking up actor %s failed: %s", state.actor_id[:8], exc)
                    await asyncio.sleep(0.5)
                    continue
                if info is None:
                    self._bury(state, ActorDiedError(f"Actor {state.actor_id} does not exist", state.actor_id))
                    return
                if info.state == p.ACTOR_DEAD:
                    self._bury(state, dead_error(info))
                    return
                if info.state == p.ACTOR_ALIVE and info.incarnation > state.incarnation:
                    with self._lock:
                        state.address = info.address
                        state.incarnation = info.incarnation
                        state.seq = 0
                        state.stale = len(state.in_flight)
                    break
        finally:
            state.resolving = False
        self._flush(state)

    def _bury(self, state: _Actor, error: BaseException) -> None:
        with self._lock:
            state.dead = error
            state.address = None
        while state.waiting:
            self._fail(state.waiting.popleft(), error)

    def _land(self, state: _Actor, call: _Call) -> None:
        """A pushed call came back (replied or failed)."""
        if state.in_flight.pop(call.spec.task_id, None) is not None and call.spec.incarnation < state.incarnation:
            state.stale -= 1
            if not state.stale:
                self._flush(state)

    async def _push(self, state: _Actor, call: _Call, address: p.Address) -> None:
        try:
            reply: p.TaskReply = await self.core.clients.get(address.target).call(
                "CoreWorker", "PushTask", p.PushTask(call.spec)
            )
        except RpcUnavailable as exc:
            await self._on_actor_unreachable(state, call, address, exc)
            return
        except RpcError as exc:
            self._land(state, call)
            self._fail(call, ActorDiedError(f"calling {call.spec.name} failed: {exc}", state.actor_id))
            return
        self._replied(state, call, reply)

    def _replied(self, state: _Actor, call: _Call, reply: p.TaskReply) -> None:
        self._land(state, call)
        if reply.system_error:
            self._fail(call, ActorDiedError(reply.system_error, state.actor_id))
            return
        for ret in reply.returns:
            self.core.store_return(ret)
        self.core.task_events.record_done_by_owner(call.spec, reply)
        self.core.submitter.finish_generator(call.spec.task_id)
        self.core.refs.remove_submitted(call.deps)

    async def _on_actor_unreachable(self, state: _Actor, call: _Call, address: p.Address,
                                    exc: BaseException | None = None) -> None:
        if not isinstance(exc, NotThisWorker) and await self._process_answers(address):
            # One failed call on a live actor: keep the channel the other
            # in-flight calls share, and fail (or retry) only this one.
            if self._retry(state, call):
                return
            self._fail(call, ActorUnavailableError(
                f"The call {call.spec.name} to actor {state.actor_id[:8]} failed in transport while the "
                "actor is alive; set max_task_retries to retry such calls", state.actor_id,
            ))
            return
        self.core.clients.drop(address.target)
        if state.address is not None and state.address.target == address.target:
            state.address = None
        if self._retry(state, call):
            return
        # No retries: tell the caller why, once the control store knows.
        info = None
        try:
            info = await self.core.gcs().call(
                "Gcs", "GetActorInfo", p.GetActor(state.actor_id, wait_for_alive=True, timeout=2.0,
                                                  after_incarnation=call.spec.incarnation),
            )
        except RpcError:
            pass
        if info is not None and info.state == p.ACTOR_DEAD:
            error: BaseException = dead_error(info)
        elif info is not None and info.state == p.ACTOR_ALIVE and info.incarnation > call.spec.incarnation:
            why = f" ({info.death_cause})" if info.death_cause else ""
            error = ActorDiedError(
                f"The actor {state.actor_id[:8]} died while running {call.spec.name}{why} and was restarted; "
                "the call was not retried (set max_task_retries to retry it)", state.actor_id,
            )
        else:
            error = ActorUnavailableError(
                f"The actor {state.actor_id[:8]} is unreachable (restarting or dead) while running {call.spec.name}",
                state.actor_id,
            )
        self._fail(call, error)
        if state.dead is None and not state.resolving:
            self._flush(state)

    def _retry(self, state: _Actor, call: _Call) -> bool:
        """Land a failed call; requeue it (in submission order) if retries remain."""
        self._land(state, call)
        if call.retries_left == 0 or state.dead is not None:
            return False
        call.retries_left -= 1
        state.waiting.append(call)
        state.waiting = deque(sorted(state.waiting, key=lambda c: c.order))
        self._flush(state)
        return True

    async def _process_answers(self, address: p.Address) -> bool:
        try:
            await self.core.clients.get(address.target).call("Health", "Check", None, timeout=2)
            return True
        except Exception:  # noqa: BLE001 - unreachable, refused or slow: treat as gone
            return False

    def _fail(self, call: _Call, error: BaseException) -> None:
        self.core.task_events.record_failed(call.spec, error)
        self.core.store_error(list(call.spec.return_ids), error)
        self.core.submitter.finish_generator(call.spec.task_id, error)
        self.core.refs.remove_submitted(call.deps)

    async def cancel(self, task_id: str, force: bool, recursive: bool) -> bool:
        """Cancel an actor call, as Ray does: a queued call never runs; a running
        one is left alone, unless the actor is async (its asyncio task is cancelled)."""
        for state in self.actors.values():
            queued = next((c for c in state.waiting if c.spec.task_id == task_id), None)
            call = queued or state.in_flight.get(task_id)
            if call is None:
                continue
            if force:
                raise ValueError(
                    f"cancel(force=True) is not supported for actor tasks ({call.spec.name}): the actor's "
                    "state would be lost; use distcore.kill(actor) to stop the whole actor instead"
                )
            call.cancelled = True
            call.retries_left = 0  # cancelled calls are not retried
            if queued is not None:
                state.waiting.remove(queued)
                self._fail(queued, TaskCancelledError(task_id))
                self._flush(state)
                return True
            if state.address is not None and call.spec.incarnation == state.incarnation:
                try:
                    await self.core.clients.get(state.address.target).call(
                        "CoreWorker", "CancelTask", p.CancelTask(task_id, False, recursive)
                    )
                except RpcError:
                    pass
            return True
        return False

    def on_released(self, object_id: str) -> None:
        """Reference counting released ``object_id`` (on the io loop)."""
        target = self.anchors.pop(object_id, None)
        if target is None:
            return
        actor_id, class_name = target
        # Out of scope: end the actor after the calls already queued, as Ray does.
        spec = p.TaskSpec(
            task_id=ids.new_task_id(), job_id=self.core.job_id, kind=p.ACTOR_TASK,
            name=f"{class_name}.__ray_terminate__", function_id="", args=[], kwargs={}, num_returns=0,
            return_ids=[], owner=self.core.address, resources={}, actor_id=actor_id,  # type: ignore[arg-type]
            method_name=TERMINATE_METHOD, namespace=self.core.namespace,
        )
        asyncio.ensure_future(self.submit(spec, [], 0))

    async def release_when_dead(self, actor_id: str, deps: list[str]) -> None:
        """Unpin an actor's creation arguments once the control store says it is dead."""
        while True:
            try:
                info: p.ActorInfo | None = await self.core.gcs().call(
                    "Gcs", "GetActorInfo", p.GetActor(actor_id, wait_for_alive=True, timeout=60.0, after_incarnation=2**62)
                )
            except RpcError:
                return  # the cluster is gone, and the objects with it
            if info is None or info.state == p.ACTOR_DEAD:
                break
        self.core.refs.remove_submitted(deps)

    def forget(self, actor_id: str) -> None:
        self.actors.pop(actor_id, None)


class _DirectPush:
    """The pending entry of a call sent by a caller thread (``ActorSubmitter._send_direct``): the
    framed client hands it the reply on the io loop, where it finishes the call as ``_push`` would."""

    __slots__ = ("_sub", "_state", "_call", "_address")

    def __init__(self, sub: ActorSubmitter, state: _Actor, call: _Call, address: p.Address) -> None:
        self._sub = sub
        self._state = state
        self._call = call
        self._address = address

    def done(self) -> bool:
        return False

    def set_result(self, result: tuple) -> None:
        sub = self._sub
        sub.core.drain_deferred()  # this call's own bookkeeping first (note_actor_task)
        status, payload = result
        if status == 0:
            sub._replied(self._state, self._call, payload)
        else:
            self.set_exception(payload)

    def set_exception(self, exc: BaseException) -> None:
        sub, state, call = self._sub, self._state, self._call
        sub.core.drain_deferred()
        if isinstance(exc, RpcUnavailable):
            asyncio.ensure_future(sub._on_actor_unreachable(state, call, self._address, exc))
            return
        sub._land(state, call)
        if isinstance(exc, RpcError):
            exc = ActorDiedError(f"calling {call.spec.name} failed: {exc}", state.actor_id)
        sub._fail(call, exc)


def dead_error(info: p.ActorInfo) -> ActorDiedError:
    """The error callers of a dead actor get, with the cause spelled out."""
    message = f"The actor {info.class_name} ({info.actor_id[:8]}) is dead: {info.death_cause or 'unknown cause'}"
    if info.death_error:
        try:
            value = deserialize(info.death_error)
            if isinstance(value, ErrorValue) and isinstance(value.error, TaskError):
                message += f"\nThe constructor raised:\n{value.error.traceback_str}"
        except Exception:  # noqa: BLE001
            pass
    return ActorDiedError(message, info.actor_id)
