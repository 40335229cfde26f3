"""Moving objects between nodes: a node manager pulls what its node lacks.

A reader whose object lives on another node asks its own node manager
(``NodeManager.PullObject``); that node manager streams the object from the
holder's node manager (``NodeManager.ReadObjectChunks``, server streaming)
in chunks of :data:`DEFAULT_CHUNK_BYTES`, writing each chunk straight into
a new segment of its store. Neither side ever holds more than a few chunks
in memory: the sender ``pread``s the chunk it is about to send from the
segment file (no mapping, so its resident memory does not grow with the
object) and gRPC flow control keeps it from running ahead of the receiver,
which ``pwrite``s each chunk into shared memory as it arrives.

The copy is sealed *secondary*: unpinned, so the store may evict it when it
needs room (the owner's primary copy stays where it was put). Concurrent
pulls of one object on one node share one transfer: later callers wait for
the first one's result. A failed pull leaves nothing behind (the partial
segment and its reservation go) and raises :class:`ObjectLostError` naming
both nodes.

Call order (receiver): ``PullObject`` -> :meth:`ObjectTransfer.pull` ->
``store.create`` on the first chunk -> ``pwrite`` per chunk -> ``store.seal``.
Sender: :meth:`ObjectTransfer.read_chunks` marks the object in use (so it is
neither spilled nor evicted mid-stream), streams it, and releases it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from distcore._private import protocol as p
from distcore._private.object_store import shm
from distcore._private.object_store.store import LocalObjectStore
from distcore._private.rpc import ClientPool, RpcError
from distcore.exceptions import ObjectLostError, ObjectStoreFullError

logger = logging.getLogger(__name__)

#: Bytes per streamed message. 8 MiB measured best on loopback (see
#: ``tools/bench/transfer_bench.py``); override for experiments with the env var.
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
CHUNK_BYTES_ENV = "DISTCORE_TRANSFER_CHUNK_BYTES"
_MIN_CHUNK_BYTES = 64 * 1024


# ------------------------------------------------------------------ messages


@dataclass(slots=True)
class PullObject:
    """Ask a node manager to make ``object_id`` local, copying it from ``from_node``.

    Reply: ``(segment name, size)`` of the local copy.
    """

    object_id: str
    from_node: str  # node id of a node holding a copy
    size: int = 0  # expected size in bytes, when the caller knows it (0: unknown)
    from_address: str | None = None  # that node's manager address, when the caller knows it


@dataclass(slots=True)
class ReadChunks:
    """Stream ``object_id`` from this node in chunks of ``chunk_bytes``."""

    object_id: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    requester: str = ""  # node id of the puller (for errors and logs)


@dataclass(slots=True)
class ObjectChunk:
    offset: int
    total: int  # the object's size; the same in every chunk
    data: bytes


def chunk_bytes_from_env() -> int:
    """The chunk size: ``DISTCORE_TRANSFER_CHUNK_BYTES`` if set, else the default."""
    raw = os.environ.get(CHUNK_BYTES_ENV)
    if not raw:
        return DEFAULT_CHUNK_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{CHUNK_BYTES_ENV} must be a number of bytes, got {raw!r}") from None
    if value < _MIN_CHUNK_BYTES:
        raise ValueError(f"{CHUNK_BYTES_ENV} must be at least {_MIN_CHUNK_BYTES} bytes, got {value}")
    return value


# ------------------------------------------------------------------ the transfer service


class ObjectTransfer:
    """Both halves of node-to-node transfer for one node manager.

    ``view`` returns the node manager's current cluster view and ``refresh``
    fetches a fresh one (used when a holder is not in the view yet).
    """

    def __init__(
        self,
        store: LocalObjectStore,
        clients: ClientPool,
        node_id: str,
        view: Callable[[], p.ClusterView | None],
        refresh: Callable[[], Awaitable[None]] | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.store = store
        self.clients = clients
        self.node_id = node_id
        self._view = view
        self._refresh = refresh
        self.chunk_bytes = chunk_bytes or chunk_bytes_from_env()
        self._inflight: dict[str, asyncio.Task] = {}
        self.counters = {
            "transfer_pulls": 0,  # transfers started here (one per object, however many waited)
            "transfer_pulls_joined": 0,  # pull requests served by a transfer already in flight
            "transfer_bytes_in": 0,
            "transfer_bytes_out": 0,
            "transfer_failures": 0,
        }

    def stats(self) -> dict[str, int]:
        return {**self.counters, "transfer_in_flight": len(self._inflight)}

    # ---- receiver ------------------------------------------------------

    async def pull(self, req: PullObject) -> tuple[str, int]:
        """Make the object local; return ``(segment name, size)``.

        Already here (in memory or spilled): returned (restored) at once.
        Being pulled already: wait for that transfer. Else start one.
        """
        found = await asyncio.to_thread(self.store.ensure_local, req.object_id)
        if found is not None:
            return found
        task = self._inflight.get(req.object_id)
        if task is None:
            task = asyncio.ensure_future(self._transfer(req))
            self._inflight[req.object_id] = task
            task.add_done_callback(lambda t, oid=req.object_id: self._done(oid, t))
        else:
            self.counters["transfer_pulls_joined"] += 1
        # One caller giving up (its get timed out) must not cancel the others' transfer.
        return await asyncio.shield(task)

    def _done(self, object_id: str, task: asyncio.Task) -> None:
        if self._inflight.get(object_id) is task:
            del self._inflight[object_id]
        if not task.cancelled() and task.exception() is not None:  # retrieved, so never "unhandled"
            self.counters["transfer_failures"] += 1

    async def _holder_address(self, req: PullObject) -> str | None:
        if req.from_address:
            return req.from_address
        for attempt in range(2):
            view = self._view()
            node = view.nodes.get(req.from_node) if view is not None else None
            if node is not None:
                return node.address if node.alive else None
            if attempt == 0 and self._refresh is not None:
                await self._refresh()
        return None

    async def _transfer(self, req: PullObject) -> tuple[str, int]:
        oid, holder = req.object_id, req.from_node
        route = f"from node {holder[:8]} to node {self.node_id[:8]}"
        if holder == self.node_id:
            raise ObjectLostError(oid, "", f"Object {oid} is lost: node {holder[:8]} should hold it but no longer does")
        address = await self._holder_address(req)
        if address is None:
            raise ObjectLostError(
                oid, "", f"Object {oid} is lost: node {holder[:8]} held its only known copy and has left the cluster "
                f"(could not pull it {route})",
            )
        self.counters["transfer_pulls"] += 1
        stream = self.clients.get(address).stream(
            "NodeManager", "ReadObjectChunks", ReadChunks(oid, self.chunk_bytes, self.node_id)
        )
        seg: shm.WritableSegment | None = None
        name, total, received = "", 0, 0
        try:
            async for chunk in stream:
                if seg is None:
                    total = chunk.total
                    if req.size and req.size != total:
                        logger.warning("object %s: expected %d bytes, node %s has %d", oid, req.size, holder[:8], total)
                    name = await asyncio.to_thread(self.store.create, oid, total)
                    seg = shm.create_segment(name, total)
                if chunk.offset != received or received + len(chunk.data) > total:
                    raise OSError(f"got a chunk at offset {chunk.offset} of {len(chunk.data)} bytes, expected offset {received}")
                if chunk.data:
                    await asyncio.to_thread(seg.write, chunk.data, chunk.offset)
                received += len(chunk.data)
                self.counters["transfer_bytes_in"] += len(chunk.data)
            if seg is None or received != total:
                raise OSError(f"the stream ended after {received} of {total} bytes")
            seg.close()
            await asyncio.to_thread(self.store.seal, oid, False)
        except BaseException as exc:
            if seg is not None:
                seg.close()
                await asyncio.to_thread(self._abort, oid)
            if isinstance(exc, (ObjectStoreFullError, asyncio.CancelledError)) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, ObjectLostError):  # the holder no longer has it
                raise ObjectLostError(oid, "", f"{exc.message} (could not pull it {route})") from None
            if isinstance(exc, KeyError):
                raise ObjectLostError(oid, "", f"Object {oid} was freed while it was pulled {route}") from None
            raise ObjectLostError(
                oid, "", f"Object {oid} could not be pulled {route} (holder at {address}): {exc}"
            ) from exc
        finally:
            await _aclose(stream)
        logger.debug("pulled object %s (%d bytes) %s", oid, total, route)
        return name, total

    def _abort(self, object_id: str) -> None:
        try:
            self.store.abort(object_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile, or the store closed
            pass

    # ---- sender ---------------------------------------------------------

    async def read_chunks(self, req: ReadChunks) -> AsyncIterator[ObjectChunk]:
        """Stream one object of this node's store (restored first if spilled)."""
        oid = req.object_id
        chunk_bytes = max(_MIN_CHUNK_BYTES, req.chunk_bytes or self.chunk_bytes)
        found = await asyncio.to_thread(self.store.ensure_local, oid, in_use=True)
        if found is None:
            raise ObjectLostError(oid, "", f"Object {oid} is lost: node {self.node_id[:8]} no longer holds it")
        name, size = found
        try:
            fd = os.open(shm.segment_path(name), os.O_RDONLY)
            try:
                offset = 0
                while True:
                    n = min(chunk_bytes, size - offset)
                    data = await asyncio.to_thread(_pread_exact, fd, n, offset) if n else b""
                    yield ObjectChunk(offset, size, data)
                    self.counters["transfer_bytes_out"] += n
                    offset += n
                    if offset >= size:
                        break
            finally:
                os.close(fd)
        finally:
            try:
                self.store.release(oid)
            except Exception:  # noqa: BLE001 - the store closed (node shutting down)
                pass


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts, done = [data], len(data)
    while done < n:
        more = os.pread(fd, n - done, offset + done)
        if not more:
            raise OSError(f"segment truncated: read {done} of {n} bytes at offset {offset}")
        parts.append(more)
        done += len(more)
    return b"".join(parts)


async def _aclose(stream: AsyncIterator) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()
