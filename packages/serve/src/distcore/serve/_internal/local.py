"""In-process replicas: a router in the same process as a replica calls it without sockets or pickling.

The proxy hosts its app's single ingress replica this way (see ``ProxyActor.host_replica``),
so an HTTP request costs one process instead of two. :class:`LocalConnection`
speaks the same frame protocol as ``wire.ClientConnection``, minus the bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from distcore.serve._internal import wire

# replica_id -> ReplicaServer running in this process
LOCAL_SERVERS: dict[str, Any] = {}


class _ServerSide:
    """What the replica server sees: ``send`` delivers straight to the client's waiters."""

    def __init__(self, client: LocalConnection) -> None:
        self.client = client
        self.tasks: dict[int, asyncio.Task] = {}
        self.closed = asyncio.get_running_loop().create_future()

    def send(self, obj: Any) -> None:
        self.client.on_message(obj)


class LocalConnection(wire.ClientConnection):
    def __init__(self, server: Any) -> None:
        super().__init__()
        self.server = server
        self.peer = _ServerSide(self)

    def send(self, obj: Any) -> None:
        self.server.on_message(self.peer, obj)

    def close(self) -> None:
        for task in list(self.peer.tasks.values()):
            task.cancel()
        self.lost = True


def local_connection(replica_id: str) -> LocalConnection | None:
    server = LOCAL_SERVERS.get(replica_id)
    if server is None or server.draining_done:
        return None
    return LocalConnection(server)
