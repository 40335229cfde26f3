"""The RPCs other processes make to a core worker: as an object's owner (GetObject, borrower
updates, generator items, reference snapshots) and as a worker (PushTask, CancelTask, Exit)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from distcore._private import protocol as p

if TYPE_CHECKING:
    from distcore._private.core_worker.core_worker import CoreWorker


class OwnerService:
    """RPCs other processes make to this process as an owner or a worker."""

    def __init__(self, core: CoreWorker) -> None:
        self.core = core

    async def rpc_GetObject(self, req: p.GetObject) -> p.ObjectStatus:
        core = self.core
        if req.lost_node:  # the requester found no copy there: recover it, then answer
            core.lineage.on_copy_lost(req.object_id, req.lost_node)
        obj = core.memory.get(req.object_id)
        if obj is None:
            if core.refs.get(req.object_id) is None or core.refs.was_freed(req.object_id):
                return p.ObjectStatus(False, freed=True)
            obj = await core.memory.wait(req.object_id, req.timeout)
            if obj is None:
                return p.ObjectStatus(False)
        node_address = None
        if obj.plasma_node:
            node_address = await core.node_address_of(obj.plasma_node)
        return p.ObjectStatus(True, obj.value, obj.plasma_node, node_address, obj.size)

    async def rpc_GetObjectRefs(self, _: None) -> Any:
        """A snapshot of this process's reference table (for ``list_objects``)."""
        from distcore._private.core_worker.ref_table import snapshot

        return snapshot(self.core)

    async def rpc_UpdateBorrowers(self, req: p.UpdateBorrowers) -> None:
        refs = self.core.refs
        for object_id in req.add:
            refs.add_borrower(object_id, req.borrower)
        for object_id in req.remove:
            refs.remove_borrower(object_id, req.borrower.worker_id)

    async def rpc_ReportGeneratorItem(self, item: p.GeneratorItem) -> None:
        self.core.submitter.on_generator_item(item)

    def push_now(self, req: p.PushTask, direct: Any) -> bool:
        """``PushTask`` over the framed transport, without an asyncio Task (``Executor.push_now``)."""
        executor = self.core.executor
        return executor is not None and executor.push_now(req, direct)

    async def rpc_PushTask(self, req: p.PushTask) -> p.TaskReply:
        if self.core.executor is None:
            raise RuntimeError("this process does not execute tasks (it is a driver)")
        return await self.core.executor.push(req)

    async def rpc_CancelTask(self, req: p.CancelTask) -> None:
        if self.core.executor is not None:
            self.core.executor.cancel(req)

    async def rpc_OwnsObjects(self, _: None) -> bool:
        """Asked before an idle worker is retired: its owned objects would be lost."""
        return self.core.refs.owns_objects_in_use()

    async def rpc_Exit(self, req: p.ExitWorker) -> None:
        if self.core.executor is not None:
            self.core.executor.exit(req)
        elif req.force:
            os._exit(1)
        else:
            sys.exit(0)
