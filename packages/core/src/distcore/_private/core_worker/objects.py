"""Moving values in and out of the node's shared-memory store.

Writers reserve room through the node manager, fill the segment themselves
and seal it; readers ask the node manager where the object is and map it
read-only, so large buffers are never copied on the same node.
"""

from __future__ import annotations

from typing import Any

from distcore._private import protocol as p
from distcore._private.object_store.shm import create_segment, open_segment
from distcore._private.rpc import RpcClient
from distcore._private.serialization import SerializedObject, deserialize

# Values up to this size travel inline (in RPC messages); larger ones go to
# the shared-memory store.
INLINE_MAX_BYTES = 100 * 1024


async def write_to_store(
    node: RpcClient, object_id: str, serialized: SerializedObject, owner: p.Address | None, pinned: bool = True
) -> None:
    """Reserve, fill and seal one object in the local node's store."""
    name = await node.call("NodeManager", "CreateObject", p.CreateObject(object_id, serialized.total_size))
    _fill(name, serialized)
    await node.call("NodeManager", "SealObject", p.SealObject(object_id, owner, pinned))


def _fill(name: str, serialized: SerializedObject) -> None:
    seg = create_segment(name, serialized.total_size)
    try:
        serialized.write_to(seg.buffer)
    finally:
        seg.close()


def read_segment(name: str) -> Any:
    """Deserialize a sealed segment zero-copy (arrays stay views into it)."""
    seg = open_segment(name)
    return deserialize(seg.buffer)
