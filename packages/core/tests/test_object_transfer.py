"""Tests for distcore._private.node_manager.object_transfer: two node stores in one process.

Each test runs two :class:`ObjectTransfer` services (a holder and a puller)
behind real gRPC servers on loopback, with small chunks so that an object of
about a megabyte crosses in many chunks and several range streams.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from distcore._private import protocol as p
from distcore._private.node_manager import object_transfer as ot
from distcore._private.node_manager.object_transfer import ObjectTransfer, PullObject, ReadChunks
from distcore._private.object_store import shm
from distcore._private.object_store.store import LocalObjectStore
from distcore._private.rpc import ClientPool, RpcServer
from distcore.exceptions import ObjectLostError, ObjectStoreFullError

pytestmark = pytest.mark.timeout(60)

TOKEN = "t0ken"
CHUNK = 64 * 1024  # the smallest chunk allowed: many chunks per object
HOLDER, PULLER = "b" * 28, "a" * 28


@pytest.fixture
def sessions() -> Iterator[tuple[str, str]]:
    names = (f"t{uuid.uuid4().hex[:12]}", f"t{uuid.uuid4().hex[:12]}")
    yield names
    leftover = [s for n in names for s in shm.list_session_segments(n)]
    for n in names:
        shm.cleanup_session(n)
    assert leftover == [], f"test left segments behind: {leftover}"


class Pair:
    """A holder node and a puller node, each a store + transfer service + server."""

    def __init__(self, sessions: tuple[str, str], tmp: Path, puller_capacity: int, holder_capacity: int) -> None:
        self.holder_store = LocalObjectStore(sessions[0], holder_capacity, str(tmp / "spill-b"))
        self.puller_store = LocalObjectStore(sessions[1], puller_capacity, str(tmp / "spill-a"))
        self.view = p.ClusterView(nodes={})
        self.clients = ClientPool(TOKEN)
        self.holder = ObjectTransfer(self.holder_store, ClientPool(TOKEN), HOLDER, lambda: self.view, chunk_bytes=CHUNK)
        self.puller = ObjectTransfer(self.puller_store, self.clients, PULLER, lambda: self.view, chunk_bytes=CHUNK)
        self.server = RpcServer(TOKEN)
        self.server.add_service("NodeManager", _Service(self.holder))

    async def start(self) -> None:
        port = await self.server.start()
        self.view.nodes[HOLDER] = p.NodeView(HOLDER, f"127.0.0.1:{port}", {}, {}, True)

    async def close(self) -> None:
        await self.clients.close()
        await self.server.stop(0)
        self.holder_store.close()
        self.puller_store.close()

    def pull(self, object_id: str, from_node: str = HOLDER, size: int = 0):
        return self.puller.pull(PullObject(object_id, from_node, size))


class _Service:
    def __init__(self, transfer: ObjectTransfer) -> None:
        self.transfer = transfer

    def stream_ReadObjectChunks(self, req: ReadChunks):
        return self.transfer.read_chunks(req)


@asynccontextmanager
async def pair(sessions, tmp_path, puller_capacity: int = 64 << 20, holder_capacity: int = 64 << 20):
    nodes = Pair(sessions, tmp_path, puller_capacity, holder_capacity)
    await nodes.start()
    try:
        yield nodes
    finally:
        await nodes.close()


async def _until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _read(name: str) -> bytes:
    with shm.open_segment(name) as seg:
        return bytes(seg.buffer)


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 4 * CHUNK, 17 * CHUNK + 123])
def test_pull_copies_the_object_chunk_by_chunk_as_a_secondary_copy(sessions, tmp_path, size):
    data = os.urandom(size)

    async def go():
        async with pair(sessions, tmp_path) as nodes:
            nodes.holder_store.put_from_bytes("ab01", data)
            name, got_size = await nodes.pull("ab01", size=size)
            assert got_size == size
            assert _read(name) == data
            info = nodes.puller_store.info("ab01")
            assert info is not None and not info.pinned  # evictable: the primary stays on the holder
            assert nodes.puller.stats()["transfer_bytes_in"] == size
            assert nodes.holder.stats()["transfer_bytes_out"] == size
            # Local now: a second pull moves nothing.
            assert (await nodes.pull("ab01"))[0] == name
            assert nodes.puller.stats()["transfer_pulls"] == 1
            assert nodes.holder_store.info("ab01").in_use == 0  # the sender released it

    asyncio.run(go())


def test_concurrent_pulls_share_one_transfer(sessions, tmp_path):
    data = os.urandom(20 * CHUNK)

    async def go():
        async with pair(sessions, tmp_path) as nodes:
            nodes.holder_store.put_from_bytes("ab02", data)
            results = await asyncio.gather(*(nodes.pull("ab02") for _ in range(5)))
            assert len(set(results)) == 1
            stats = nodes.puller.stats()
            assert (stats["transfer_pulls"], stats["transfer_pulls_joined"], stats["transfer_in_flight"]) == (1, 4, 0)
            assert nodes.holder.stats()["transfer_bytes_out"] == len(data)
            assert _read(results[0][0]) == data

    asyncio.run(go())


def test_a_waiter_giving_up_does_not_cancel_the_transfer(sessions, tmp_path):
    data = os.urandom(30 * CHUNK)

    async def go():
        async with pair(sessions, tmp_path) as nodes:
            nodes.holder_store.put_from_bytes("ab03", data)
            first = asyncio.ensure_future(nodes.pull("ab03"))
            second = asyncio.ensure_future(nodes.pull("ab03"))
            await asyncio.sleep(0)
            first.cancel()
            name, _ = await second
            assert _read(name) == data
            assert nodes.puller.stats()["transfer_pulls"] == 1

    asyncio.run(go())


def test_a_spilled_object_is_restored_and_sent(sessions, tmp_path):
    data = os.urandom(10 * CHUNK)

    async def go():
        async with pair(sessions, tmp_path, holder_capacity=15 * CHUNK) as nodes:
            nodes.holder_store.put_from_bytes("ab04", data)
            nodes.holder_store.put_from_bytes("ab14", os.urandom(10 * CHUNK))  # no room for both: ab04 is spilled
            assert nodes.holder_store.info("ab04").spill_path is not None
            name, _ = await nodes.pull("ab04")
            assert _read(name) == data

    asyncio.run(go())


def test_object_missing_on_the_holder_is_lost_naming_both_nodes(sessions, tmp_path):
    async def go():
        async with pair(sessions, tmp_path) as nodes:
            with pytest.raises(ObjectLostError) as info:
                await nodes.pull("ab05")
            text = str(info.value)
            assert "ab05" in text and HOLDER[:8] in text and PULLER[:8] in text and "no longer holds it" in text
            assert nodes.puller_store.info("ab05") is None
            assert nodes.puller.stats()["transfer_failures"] == 1

    asyncio.run(go())


def test_unreachable_holder_is_lost_and_leaves_nothing(sessions, tmp_path):
    async def go():
        async with pair(sessions, tmp_path) as nodes:
            await nodes.server.stop(0)
            with pytest.raises(ObjectLostError) as info:
                await nodes.pull("ab06")
            text = str(info.value)
            assert "could not be pulled" in text and HOLDER[:8] in text and PULLER[:8] in text
            assert nodes.puller_store.info("ab06") is None

    asyncio.run(go())


def test_holder_gone_from_the_cluster_is_lost(sessions, tmp_path):
    async def go():
        async with pair(sessions, tmp_path) as nodes:
            with pytest.raises(ObjectLostError, match="has left the cluster"):
                await nodes.pull("ab07", from_node="c" * 28)
            nodes.view.nodes[HOLDER].alive = False
            with pytest.raises(ObjectLostError, match="has left the cluster"):
                await nodes.pull("ab07")

    asyncio.run(go())


def test_no_room_on_the_puller_raises_store_full_and_leaves_nothing(sessions, tmp_path):
    data = os.urandom(8 * CHUNK)

    async def go():
        async with pair(sessions, tmp_path, puller_capacity=4 * CHUNK) as nodes:
            nodes.holder_store.put_from_bytes("ab08", data)
            with pytest.raises(ObjectStoreFullError):
                await nodes.pull("ab08")
            assert nodes.puller_store.info("ab08") is None
            await _until(lambda: nodes.holder_store.info("ab08").in_use == 0)  # the cancelled stream let go of it

    asyncio.run(go())


def test_read_chunks_streams_a_byte_range(sessions, tmp_path):
    data = os.urandom(5 * CHUNK + 7)

    async def go():
        async with pair(sessions, tmp_path) as nodes:
            nodes.holder_store.put_from_bytes("ab09", data)
            chunks = [c async for c in nodes.holder.read_chunks(ReadChunks("ab09", CHUNK, offset=CHUNK + 5, length=2 * CHUNK))]
            assert [c.offset for c in chunks] == [CHUNK + 5, 2 * CHUNK + 5]
            assert all(c.total == len(data) for c in chunks)
            assert b"".join(c.data for c in chunks) == data[CHUNK + 5 : 3 * CHUNK + 5]

    asyncio.run(go())


def test_chunk_size_from_the_environment(monkeypatch):
    monkeypatch.delenv(ot.CHUNK_BYTES_ENV, raising=False)
    assert ot.chunk_bytes_from_env() == ot.DEFAULT_CHUNK_BYTES
    monkeypatch.setenv(ot.CHUNK_BYTES_ENV, str(1 << 20))
    assert ot.chunk_bytes_from_env() == 1 << 20
    monkeypatch.setenv(ot.CHUNK_BYTES_ENV, "12")
    with pytest.raises(ValueError, match="at least"):
        ot.chunk_bytes_from_env()
    monkeypatch.setenv(ot.CHUNK_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match="number of bytes"):
        ot.chunk_bytes_from_env()
