"""Moving values in and out of the node's shared-memory store.

Writers reserve room through the node manager, fill the segment themselves
and seal it; readers ask the node manager where the object is and map it
read-only, so large buffers are never copied on the same node.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distcore._private import protocol as p
from distcore._private.object_store.recycle import MIN_BYTES as RECYCLE_MIN_BYTES
from distcore._private.object_store.shm import create_segment, open_segment
from distcore._private.object_store.writer_maps import MAPPINGS
from distcore._private.rpc import RpcClient, RpcUnavailable
from distcore._private.serialization import SerializedObject, deserialize

# Values up to this size travel inline (in RPC messages); larger ones go to
# the shared-memory store.
INLINE_MAX_BYTES = 100 * 1024


async def write_to_store(
    node: RpcClient, object_id: str, serialized: SerializedObject, owner: p.Address | None, pinned: bool = True
) -> None:
    """Reserve, fill and seal one object in the local node's store.

    Raises ``ConnectionError`` when the node manager is gone (the cluster
    stopped or crashed) and ``ObjectStoreFullError`` when room cannot be made.
    """
    try:
        name, recycled = await node.call(
            "NodeManager", "CreateObject", p.CreateObject(object_id, serialized.total_size, recycle=True)
        )
        try:
            # Off the io loop: a large copy must not stall every other RPC.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _fill, name, serialized, recycled)
            MAPPINGS.schedule_sweep(loop)  # kept mappings are unmapped once idle
        except BaseException:
            # Give the reservation back (and remove the partial segment).
            await node.call("NodeManager", "FreeObjects", [object_id])
            raise
        await node.call("NodeManager", "SealObject", p.SealObject(object_id, owner, pinned))
    except RpcUnavailable:
        raise ConnectionError(node_gone_message(node.address, f"store object {object_id}")) from None


def node_gone_message(address: str, action: str) -> str:
    """The error text for an unreachable local node manager."""
    return (
        f"Cannot {action}: this process's node manager at {address} is unreachable, so the distcore "
        "cluster is gone (it was stopped or crashed). Objects do not outlive their cluster; call "
        "distcore.shutdown() and distcore.init() to start again."
    )


def _fill(name: str, serialized: SerializedObject, recycled: bool = False) -> None:
    if recycled:
        # A recycled segment's pages exist: memcpy into them, through this
        # process's mapping of the file when it wrote it before
        # (``object_store/recycle.py``, ``object_store/writer_maps.py``).
        MAPPINGS.write(name, serialized.total_size, serialized.chunks())
        return
    if serialized.total_size >= RECYCLE_MIN_BYTES:
        # A new segment this process may get back recycled: write it through a kept mapping.
        MAPPINGS.write_new(name, serialized.total_size, serialized.chunks())
        return
    # A new segment: pwrite spares the kernel zeroing the pages first (``shm.py``).
    with create_segment(name, serialized.total_size) as seg:
        for offset, chunk in serialized.chunks():
            seg.write(chunk, offset)


def read_segment(name: str) -> Any:
    """Deserialize a sealed segment zero-copy (arrays stay views into it)."""
    seg = open_segment(name)
    return deserialize(seg.buffer)
