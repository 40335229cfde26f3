"""Moving objects between nodes: a node manager pulls what its node lacks.

A reader whose object lives on another node asks its own node manager
(``NodeManager.PullObject``); that node manager streams the object from the
holder's node manager (``NodeManager.ReadObjectChunks``, server streaming)
in chunks of :data:`DEFAULT_CHUNK_BYTES`, writing each chunk straight into
a new segment of its store. Memory stays bounded whatever the object's size:

- the sender ``pread``s only the chunk it sends next from the segment file
  (no mapping, so its resident memory does not grow with the object);
- the receiver asks for the object in ranges of :data:`RANGE_CHUNKS` chunks,
  one stream per range and :data:`RANGES_IN_FLIGHT` streams at a time, so at
  most that many ranges are ever buffered (gRPC alone would read one long
  stream far ahead of a slower consumer);
- each chunk is ``pwrite``-n into shared memory as it arrives (a thread
  writes one chunk while the next arrives).

The copy is sealed *secondary*: unpinned, so the store may evict it when it
needs room (the owner's primary copy stays where it was put). Concurrent
pulls of one object on one node share one transfer: later callers wait for
the first one's result. A failed pull leaves nothing behind (the partial
segment and its reservation go) and raises :class:`ObjectLostError` naming
both nodes (:class:`ObjectStoreFullError` when the receiver has no room).

Call order (receiver): ``PullObject`` -> :meth:`ObjectTransfer.pull` ->
first range's first chunk -> ``store.create`` -> ``pwrite`` per chunk, the
other ranges streamed meanwhile -> ``store.seal(pinned=False)``. Sender:
:meth:`ObjectTransfer.read_chunks` marks the object in use (so it is neither
spilled nor evicted mid-stream), streams the range, and releases it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from distcore._private import protocol as p
from distcore._private.object_store import shm
from distcore._private.object_store.store import LocalObjectStore
from distcore._private.rpc import ClientPool, RpcClient
from distcore.exceptions import ObjectLostError, ObjectStoreFullError

#: Seconds a pull keeps looking up a holder node its cluster view does not know yet.
UNKNOWN_NODE_WAIT_S = 5.0

logger = logging.getLogger(__name__)

#: Bytes per streamed message (see ``tools/bench/transfer_bench.py``);
#: ``DISTCORE_TRANSFER_CHUNK_BYTES`` overrides it, for experiments.
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
CHUNK_BYTES_ENV = "DISTCORE_TRANSFER_CHUNK_BYTES"
_MIN_CHUNK_BYTES = 64 * 1024
#: An object is asked for in ranges of this many chunks, one stream each, with
#: :data:`RANGES_IN_FLIGHT` streams open at a time. gRPC reads a stream ahead
#: of its consumer as far as HTTP/2 flow control lets it (a window that grows
#: with the measured bandwidth), so one stream for a whole object buffers tens
#: of chunks; asking range by range caps what can be in flight.
RANGE_CHUNKS = 2
RANGES_IN_FLIGHT = 2
# Chunks being written into shared memory while the next ones arrive.
_WRITES_IN_FLIGHT = 2


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
    """Stream bytes ``[offset, offset + length)`` of ``object_id`` in chunks of ``chunk_bytes``."""

    object_id: str
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    requester: str = ""  # node id of the puller (for errors and logs)
    offset: int = 0
    length: int = 0  # 0: to the end of the object


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
        self._inflight: dict[str, asyncio.Task[tuple[str, int]]] = {}
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
            task.add_done_callback(functools.partial(self._done, req.object_id))
        else:
            self.counters["transfer_pulls_joined"] += 1
        # One caller giving up (its get timed out) must not cancel the others' transfer.
        return await asyncio.shield(task)

    def _done(self, object_id: str, task: asyncio.Task[tuple[str, int]]) -> None:
        if self._inflight.get(object_id) is task:
            del self._inflight[object_id]
        if not task.cancelled() and task.exception() is not None:  # retrieved, so never "unhandled"
            self.counters["transfer_failures"] += 1

    async def _holder_address(self, req: PullObject) -> str | None:
        """The holder's address; None once it is known dead. A node this view does not know yet
        (it just joined, or the head just restarted) is looked up again for UNKNOWN_NODE_WAIT_S."""
        if req.from_address:
            return req.from_address
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNKNOWN_NODE_WAIT_S
        while True:
            view = self._view()
            node = view.nodes.get(req.from_node) if view is not None else None
            if node is not None:
                return node.address if node.alive else None
            if self._refresh is None or loop.time() >= deadline:
                return None
            await self._refresh()
            view = self._view()
            if view is None or req.from_node not in view.nodes:
                await asyncio.sleep(0.25)

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
        receive = _Receive(self, oid, self.clients.get(address))
        try:
            name, total = await receive.run()
            await asyncio.to_thread(self.store.seal, oid, False)
        except BaseException as exc:
            if receive.writer is not None:
                receive.writer.close()
            if receive.reserved:
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
        if req.size and req.size != total:
            logger.warning("object %s: the owner said %d bytes, node %s sent %d", oid, req.size, holder[:8], total)
        logger.debug("pulled object %s (%d bytes) %s", oid, total, route)
        return name, total

    def _abort(self, object_id: str) -> None:
        try:
            self.store.abort(object_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile, or the store closed
            pass

    # ---- sender ---------------------------------------------------------

    async def read_chunks(self, req: ReadChunks) -> AsyncIterator[ObjectChunk]:
        """Stream bytes ``[offset, offset + length)`` of an object of this node's store.

        A spilled object is restored first; it stays in use (neither spilled
        nor evicted) until the stream ends. At least one chunk is sent, so
        the receiver always learns the object's size.
        """
        oid = req.object_id
        chunk_bytes = max(_MIN_CHUNK_BYTES, req.chunk_bytes or self.chunk_bytes)
        found = await asyncio.to_thread(self.store.ensure_local, oid, in_use=True)
        if found is None:
            raise ObjectLostError(oid, "", f"Object {oid} is lost: node {self.node_id[:8]} no longer holds it")
        name, size = found
        try:
            offset = min(max(0, req.offset), size)
            end = size if req.length <= 0 else min(size, offset + req.length)
            fd = os.open(shm.segment_path(name), os.O_RDONLY)
            # Read the next chunk while gRPC sends this one (two chunks held at most).
            ahead: concurrent.futures.Future[bytes] | None = None
            try:
                ahead = _io_pool().submit(_pread_exact, fd, min(chunk_bytes, end - offset), offset)
                while ahead is not None:
                    data = await asyncio.wrap_future(ahead)
                    ahead = None
                    n = len(data)
                    if offset + n < end:
                        ahead = _io_pool().submit(_pread_exact, fd, min(chunk_bytes, end - offset - n), offset + n)
                    yield ObjectChunk(offset, size, data)
                    self.counters["transfer_bytes_out"] += n
                    offset += n
                    if offset >= end:
                        break
            finally:
                if ahead is not None:
                    concurrent.futures.wait([ahead])  # it reads from fd
                os.close(fd)
        finally:
            try:
                self.store.release(oid)
            except Exception:  # noqa: BLE001 - the store closed (node shutting down)
                pass


class _Receive:
    """One pull: range streams from the holder, chunks written into a new segment.

    The first range's first chunk says the object's size; then the segment
    is reserved and created, and :data:`RANGES_IN_FLIGHT` loops take the
    following ranges in order until the object is covered.
    """

    def __init__(self, transfer: ObjectTransfer, object_id: str, client: RpcClient) -> None:
        self.transfer = transfer
        self.object_id = object_id
        self.client = client
        self.chunk_bytes = transfer.chunk_bytes
        self.range_bytes = transfer.chunk_bytes * RANGE_CHUNKS
        self.reserved = False  # room reserved in the store: undo on failure
        self.writer: _ChunkWriter | None = None
        self.total = 0
        self.received = 0
        self._next = 0

    def _open(self, offset: int, length: int) -> AsyncIterator[ObjectChunk]:
        request = ReadChunks(self.object_id, self.chunk_bytes, self.transfer.node_id, offset, length)
        return self.client.stream("NodeManager", "ReadObjectChunks", request)

    async def run(self) -> tuple[str, int]:
        first = self._open(0, self.range_bytes)
        try:
            chunk = await anext(first)
        except StopAsyncIteration:
            await _aclose(first)
            raise OSError("the holder sent no data") from None
        except BaseException:
            await _aclose(first)
            raise
        self.total = chunk.total
        name = await asyncio.to_thread(self.transfer.store.create, self.object_id, self.total)
        self.reserved = True
        self.writer = _ChunkWriter(shm.create_segment(name, self.total))
        self._next = min(self.range_bytes, self.total)
        loops = [asyncio.ensure_future(self._consume(first, 0, self._next, chunk))]
        loops += [asyncio.ensure_future(self._ranges()) for _ in range(RANGES_IN_FLIGHT - 1)]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
            for loop in done:
                loop.result()  # the first failure, if any
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        await self.writer.drain()
        if self.received != self.total:
            raise OSError(f"received {self.received} of {self.total} bytes")
        self.writer.close()
        return name, self.total

    async def _ranges(self) -> None:
        while self._next < self.total:
            start = self._next
            end = self._next = min(self.total, start + self.range_bytes)
            await self._consume(self._open(start, end - start), start, end, None)

    async def _consume(
        self, stream: AsyncIterator[ObjectChunk], start: int, end: int, first: ObjectChunk | None
    ) -> None:
        assert self.writer is not None
        expected = start
        try:
            if first is not None:
                expected = await self._write(first, expected, end)
            async for chunk in stream:
                expected = await self._write(chunk, expected, end)
        finally:
            await _aclose(stream)
        if expected != end:
            raise OSError(f"the stream of bytes {start}-{end} ended at {expected}")
        if first is not None:
            await self._ranges()

    async def _write(self, chunk: ObjectChunk, expected: int, end: int) -> int:
        n = len(chunk.data)
        if chunk.offset != expected or expected + n > end or chunk.total != self.total:
            raise OSError(
                f"got {n} bytes at offset {chunk.offset} of {chunk.total}, expected offset {expected} of {self.total}"
            )
        assert self.writer is not None
        await self.writer.write(chunk.data, chunk.offset)
        self.received += n
        self.transfer.counters["transfer_bytes_in"] += n
        return expected + n


class _ChunkWriter:
    """Fills a new segment off the event loop, overlapping the write of one
    chunk with the receipt of the next (at most ``depth`` chunks held)."""

    def __init__(self, seg: shm.WritableSegment, depth: int = _WRITES_IN_FLIGHT) -> None:
        self._seg = seg
        self._depth = depth
        self._pending: list[concurrent.futures.Future[int]] = []

    async def write(self, data: bytes, offset: int) -> None:
        while len(self._pending) >= self._depth:
            await self._wait_oldest()
        if data:
            self._pending.append(_io_pool().submit(self._seg.write, data, offset))

    async def drain(self) -> None:
        while self._pending:
            await self._wait_oldest()

    async def _wait_oldest(self) -> None:
        # A write leaves the list only once it finished: close() must wait for
        # every write still running, even when its waiter was cancelled.
        oldest = self._pending[0]
        try:
            await asyncio.wrap_future(oldest)
        finally:
            if oldest.done() and oldest in self._pending:
                self._pending.remove(oldest)

    def close(self) -> None:
        """Wait for writes still running (they use the segment's fd), then close it."""
        concurrent.futures.wait(self._pending)
        self._pending.clear()
        self._seg.close()


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _io_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="distcore-transfer")
    return _pool


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    if n == 0:
        return b""
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


async def _aclose(stream: AsyncIterator[object]) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()
