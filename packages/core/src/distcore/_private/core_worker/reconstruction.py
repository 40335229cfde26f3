"""Recovering lost objects: an owner re-runs the lineage of what a dead node held.

An object stored in a node's shared-memory store is *lost* when the node
holding its primary copy is gone. The owner learns it two ways:

* it follows the cluster view (``Gcs.WatchClusterView``, a long poll, started
  once it submits tasks): a node marked dead loses every owned object whose
  primary copy was there, and the owner recovers them at once (eagerly, as
  Ray does), so pending dependents and later ``get``s just wait;
* a reader fails to pull a copy (``get``, a task's argument): the owner reads
  it itself, or a borrower tells it with ``GetObject(lost_node=...)``.

Recovery: an object made by ``put`` cannot be recomputed and fails with
``ObjectLostError`` naming its owner. A task's return is recomputed by
re-running the task from its kept spec (:mod:`lineage`), after recreating
arguments that were freed meanwhile (recursively); each re-run consumes one
of the task's ``max_retries``. When that is impossible (no retries left, no
lineage: an actor task's return, an evicted spec) or the re-run fails, the
object fails with ``ObjectReconstructionFailedError`` and the reason.

Everything here runs on the core worker's event loop except :meth:`locate`,
which ``CoreWorker.get`` calls from the user's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.core_worker.lineage import LineageEntry, LineageTable
from distcore._private.core_worker.memory_store import StoredObject
from distcore._private.rpc import RpcError, RpcUnavailable
from distcore.exceptions import (
    GetTimeoutError,
    ObjectLostError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    TaskError,
)

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

# How often one ``get`` may recover the same object before giving up (a copy
# that keeps vanishing as soon as it is recomputed).
MAX_RECOVERIES_PER_GET = 3
# Least time between two cluster-view polls: the view changes with every heartbeat that
# moves a node's free resources, and every owner process with lineage follows it.
WATCH_MIN_INTERVAL_S = 1.0
_PUT_INDEX_BIT = 0x80000000


def is_put_object(object_id: str) -> bool:
    """Whether ``object_id`` was made by ``put`` (not returned by a task)."""
    try:
        return bool(ids.index_of(object_id) & _PUT_INDEX_BIT)
    except ValueError:
        return False


class _LocalNodeGone(Exception):
    pass


class Reconstructor:
    """Lineage and lost-object recovery for one core worker."""

    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.table = LineageTable()
        self.reconstructions = 0  # task re-runs started to recover lost objects
        self._running: set[str] = set()  # task ids being resubmitted
        self._dead_nodes: set[str] = set()
        self._watch: asyncio.Task | None = None
        self._closed = False

    # ------------------------------------------------------------ lineage (io loop)

    def record(self, spec: p.TaskSpec, deps: list[str]) -> None:
        """A normal task was submitted: keep its spec while its returns are referenced."""
        if spec.kind != p.NORMAL_TASK:
            return
        if not isinstance(spec.num_returns, int):
            self.table.note_unreconstructable(
                list(spec.return_ids), f"it was yielded by the generator task {spec.name}; generator outputs are not reconstructed"
            )
            return
        me = self.core.worker_id
        arg_ids = [
            a.object_id for a in [*spec.args, *spec.kwargs.values()]
            if a.object_id is not None and a.owner is not None and a.owner.worker_id == me
        ]
        live = {rid for rid in spec.return_ids if self.core.refs.get(rid) is not None}
        self.table.record(spec, deps, arg_ids, live)
        self._ensure_watching()

    def note_actor_task(self, spec: p.TaskSpec) -> None:
        """Actor task returns are not reconstructed (Ray's default); remember it for the error."""
        self.table.note_unreconstructable(
            list(spec.return_ids),
            f"it was returned by the actor task {spec.name}, and actor task returns are not reconstructed "
            "(the actor's state may have moved on); keep a copy with distcore.put or recompute it",
        )

    def on_task_done(self, spec: p.TaskSpec) -> None:
        """A task ended: a kept spec holds no resolved argument values (a re-run resolves them again)."""
        if self.table.get(spec.task_id) is not None:
            _clear_resolved(spec)

    def on_released(self, object_id: str) -> None:
        """Reference counting freed an owned object: its lineage may go."""
        self.table.released(object_id)

    def wrap_error(self, spec: p.TaskSpec, error: BaseException) -> BaseException:
        """The error a re-run that failed leaves in its returns (the submitter calls this)."""
        entry = self.table.get(spec.task_id)
        if entry is None or not entry.reexecuted or isinstance(error, (TaskError, ObjectLostError)):
            return error
        rid = spec.return_ids[0] if spec.return_ids else ""
        return ObjectReconstructionFailedError(
            rid, self._owner_target(),
            f"Object {rid} was lost and could not be reconstructed: re-running task {spec.name} "
            f"(attempt {spec.attempt + 1}) failed: {error}",
        )

    # ------------------------------------------------------------ losing objects (io loop)

    def on_copy_lost(self, object_id: str, node_id: str) -> None:
        """A reader found no copy of an owned object on ``node_id``, where we said it was."""
        obj = self.core.memory.get(object_id)
        entry = self.core.refs.get(object_id)
        if obj is None or obj.plasma_node != node_id or entry is None or not entry.owned:
            return  # stale news: already recovered, being recovered, or not ours
        self._lose([object_id], f"no copy of it could be read from node {node_id[:8]}", node_id)

    def on_node_dead(self, node_id: str) -> None:
        """The cluster view says ``node_id`` died: recover what only it held."""
        if node_id == self.core.node_id:
            return
        self.core.submitter.return_idle_on(node_id)
        lost = [
            oid for oid, entry in self.core.refs.snapshot().items()
            if entry.owned and entry.plasma_node == node_id
        ]
        if lost:
            logger.info("node %s died holding %d objects owned here; recovering them", node_id[:8], len(lost))
            self._lose(lost, f"node {node_id[:8]}, which held its primary copy, died", node_id)

    def _lose(self, object_ids: list[str], why: str, node_id: str) -> None:
        core = self.core
        core.submitter.return_idle_on(node_id)  # so the re-runs are not pushed there blindly
        for oid in object_ids:
            core.memory.delete(oid)
            core.refs.set_location(oid, None, 0)
        if node_id in self._dead_nodes:
            for oid in object_ids:
                self._recover(oid, why)
        else:
            asyncio.ensure_future(self._free_then_recover(object_ids, why, node_id))

    async def _free_then_recover(self, object_ids: list[str], why: str, node_id: str) -> None:
        """The node may live on (its copy was unreadable, not gone): free that copy first, so it
        neither leaks pinned nor clashes with the re-run's copy should the re-run land there."""
        core = self.core
        try:
            address = await core.node_address_of(node_id)
            if address:
                await core.clients.get(address).call("NodeManager", "FreeObjects", object_ids, timeout=2)
        except (RpcError, TimeoutError):
            pass  # gone (or hung): nothing to free there
        for oid in object_ids:
            self._recover(oid, why)

    def _recover(self, object_id: str, why: str) -> None:
        if is_put_object(object_id):
            self._fail([object_id], ObjectLostError(
                object_id, self._owner_target(),
                f"Object {object_id} is lost: {why}. It was made by put (owner: {self._owner_desc()}), so it cannot "
                "be reconstructed; put it again, or create it in a task so its lineage can recompute it.",
            ))
            return
        entry = self.table.producer(object_id)
        if entry is None:
            reason = self.table.reason(object_id) or (
                "this owner kept no lineage for it (it came from an actor task or a generator, "
                "or its task's spec was released)"
            )
            self._fail([object_id], self._failed(object_id, why, reason))
            return
        self._reexecute(entry, why)

    def _reexecute(self, entry: LineageEntry, why: str) -> str | None:
        """Resubmit ``entry``'s task; returns why it could not be, or None."""
        core = self.core
        spec: p.TaskSpec = entry.spec
        if entry.task_id in self._running or entry.task_id in core.submitter.tasks:
            return None  # already on its way
        reason = _no_retry_reason(spec)
        if reason is not None:
            self._fail_task(entry, why, reason)
            return reason
        # Arguments freed since (their refs were dropped) are recreated and recomputed first.
        freed = [a for a in entry.arg_ids if core.refs.get(a) is None or core.refs.was_freed(a)]
        parents = []
        for arg_id in freed:
            parent = self.table.producer(arg_id)
            if parent is None:
                made_by = self.table.reason(arg_id) or (
                    "it was made by put (as large arguments are), which cannot be recomputed"
                    if is_put_object(arg_id) else "it has no lineage"
                )
                reason = f"its argument {arg_id} was freed, and {made_by}"
                self._fail_task(entry, why, reason)
                return reason
            parents.append(parent)
        for arg_id in freed:
            core.refs.add_owned(arg_id)
        core.refs.add_submitted(entry.deps)  # released by the submitter when the re-run ends
        for arg_id, parent in zip(freed, parents, strict=True):
            failed = self._reexecute(parent, f"it was freed, and task {spec.name}, which takes it, is re-run")
            if failed is not None:
                reason = f"its argument {arg_id} could not be reconstructed: {failed}"
                self._fail_task(entry, why, reason)
                core.refs.remove_submitted(entry.deps)
                return reason
        self._forget_returns(spec)
        _clear_resolved(spec)  # resolved again: the old value or location may be gone
        spec.attempt += 1
        entry.reexecuted += 1
        self.reconstructions += 1
        logger.info("reconstructing the returns of task %s (%s): re-running it, attempt %d", spec.name, why, spec.attempt + 1)
        self._running.add(entry.task_id)
        fut = asyncio.ensure_future(self._resubmit(entry))
        fut.add_done_callback(lambda _f, tid=entry.task_id: self._running.discard(tid))
        return None

    async def _resubmit(self, entry: LineageEntry) -> None:
        """Submit a re-run once its lost arguments are being recomputed too.

        A worker that finds an argument missing waits for it while holding
        its lease, and the argument's own re-run may need that lease's
        resources: so the owner checks first that each owned argument in a
        store still has its copy, and recovers the missing ones before the
        task is submitted (its submission then waits for them, holding nothing).
        """
        core = self.core
        by_node: dict[str, list[str]] = {}
        for arg_id in entry.arg_ids:
            obj = core.memory.get(arg_id)
            if obj is not None and obj.plasma_node and obj.plasma_node not in self._dead_nodes:
                by_node.setdefault(obj.plasma_node, []).append(arg_id)
        for node_id, oids in by_node.items():
            for oid in await self._missing_on(node_id, oids):
                self.on_copy_lost(oid, node_id)
        await core.submitter.submit(entry.spec, list(entry.deps))

    async def _missing_on(self, node_id: str, object_ids: list[str]) -> list[str]:
        """Those of ``object_ids`` that node ``node_id`` does not hold (all of them if it is gone)."""
        core = self.core
        try:
            address = await core.node_address_of(node_id)
            if address is None:
                return object_ids
            infos = await core.clients.get(address).call("NodeManager", "GetObjectInfos", object_ids, timeout=5)
        except RpcUnavailable:
            return object_ids
        except (RpcError, TimeoutError):
            return []  # slow or unsure: a reader that cannot pull it reports it
        return [oid for oid, info in zip(object_ids, infos, strict=True) if info is None]

    def _forget_returns(self, spec: p.TaskSpec) -> None:
        """Drop the copies of a task's returns that the re-run replaces (so none leaks pinned)."""
        core = self.core
        for rid in spec.return_ids:
            entry = core.refs.get(rid)
            if entry is None:
                continue
            if entry.plasma_node:
                core._to_free.setdefault(f"node:{entry.plasma_node}", []).append(rid)
                core._schedule_flush()
                core.memory.delete(rid)
                core.refs.set_location(rid, None, 0)

    def _fail_task(self, entry: LineageEntry, why: str, reason: str) -> None:
        core = self.core
        for rid in entry.spec.return_ids:
            if core.refs.get(rid) is not None and core.memory.get(rid) is None:
                self._fail([rid], self._failed(rid, why, reason))

    def _fail(self, object_ids: list[str], error: BaseException) -> None:
        logger.warning("%s", error)
        self.core.store_error(object_ids, error)

    def _failed(self, object_id: str, why: str, reason: str) -> ObjectReconstructionFailedError:
        return ObjectReconstructionFailedError(
            object_id, self._owner_target(),
            f"Object {object_id} is lost ({why}) and could not be reconstructed: {reason}",
        )

    def _owner_target(self) -> str:
        return self.core.address.target if self.core.address else ""

    def _owner_desc(self) -> str:
        kind = "the driver" if self.core.is_driver else "worker"
        return f"{kind} {self.core.worker_id[:8]} at {self._owner_target()}"

    # ------------------------------------------------------------ following node deaths (io loop)

    def _ensure_watching(self) -> None:
        if self._watch is None and not self._closed:
            self._watch = asyncio.ensure_future(self._watch_nodes())

    async def _watch_nodes(self) -> None:
        """Follow the cluster view while this process keeps lineage (nothing to recover otherwise)."""
        version = -1
        while not self._closed and len(self.table):
            try:
                view: p.ClusterView = await self.core.gcs().call("Gcs", "WatchClusterView", version, timeout=30)
            except (RpcError, TimeoutError):
                await asyncio.sleep(1.0)
                continue
            version = view.version
            self.core.cluster_view = view
            for node_id, node in view.nodes.items():
                if not node.alive and node_id not in self._dead_nodes:
                    self._dead_nodes.add(node_id)
                    try:
                        self.on_node_dead(node_id)
                    except Exception:  # noqa: BLE001 - keep following the cluster
                        logger.exception("recovering the objects of dead node %s failed", node_id[:8])
            await asyncio.sleep(WATCH_MIN_INTERVAL_S)
        self._watch = None  # the next recorded task starts it again

    def close(self) -> None:
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()

    # ------------------------------------------------------------ reading (user thread)

    def locate(self, refs: list, objs: list[StoredObject], deadline: float | None) -> tuple[list[StoredObject], dict[str, str]]:
        """Segment names of the plasma objects of a ``get``, recovering lost ones.

        A copy that cannot be pulled is reported lost (to ourselves as its
        owner, or to its owner) and read again once it is recomputed.
        """
        core = self.core
        if all(obj.plasma_node is None for obj in objs):
            return objs, {}  # every value is inline: nothing to locate (no io-loop hop)
        oids = [r.hex() for r in refs]
        tries: dict[str, int] = {}
        while True:
            try:
                return objs, core.run(core._locate_segments(list(zip(oids, objs, strict=True))))
            except ObjectLostError as exc:
                oid = exc.object_id
                if isinstance(exc, OwnerDiedError) or oid not in oids or tries.get(oid, 0) >= MAX_RECOVERIES_PER_GET:
                    raise
                index = oids.index(oid)
                lost_node = objs[index].plasma_node
                if lost_node is None:
                    raise
                tries[oid] = tries.get(oid, 0) + 1
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                blocked = core.current_task_id is not None and not core.is_driver
                if blocked:  # lend our CPUs while the object is recomputed (it may need them)
                    core._notify_blocked(True)
                try:
                    obj = core.run(self._recover_for_read(oid, refs[index].owner_address(), lost_node, remaining))
                except _LocalNodeGone:
                    raise exc from None
                finally:
                    if blocked:
                        core._notify_blocked(False)
                if obj is None:
                    raise GetTimeoutError(f"get timed out waiting for lost object {oid} to be reconstructed") from None
                objs = [obj if o == oid else prev for o, prev in zip(oids, objs, strict=True)]

    async def _recover_for_read(
        self, object_id: str, owner: p.Address | None, lost_node: str, timeout: float | None
    ) -> StoredObject | None:
        core = self.core
        try:  # our own node manager unreachable: the cluster is gone, nothing to recover
            await core.node().call("Health", "Check", None, timeout=5)
        except (RpcError, TimeoutError):
            raise _LocalNodeGone() from None
        if owner is None or owner.worker_id == core.worker_id:
            self.on_copy_lost(object_id, lost_node)
            return await core.memory.wait(object_id, timeout)
        core.memory.delete(object_id)
        return await core.resolve(object_id, owner, timeout, lost_node=lost_node)


def _clear_resolved(spec: p.TaskSpec) -> None:
    """Forget what resolving the task's ref arguments filled in (values inlined, store locations)."""
    for arg in [*spec.args, *spec.kwargs.values()]:
        if arg.object_id is not None:
            arg.value = None
            arg.in_plasma_node = None


def _no_retry_reason(spec: p.TaskSpec) -> str | None:
    if spec.max_retries == -1 or spec.attempt < spec.max_retries:
        return None
    if spec.max_retries == 0:
        return (
            f"task {spec.name} has max_retries=0, so its returns are not reconstructed; "
            "give it max_retries > 0 (or -1) to allow recomputing lost results"
        )
    return f"task {spec.name} has no retries left (max_retries={spec.max_retries}, {spec.attempt + 1} attempts made)"
