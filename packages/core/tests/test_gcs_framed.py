"""Blocking control-store calls over the framed transport (core_worker/framed_blocking.py, gcs_client.py).

A same-node caller's ``gcs_call`` reaches the head on a Unix socket beside its
gRPC port; a head it cannot reach that way, or one that refuses its token, is
called over gRPC, which reports the real error.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

import pytest

import distcore
from distcore._private import worker_state
from distcore._private.core_worker.framed_blocking import BlockingFramedClient
from distcore._private.core_worker.framed_rpc import FramedServer, socket_name
from distcore._private.core_worker.gcs_client import GcsClient, framed_target
from distcore._private.rpc import RpcClient, RpcServer, RpcUnavailable
from distcore.exceptions import AuthenticationError
from distcore.util import placement_group, placement_group_table, remove_placement_group

pytestmark = pytest.mark.timeout(120)


class _Gcs:
    def __init__(self) -> None:
        self.calls = 0

    async def rpc_Echo(self, request):
        self.calls += 1
        return (os.getpid(), request)

    async def rpc_Fail(self, request):
        raise ValueError(f"bad request {request!r}")

    async def rpc_Sleep(self, seconds):
        await asyncio.sleep(seconds)
        return seconds


class _Head:
    """A gRPC server and (optionally) a framed listener for ``_Gcs``, on a loop in a thread."""

    def __init__(self, token: str | None = "tok", framed: bool = True) -> None:
        self.service = _Gcs()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.token = token
        self.framed_server: FramedServer | None = None
        self.address = self._run(self._start(framed))

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self, framed: bool) -> str:
        self.grpc = RpcServer(self.token)
        self.grpc.add_service("Gcs", self.service)
        address = f"127.0.0.1:{await self.grpc.start()}"
        if framed:
            self.framed_server = FramedServer(self.service, self.token, "Gcs")
            assert await self.framed_server.start(address, "gcs")
        return address

    async def _cancel_handlers(self) -> None:
        """Handlers still running (a Sleep its caller gave up on) end before the loop closes."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop_framed(self) -> None:
        if self.framed_server is not None:
            self._run(self.framed_server.stop())
            self.framed_server = None

    def close(self) -> None:
        self.stop_framed()
        self._run(self.grpc.stop(0))
        self._run(self._cancel_handlers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def head():
    h = _Head()
    yield h
    h.close()


def _gcs_client(address: str, token: str | None) -> GcsClient:
    rpc_client = RpcClient(address, token)
    return GcsClient(address, lambda: rpc_client)


def test_blocking_calls_replies_and_errors(head):
    client = BlockingFramedClient(socket_name(head.address, "gcs"), "tok", "Gcs")
    try:
        assert client.call("Echo", {"a": 1}, timeout=10) == (os.getpid(), {"a": 1})
        with pytest.raises(ValueError, match="bad request 3"):
            client.call("Fail", 3, timeout=10)
        with pytest.raises(RuntimeError, match="unknown method Gcs.Nope"):
            client.call("Nope", None, timeout=10)
        # A call past its timeout fails; the next one gets its own reply, not the late one.
        with pytest.raises(TimeoutError):
            client.call("Sleep", 0.5, timeout=0.1)
        assert client.call("Echo", "after", timeout=10) == (os.getpid(), "after")
        assert head.service.calls == 2
    finally:
        client.close()


def test_concurrent_callers_each_get_their_own_reply(head):
    client = BlockingFramedClient(socket_name(head.address, "gcs"), "tok", "Gcs")
    results: dict[int, list] = {}

    def caller(k: int) -> None:
        results[k] = [client.call("Echo", (k, i), timeout=10)[1] for i in range(50)]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert results == {k: [(k, i) for i in range(50)] for k in range(6)}
        assert head.service.calls == 300
    finally:
        client.close()


def test_no_listener_or_wrong_token_means_lookup_error(head):
    nobody = BlockingFramedClient(socket_name(f"127.0.0.1:1-{uuid.uuid4().hex}", "gcs"), "tok", "Gcs")
    with pytest.raises(LookupError):
        nobody.call("Echo", 1, timeout=5)
    wrong = BlockingFramedClient(socket_name(head.address, "gcs"), "not-the-token", "Gcs")
    with pytest.raises(LookupError):  # the server closes the connection: the caller uses gRPC instead
        wrong.call("Echo", 1, timeout=5)
    assert head.service.calls == 0


def test_a_listener_gone_after_answering_is_unavailable(head):
    client = BlockingFramedClient(socket_name(head.address, "gcs"), "tok", "Gcs")
    assert client.call("Echo", 1, timeout=10)[1] == 1
    head.stop_framed()
    with pytest.raises(RpcUnavailable):  # the idle connection was closed by the server
        client.call("Echo", 2, timeout=5)
    with pytest.raises(RpcUnavailable):  # and nobody listens any more: the retries of gcs_client go on
        client.call("Echo", 3, timeout=5)
    client.close()


def test_gcs_client_answers_over_grpc_while_the_framed_listener_is_gone(head):
    gcs = _gcs_client(head.address, "tok")
    assert gcs.call_sync("Gcs", "Echo", 1, timeout=10)[1] == 1
    head.stop_framed()  # e.g. a restarted head that could not listen framed
    assert gcs.call_sync("Gcs", "Echo", 2, timeout=10)[1] == 2  # one retry, then gRPC
    assert gcs.call_sync("Gcs", "Echo", 3, timeout=10)[1] == 3
    assert not gcs._framed_off  # a framed listener that comes back is used again
    with pytest.raises(TimeoutError):
        gcs.call_sync("Gcs", "Sleep", 1.0, timeout=0.2)
    gcs.close_sync()


def test_gcs_client_uses_framed_then_grpc_where_framed_is_impossible():
    framed_head = _Head(framed=True)
    grpc_head = _Head(framed=False)
    try:
        gcs = _gcs_client(framed_head.address, "tok")
        assert gcs.call_sync("Gcs", "Echo", 1, timeout=10)[1] == 1
        assert gcs._framed is not None and gcs._framed._answered and not gcs._framed_off
        gcs.close_sync()

        plain = _gcs_client(grpc_head.address, "tok")
        assert plain.call_sync("Gcs", "Echo", 2, timeout=10)[1] == 2  # over gRPC
        assert plain._framed_off
        plain.close_sync()

        wrong = _gcs_client(framed_head.address, "wrong")
        with pytest.raises(AuthenticationError):  # gRPC names the real problem
            wrong.call_sync("Gcs", "Echo", 3, timeout=10)
        wrong.close_sync()
    finally:
        framed_head.close()
        grpc_head.close()


def test_a_head_addressed_by_host_name_is_still_called_framed(head):
    port = head.address.rsplit(":", 1)[1]
    assert framed_target(f"localhost:{port}") == head.address  # resolved to the head's own ip:port
    assert framed_target(head.address) == head.address
    assert framed_target("localhost:1") == "localhost:1"  # no head listens there: left as given
    gcs = _gcs_client(f"localhost:{port}", "tok")
    try:
        assert gcs.call_sync("Gcs", "Echo", "by name", timeout=10) == (os.getpid(), "by name")
        assert gcs._framed is not None and gcs._framed._answered and not gcs._framed_off
    finally:
        gcs.close_sync()


def test_placement_groups_of_a_driver_go_framed(shared_cluster):
    core = worker_state.core_worker()
    start = time.monotonic()
    pgs = [placement_group([{"custom": 0.01}]) for _ in range(20)]
    assert all(pg.wait(timeout_seconds=10) for pg in pgs)
    gcs = core.gcs()
    assert gcs._framed is not None and gcs._framed._answered and not gcs._framed_off
    with pytest.raises(ValueError, match="already exists"):
        named = placement_group([{"custom": 0.01}], name="framed-dup")
        placement_group([{"custom": 0.01}], name="framed-dup")
    remove_placement_group(named)
    for pg in pgs:
        remove_placement_group(pg)
    assert {placement_group_table(pg)["state"] for pg in pgs} == {"REMOVED"}
    assert time.monotonic() - start < 30


def test_a_worker_on_the_heads_node_calls_framed_too(shared_cluster):
    @distcore.remote
    def make_and_remove() -> tuple:
        core = worker_state.core_worker()
        pg = placement_group([{"custom": 0.01}])
        ok = pg.wait(timeout_seconds=10)
        remove_placement_group(pg)
        gcs = core.gcs()
        return ok, gcs._framed is not None and gcs._framed._answered, gcs._framed_off

    assert distcore.get(make_and_remove.remote(), timeout=60) == (True, True, False)
