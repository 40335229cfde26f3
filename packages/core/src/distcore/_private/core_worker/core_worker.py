"""The core worker: the runtime half of every driver and worker process.

It owns an asyncio loop on a background thread that runs the gRPC server
(the owner service other processes call) and every client call. The public
API calls in from user threads through :meth:`CoreWorker.run`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.core_worker.gcs_client import GcsClient
from distcore._private.core_worker.memory_store import MemoryStore, StoredObject
from distcore._private.core_worker.objects import (
    INLINE_MAX_BYTES,
    node_gone_message,
    read_segment,
    write_to_store,
)
from distcore._private.core_worker.owner_service import OwnerService
from distcore._private.core_worker.references import RefEntry, ReferenceCounter
from distcore._private.rpc import ClientPool, RpcClient, RpcError, RpcServer, RpcUnavailable
from distcore._private.serialization import ErrorValue, SerializedObject, deserialize, serialize
from distcore.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    OwnerDiedError,
    TaskError,
)

logger = logging.getLogger(__name__)

# How often an owner checks that the processes borrowing its objects live.
BORROWER_CHECK_INTERVAL_S = 2.0
# How often an otherwise idle io loop runs the work deferred to its next wake-up (``CoreWorker.defer``).
DEFERRED_TICK_S = 0.1
# An idle process's tick backs off to this (doubling), so it does not wake 10 times a second for nothing.
DEFERRED_TICK_MAX_S = 1.6

# Tries to map a store object that keeps being spilled before it is mapped.
_MAP_ATTEMPTS = 20

_UNSET = object()
# The task running in this thread or asyncio task: threaded and async actors
# run several calls at once, each sees its own id.
_current_task: contextvars.ContextVar = contextvars.ContextVar("distcore_current_task", default=_UNSET)


class CoreWorker:
    """Owner and client side of one process. One per process."""

    def __init__(
        self,
        *,
        is_driver: bool,
        gcs_address: str,
        node_address: str,
        node_id: str,
        token: str | None,
        worker_id: str | None = None,
        job_id: str = "",
        namespace: str = "",
        session_name: str = "",
        session_dir: str = "",
        ip: str = "127.0.0.1",
    ) -> None:
        self.is_driver = is_driver
        self.gcs_address = gcs_address
        self.node_address = node_address
        self.node_id = node_id
        self.token = token
        self.worker_id = worker_id or ids.new_worker_id()
        self.job_id = job_id
        self.namespace = namespace
        self.session_name = session_name
        self.session_dir = session_dir
        self.ip = ip
        # A task id for objects put outside any task (the driver's "task").
        self.root_task_id = ids.new_task_id()
        self._latest_task_id: str | None = None  # for threads the user started inside a task
        self.current_actor_id: str | None = None
        self.memory = MemoryStore()
        self.refs = ReferenceCounter(self._on_release)
        self.clients = ClientPool(token, framed=os.environ.get("DISTCORE_FRAMED_RPC", "1") != "0")
        self.address: p.Address | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="distcore-io", daemon=True)
        self._server: RpcServer | None = None
        self._to_register: dict[str, tuple[p.Address, list[str]]] = {}
        self._to_free: dict[str, list[str]] = {}
        self._flush_scheduled = False
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self._posted: collections.deque = collections.deque()
        # Loop work that may wait for the loop's next wake-up (``defer``).
        self._deferred: collections.deque = collections.deque()
        # Bumped when a borrowed ref is queued for registration (any thread): a task whose reply
        # may go out directly must not have made one (``executor._reply``).
        self.borrow_epoch = 0
        self._wake_scheduled = False
        self.executor = None  # set by worker_main: the task executor
        self.job_runtime_env: dict | None = None
        self.assigned_resources: dict[str, float] = {}
        self.gpu_ids: list[int] = []
        self.cluster_view: p.ClusterView | None = None
        from distcore._private.core_worker.actor_submitter import ActorSubmitter
        from distcore._private.core_worker.submitter import TaskSubmitter
        from distcore._private.core_worker.task_events import TaskEventBuffer

        self.submitter = TaskSubmitter(self)
        from distcore._private.core_worker.reconstruction import Reconstructor

        self.lineage = Reconstructor(self)  # lineage of owned returns; recovers lost objects
        self.actors = ActorSubmitter(self)
        self.task_events = TaskEventBuffer(self)

    @property
    def current_task_id(self) -> str | None:
        """The task of the calling thread or asyncio task (the latest one started elsewhere)."""
        task_id = _current_task.get()
        return self._latest_task_id if task_id is _UNSET else task_id

    @current_task_id.setter
    def current_task_id(self, task_id: str | None) -> None:
        _current_task.set(task_id)
        self._latest_task_id = task_id

    # ------------------------------------------------------------ lifecycle

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self.run(self._start(), timeout=60)

    async def _start(self) -> None:
        self._server = RpcServer(self.token, host=self.ip, port=0)
        service = OwnerService(self)
        self._server.add_service("CoreWorker", service)
        port = await self._server.start()
        from distcore._private.core_worker.framed_rpc import FramedServer

        self._framed_server = FramedServer(service, self.token)
        self._framed_server.on_request = self.drain_deferred
        await self._framed_server.start(f"{self.ip}:{port}")
        self.address = p.Address(self.ip, port, self.worker_id, self.node_id)
        self._borrower_watch = asyncio.ensure_future(self._watch_borrowers())
        self._tick_s = DEFERRED_TICK_S
        self._tick_handle = self.loop.call_later(DEFERRED_TICK_S, self._tick)
        from distcore._private import head_restart

        if self.is_driver and head_restart.on_head_node(self):  # a restarted head has a new node id
            self._follow_node = asyncio.ensure_future(head_restart.follow_local_node(self))

    async def _watch_borrowers(self) -> None:
        """Drop borrowers whose process died, so their objects can be freed."""
        while True:
            await asyncio.sleep(BORROWER_CHECK_INTERVAL_S)
            for worker_id, address in self.refs.borrowers().items():
                try:
                    await self.clients.get(address.target).call("Health", "Check", None, timeout=5)
                except RpcUnavailable:
                    self.clients.drop(address.target)
                    self.refs.remove_borrower_everywhere(worker_id)
                except Exception:  # noqa: BLE001 - slow or busy: try again next round
                    pass

    def run(self, coro: Coroutine, timeout: float | None = None) -> Any:
        """Run ``coro`` on the io loop and wait for its result."""
        if self._closed:
            coro.close()
            raise RuntimeError("distcore has been shut down; call distcore.init() again")
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking distcore call made on the io thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:  # a timeout, or the caller interrupted (task cancelled)
            fut.cancel()
            raise

    def spawn(self, coro: Coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the io loop soon (from any thread), in call order.

        Calls queue in a deque and the loop is woken only when the queue was
        empty: a burst of ``remote()`` calls or ref releases costs one wake-up
        (one self-pipe write), not one each.
        """
        if self._closed:
            return
        self._posted.append((fn, args))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain_posted)
            except RuntimeError:  # the loop is closed
                self._wake_scheduled = False

    def defer(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the io loop the next time it wakes up anyway (from any thread): a new
        request, a posted call, or the executor's sweep while tasks run. No wake-up of its own."""
        self._deferred.append((fn, args))

    def drain_deferred(self) -> None:
        deferred = self._deferred
        while deferred:
            fn, args = deferred.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one failing callback must not drop the others
                logger.exception("deferred callback %r failed on the io loop", fn)

    def _drain_posted(self) -> None:
        if self._deferred:
            self.drain_deferred()
        self._wake_scheduled = False  # before draining: a later post schedules another drain
        posted = self._posted
        while posted:
            fn, args = posted.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one failing callback must not drop the others
                logger.exception("callback %r failed on the io loop", fn)

    def submit_soon(self, coro: Coroutine) -> None:
        """Start ``coro`` on the io loop without waiting for it (its errors are logged)."""
        self.call_soon(asyncio.ensure_future, coro)

    def shutdown(self) -> None:
        if self._closed:
            return
        try:
            self.run(self._stop(), timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self._closed = True
        self.memory.wake_all()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if self.__dict__.get("_gcs_client") is not None:
            self._gcs_client.close_sync()

    async def _stop(self) -> None:
        if getattr(self, "_tick_handle", None) is not None:
            self._tick_handle.cancel()
        if getattr(self, "_borrower_watch", None) is not None:
            self._borrower_watch.cancel()
        if getattr(self, "_follow_node", None) is not None:
            self._follow_node.cancel()
        await self.task_events.flush(timeout=2.0)
        self.lineage.close()
        await self.submitter.close()
        if getattr(self, "_framed_server", None) is not None:
            await self._framed_server.stop()
        if self._server is not None:
            await self._server.stop(0.2)
        await self.clients.close()

    # ------------------------------------------------------------ clients

    def gcs(self) -> GcsClient:
        """The control store; calls retry while the head restarts (``gcs_client.py``)."""
        client = self.__dict__.get("_gcs_client")
        if client is None:
            client = self._gcs_client = GcsClient(self.gcs_address, lambda: self.clients.get(self.gcs_address))
        return client

    def node(self) -> RpcClient:
        return self.clients.get(self.node_address)

    def gcs_call(self, method: str, request: Any = None, timeout: float | None = None) -> Any:
        # From the caller's thread over a blocking channel: no io-loop round trip (``gcs_client.py``).
        if self._closed:
            raise RuntimeError("distcore has been shut down; call distcore.init() again")
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking distcore call made on the io thread")
        return self.gcs().call_sync("Gcs", method, request, timeout=timeout)

    async def node_address_of(self, node_id: str) -> str | None:
        if node_id == self.node_id:
            return self.node_address
        view = self.cluster_view
        if view is None or node_id not in view.nodes:
            view = self.cluster_view = await self.gcs().call("Gcs", "GetClusterView")
        node = view.nodes.get(node_id)
        return node.address if node else None

    # ------------------------------------------------------------ refs

    def make_ref(self, object_id: str, owner: p.Address | None = None):
        from distcore._private.api.object_ref import ObjectRef

        return ObjectRef(object_id, owner or self.address)

    def on_ref_deserialized(self, object_id: str, owner: p.Address) -> None:
        """A borrowed ref arrived in this process: tell its owner, batched.

        Any thread may call this; the queues are kept on the io loop, so
        registrations and releases are queued in the order they happened.
        """
        if owner.worker_id == self.worker_id:
            return
        self.borrow_epoch += 1
        self.call_soon(self._queue_borrow, owner, object_id)

    def _queue_borrow(self, owner: p.Address, object_id: str) -> None:
        slot = self._to_register.get(owner.target)
        if slot is None:
            self._to_register[owner.target] = (owner, [object_id])
        else:
            slot[1].append(object_id)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_soon(lambda: asyncio.ensure_future(self.flush_ref_updates()))

    async def flush_ref_updates(self) -> None:
        """Send pending borrower registrations and frees; await their replies.

        Flushes run one at a time, so an update never overtakes an earlier
        one and a caller returns only once everything queued before it
        reached the owners (a task's reply must not beat its borrows).
        Within a batch, frees go before registrations: an id may be handed
        back and borrowed again in one batch, and must end up borrowed.
        """
        self._flush_scheduled = False
        async with self._flush_lock:
            register, self._to_register = self._to_register, {}
            free, self._to_free = self._to_free, {}
            for _owner, object_ids in register.values():
                for object_id in object_ids:
                    self.refs.mark_registered(object_id)
            if free:
                await asyncio.gather(*(self._send_free(target, ids_) for target, ids_ in free.items()))
            if register:
                await asyncio.gather(*(
                    self._send_borrow(target, p.UpdateBorrowers(self.address, add=object_ids))
                    for target, (_owner, object_ids) in register.items()
                ))

    async def _send_borrow(self, target: str, update: p.UpdateBorrowers) -> None:
        try:
            await self.clients.get(target).call("CoreWorker", "UpdateBorrowers", update, timeout=30)
        except (RpcError, TimeoutError):
            pass  # the owner is gone: its objects are gone too

    async def _send_free(self, target: str, object_ids: list[str]) -> None:
        try:
            if target.startswith("node:"):
                address = await self.node_address_of(target[5:])
                if address:
                    await self.clients.get(address).call("NodeManager", "FreeObjects", object_ids, timeout=30)
            else:
                await self.clients.get(target).call(
                    "CoreWorker", "UpdateBorrowers", p.UpdateBorrowers(self.address, remove=object_ids), timeout=30
                )
        except (RpcError, TimeoutError):
            pass

    def _on_release(self, object_id: str, entry: RefEntry) -> None:
        """Reference counting says ``object_id`` is no longer needed here (any thread)."""
        if self._closed:
            return
        if entry.owned and not entry.plasma_node and object_id not in self.actors.anchors:
            # An inline value owned here (a sync call's result): nothing to tell anyone, so no
            # wake-up of the io loop for it. Its lineage goes when the loop next wakes (``defer``;
            # ``_tick`` bounds the wait).
            self.memory.delete(object_id)
            self.defer(self.lineage.on_released, object_id)
            return
        self.call_soon(self._queue_release, object_id, entry)

    def _tick(self) -> None:
        """Run deferred loop work at least every ``DEFERRED_TICK_S`` while there is some; a tick that
        finds none waits twice as long next time, up to ``DEFERRED_TICK_MAX_S``."""
        if self._deferred:
            self.drain_deferred()
            self._tick_s = DEFERRED_TICK_S
        else:
            self._tick_s = min(self._tick_s * 2, DEFERRED_TICK_MAX_S)
        if not self._closed:
            self._tick_handle = self.loop.call_later(self._tick_s, self._tick)

    def _queue_release(self, object_id: str, entry: RefEntry) -> None:
        self.memory.delete(object_id)
        if entry.owned:
            self.actors.on_released(object_id)  # an actor's last handle may be gone
            self.lineage.on_released(object_id)
            if entry.plasma_node:
                self._to_free.setdefault(f"node:{entry.plasma_node}", []).append(object_id)
                self._schedule_flush()
            return
        if entry.owner is None:
            return
        slot = self._to_register.get(entry.owner.target)
        if slot is not None and object_id in slot[1]:
            # Dropped before its registration went out: send neither.
            slot[1].remove(object_id)
            if not slot[1]:
                del self._to_register[entry.owner.target]
            return
        self._to_free.setdefault(entry.owner.target, []).append(object_id)
        self._schedule_flush()

    # ------------------------------------------------------------ put

    def put(self, value: Any, *, object_id: str | None = None) -> Any:
        from distcore._private.api.object_ref import ObjectRef

        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling put on an ObjectRef is not allowed; pass the ref itself, or put the value it points to"
            )
        serialized = serialize(value, lambda: f"the value passed to put ({type(value).__name__})")
        object_id = object_id or ids.new_put_object_id(self.current_task_id or self.root_task_id)
        contains = self._contained_ids(serialized)
        self.refs.add_owned(object_id, contains)
        ref = ObjectRef(object_id, self.address)
        self.run(self._store_owned(object_id, serialized))
        return ref

    def _contained_ids(self, serialized: SerializedObject) -> list[str]:
        return [r.hex() for r in serialized.contained_refs]

    async def _store_owned(self, object_id: str, serialized: SerializedObject) -> None:
        if serialized.total_size <= INLINE_MAX_BYTES:
            value = p.SerializedValue(serialized.to_bytes(), [(r.hex(), r.owner_address()) for r in serialized.contained_refs])
            self.memory.put(object_id, StoredObject(value=value, size=serialized.total_size))
        else:
            await write_to_store(self.node(), object_id, serialized, self.address)
            self.refs.set_location(object_id, self.node_id, serialized.total_size)
            self.memory.put(object_id, StoredObject(plasma_node=self.node_id, size=serialized.total_size))

    # ------------------------------------------------------------ get / wait

    async def resolve(
        self, object_id: str, owner: p.Address | None, timeout: float | None, lost_node: str | None = None
    ) -> StoredObject | None:
        """Wait until the object's value or location is known here (``lost_node``: the copy there is gone)."""
        obj = self.memory.get(object_id)
        if obj is not None:
            return obj
        if owner is None or owner.worker_id == self.worker_id:
            if self.refs.get(object_id) is None or self.refs.was_freed(object_id):
                raise ObjectLostError(object_id, "this process", _freed_message(object_id))
            return await self.memory.wait(object_id, timeout)
        try:
            status: p.ObjectStatus = await self.clients.get(owner.target).call(
                "CoreWorker", "GetObject", p.GetObject(object_id, timeout, self.address, lost_node),
                timeout=None if timeout is None else timeout + 5,
            )
        except RpcUnavailable:
            raise OwnerDiedError(
                object_id, owner.target,
                f"Object {object_id} is lost: its owner (worker {owner.worker_id[:8]} at {owner.target}) died",
            ) from None
        except TimeoutError:
            return None
        if status.freed:
            raise ObjectLostError(object_id, owner.target, _freed_message(object_id, owner.target))
        if not status.ready:
            return None
        obj = StoredObject(value=status.value, plasma_node=status.plasma_node, size=status.size)
        if status.value is not None and status.value.contained:
            for inner_id, inner_owner in status.value.contained:
                if self.refs.add_borrowed(inner_id, inner_owner, registered=False, contained_in=object_id):
                    self.on_ref_deserialized(inner_id, inner_owner)
            self.refs.set_contains(object_id, [i for i, _ in status.value.contained])
        self.memory.put(object_id, obj)
        return obj

    async def _locate_segments(self, objs: list[tuple[str, StoredObject]]) -> dict[str, str]:
        """Segment names of plasma objects, pulling remote ones here first."""
        names: dict[str, str] = {}
        wanted = [oid for oid, obj in objs if obj.plasma_node is not None]
        if not wanted:
            return names
        try:
            found = await self.node().call("NodeManager", "GetObjects", wanted)
        except RpcUnavailable:
            raise ObjectLostError(wanted[0], "", node_gone_message(self.node_address, f"get object {wanted[0]}")) from None
        for oid, loc in zip(wanted, found, strict=False):
            if loc is not None:
                names[oid] = loc[0]
        missing = [(oid, obj) for oid, obj in objs if obj.plasma_node is not None and oid not in names]
        if missing:  # pulled concurrently: each is its own stream between node managers
            pulled = await asyncio.gather(*(self._pull(oid, obj) for oid, obj in missing))
            names.update(zip([oid for oid, _ in missing], pulled, strict=True))
        return names

    async def _pull(self, object_id: str, obj: StoredObject) -> str:
        """Have the local node manager copy a remote object here (streamed, deduplicated per node)."""
        from distcore._private.node_manager.object_transfer import PullObject

        request = PullObject(object_id, obj.plasma_node or "", obj.size)
        try:
            name, _size = await self.node().call("NodeManager", "PullObject", request)
        except RpcUnavailable:
            raise ObjectLostError(object_id, "", node_gone_message(self.node_address, f"get object {object_id}")) from None
        return name

    def get(self, refs: list, timeout: float | None = None) -> list[Any]:
        """Values of ``refs``; raises the stored error of a failed task."""
        deadline = None if timeout is None else time.monotonic() + timeout
        objs = self._fetch(refs, deadline)
        objs, names = self.lineage.locate(refs, objs, deadline)  # lost copies are recovered (reconstruction.py)
        values = []
        for ref, obj in zip(refs, objs, strict=False):
            if obj.value is not None:
                value = deserialize(obj.value.data)
            else:
                value = self._read_plasma(ref.hex(), obj, names[ref.hex()])
            if isinstance(value, ErrorValue):
                err = value.error
                if isinstance(err, TaskError):
                    raise err.as_instanceof_cause()
                raise err
            values.append(value)
        return values

    def _read_plasma(self, object_id: str, obj: StoredObject, name: str) -> Any:
        """Map a store object read-only and deserialize it zero-copy.

        Restoring one object of a batch may spill another that was located
        before it (a get of more than the store holds): its segment is gone,
        so locate (restore) it again. A mapping stays valid once made.
        """
        for _ in range(_MAP_ATTEMPTS):
            try:
                return read_segment(name)
            except FileNotFoundError:
                name = self.run(self._locate_segments([(object_id, obj)]))[object_id]
        raise ObjectLostError(
            object_id, "",
            f"Object {object_id} could not be read: the object store spilled it again {_MAP_ATTEMPTS} times "
            "before it could be mapped. Other readers need more than the store holds at once; raise "
            "object_store_memory or read fewer objects at a time.",
        )

    def _fetch(self, refs: list, deadline: float | None) -> list[StoredObject]:
        # Values already here are read from this thread (dict reads are
        # atomic): no hop to the io loop and back.
        memory = self.memory
        here = [memory.get(r.hex()) for r in refs]
        if None not in here:
            return here  # type: ignore[return-value]
        pending = [r for r, obj in zip(refs, here, strict=True) if obj is None]
        blocked = bool(pending) and self.current_task_id is not None and not self.is_driver
        if blocked:
            self._notify_blocked(True)
        try:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = self._wait_owned(refs, pending, remaining)
            if result is None:
                result = self.run(self._fetch_all(refs, remaining))
        finally:
            if blocked:
                self._notify_blocked(False)
        for ref, obj in zip(refs, result, strict=False):
            if obj is None:
                raise GetTimeoutError(
                    f"get timed out after {remaining:.3g} s waiting for {ref}" if remaining is not None else f"get of {ref} failed"
                )
        return result

    def _wait_owned(self, refs: list, pending: list, timeout: float | None) -> list[StoredObject | None] | None:
        """Wait on this thread for pending objects this process owns (a sync task or actor call's
        result); None when some are owned elsewhere (the io loop asks their owners)."""
        if self._closed or threading.current_thread() is self._thread:
            return None
        me = self.worker_id
        ids = []
        for ref in pending:
            owner = ref._owner
            if owner is not None and owner.worker_id != me:
                return None
            oid = ref.hex()
            if self.refs.get(oid) is None or self.refs.was_freed(oid):
                return None  # the io loop path raises the clear error
            ids.append(oid)
        done = self.memory.wait_here(ids, timeout)
        result = [self.memory.get(r.hex()) for r in refs]
        if done and None in result:
            return None  # dropped meanwhile (being reconstructed): the io loop path handles it
        return result

    async def _fetch_all(self, refs: list, timeout: float | None) -> list[StoredObject | None]:
        return list(await asyncio.gather(*(self.resolve(r.hex(), r.owner_address(), timeout) for r in refs)))

    def _notify_blocked(self, blocked: bool) -> None:
        try:
            self.run(self.node().call("NodeManager", "WorkerBlocked", p.WorkerBlocked(self.worker_id, blocked)), timeout=10)
        except Exception:  # noqa: BLE001 - best effort: only affects CPU lending
            pass

    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> tuple[list, list]:
        here = self._wait_here(refs, num_returns, timeout)
        if here is not None:
            return here
        # A task blocked in wait lends its CPUs, as in get (else nested waits deadlock).
        ready = sum(1 for r in refs if self.memory.contains(r.hex()))
        blocked = ready < num_returns and timeout != 0 and self.current_task_id is not None and not self.is_driver
        if blocked:
            self._notify_blocked(True)
        try:
            return self.run(self._wait(refs, num_returns, timeout, fetch_local))
        finally:
            if blocked:
                self._notify_blocked(False)

    def _wait_here(self, refs: list, num_returns: int, timeout: float | None) -> tuple[list, list] | None:
        """``wait`` on the caller's thread, without a task per ref on the io loop: when enough refs are
        ready already, or when the others are owned here (their values come to this memory store).
        None: some pending ref is owned elsewhere (the io loop asks its owner)."""
        contains = self.memory.contains
        split = _split_ready(refs, num_returns, contains)
        if split is not None:
            return split
        if timeout == 0:
            return _split_ready(refs, num_returns, contains, partial=True)
        if self._closed or threading.current_thread() is self._thread:
            return None
        me = self.worker_id
        for ref in refs:
            oid = ref.hex()
            if contains(oid):
                continue
            owner = ref._owner
            if (owner is not None and owner.worker_id != me) or self.refs.get(oid) is None \
                    or self.refs.was_freed(oid):
                return None
        blocked = self.current_task_id is not None and not self.is_driver
        if blocked:
            self._notify_blocked(True)
        try:
            self.memory.wait_here([r.hex() for r in refs], timeout, count=num_returns)
        finally:
            if blocked:
                self._notify_blocked(False)
        return _split_ready(refs, num_returns, contains, partial=True)

    async def _wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> tuple[list, list]:
        ready_ids: set[str] = set()
        tasks = {}
        for r in refs:
            if self.memory.contains(r.hex()):
                ready_ids.add(r.hex())
            else:
                tasks[asyncio.ensure_future(self.resolve(r.hex(), r.owner_address(), timeout))] = r.hex()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while len(ready_ids) < num_returns and tasks:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                if remaining == 0.0:
                    break
                done, _ = await asyncio.wait(list(tasks), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break
                for t in done:
                    oid = tasks.pop(t)
                    try:
                        if t.result() is not None:
                            ready_ids.add(oid)
                    except Exception:  # noqa: BLE001 - a lost object counts as ready: get raises
                        ready_ids.add(oid)
        finally:
            for t in tasks:
                t.cancel()
        ready, not_ready = [], []
        for r in refs:
            (ready if r.hex() in ready_ids and len(ready) < num_returns else not_ready).append(r)
        return ready, not_ready

    # ------------------------------------------------------------ storing results

    def store_return(self, ret: p.ReturnObject, owner_of_contained_registered: bool = True) -> None:
        """Record a task's return value (on the io loop)."""
        contained = ret.value.contained if ret.value is not None else ret.contained
        if self.refs.get(ret.object_id) is None:
            self._drop_return(ret, contained)
            return
        if contained:
            inner_ids = []
            for inner_id, inner_owner in contained:
                inner_ids.append(inner_id)
                if inner_owner.worker_id == self.worker_id:
                    self.refs.add_owned(inner_id)
                    self.refs.get(inner_id).contained_in.add(ret.object_id)  # type: ignore[union-attr]
                else:
                    self.refs.add_borrowed(inner_id, inner_owner, registered=owner_of_contained_registered, contained_in=ret.object_id)
            self.refs.set_contains(ret.object_id, [])
            entry = self.refs.get(ret.object_id)
            if entry is not None:
                entry.contains.extend(inner_ids)
        if ret.plasma_node:
            self.refs.set_location(ret.object_id, ret.plasma_node, ret.size)
        self.memory.put(ret.object_id, StoredObject(value=ret.value, plasma_node=ret.plasma_node, size=ret.size))
        if self.refs.get(ret.object_id) is None:
            # Released by another thread since the check above (``_on_release`` deletes inline values
            # there): it must not stay stored.
            self.memory.delete(ret.object_id)

    def _drop_return(self, ret: p.ReturnObject, contained: list[tuple[str, p.Address]]) -> None:
        """Every ref to this return was dropped before it arrived: free it now.

        Its store copy goes, and so does our borrow of the refs inside it
        (the executor registered us as their borrower when it returned them).
        """
        if ret.plasma_node:
            self._to_free.setdefault(f"node:{ret.plasma_node}", []).append(ret.object_id)
        for inner_id, inner_owner in contained:
            if inner_owner.worker_id != self.worker_id and self.refs.get(inner_id) is None:
                self._to_free.setdefault(inner_owner.target, []).append(inner_id)
        self._schedule_flush()

    def store_error(self, object_ids: list[str], error: BaseException) -> None:
        value = p.SerializedValue(serialize(ErrorValue(error)).to_bytes())
        for oid in object_ids:
            if self.refs.get(oid) is not None:  # else every ref to it is gone
                self.memory.put(oid, StoredObject(value=value))

    # ------------------------------------------------------------ misc

    def function_key(self, blob: bytes) -> str:
        import hashlib

        return hashlib.sha1(blob).hexdigest()

    def export_function(self, blob: bytes) -> str:
        key = self.function_key(blob)
        self.gcs_call("KvPut", p.KvPut("fn", key, blob, overwrite=False))
        return key


def _freed_message(object_id: str, owner: str = "") -> str:
    where = f" by its owner at {owner}" if owner else ""
    return (
        f"Object {object_id} was already freed{where}: every ObjectRef to it had been dropped, so its "
        "value was deleted. Keep an ObjectRef (or a value containing it) alive for as long as you need the object."
    )


def _split_ready(refs: list, num_returns: int, contains: Any, partial: bool = False) -> Any:
    """(the first ``num_returns`` ready refs, the rest) in input order; None when fewer are ready,
    unless ``partial``. Stops looking once enough are found (a wait for one of 1,000 refs)."""
    ready: list = []
    not_ready: list = []
    for i, r in enumerate(refs):
        if contains(r.hex()):
            ready.append(r)
            if len(ready) == num_returns:
                not_ready += refs[i + 1:]
                return ready, not_ready
        else:
            not_ready.append(r)
    return (ready, not_ready) if partial else None
