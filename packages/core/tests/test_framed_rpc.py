"""The framed transport for core-worker calls (core_worker/framed_rpc.py)."""

from __future__ import annotations

import asyncio

import pytest

from distcore._private.rpc import RpcClient, RpcServer, RpcUnavailable


class _Service:
    def __init__(self):
        self.calls = 0
        self.release = asyncio.Event()

    async def rpc_Echo(self, request):
        self.calls += 1
        return request

    async def rpc_Fail(self, request):
        raise KeyError(request)

    async def rpc_Wait(self, request):
        await self.release.wait()
        return request

    async def rpc_Unpicklable(self, request):
        return lambda: None


async def _serve(token="token", framed=True):
    from distcore._private.core_worker.framed_rpc import FramedServer

    service = _Service()
    server = RpcServer(token)
    server.add_service("CoreWorker", service)
    port = await server.start()
    framed_server = FramedServer(service, token)
    if framed:
        assert await framed_server.start(f"127.0.0.1:{port}")
    return service, server, framed_server, f"127.0.0.1:{port}"


def test_calls_replies_and_errors_travel_framed():
    async def main():
        service, server, framed_server, target = await _serve()
        client = RpcClient(target, "token", framed=True)
        try:
            assert await asyncio.gather(*(client.call("CoreWorker", "Echo", i) for i in range(500))) == list(range(500))
            assert client._framed is not None and client._framed._conn is not None  # not gRPC
            with pytest.raises(KeyError):
                await client.call("CoreWorker", "Fail", "x")
            with pytest.raises(Exception, match="pickle|Pickl"):
                await client.call("CoreWorker", "Unpicklable", None)
            with pytest.raises(TimeoutError):
                await client.call("CoreWorker", "Wait", 1, timeout=0.2)
            assert await client.call("Health", "Check") == "ok"  # other services stay on gRPC
        finally:
            await client.close()
            await framed_server.stop()
            await server.stop(0)
        assert service.calls == 500

    asyncio.run(main())


def test_a_wrong_token_is_refused():
    async def main():
        _, server, framed_server, target = await _serve()
        client = RpcClient(target, "wrong", framed=True)
        try:
            with pytest.raises(RpcUnavailable):
                await client.call("CoreWorker", "Echo", 1, timeout=10)
        finally:
            await client.close()
            await framed_server.stop()
            await server.stop(0)

    asyncio.run(main())


def test_a_lost_peer_fails_the_calls_waiting_on_it():
    async def main():
        _, server, framed_server, target = await _serve()
        client = RpcClient(target, "token", framed=True)
        try:
            waiting = asyncio.ensure_future(client.call("CoreWorker", "Wait", 1))
            await asyncio.sleep(0.2)
            await framed_server.stop()  # closes its connections
            with pytest.raises(RpcUnavailable):
                await asyncio.wait_for(waiting, 10)
        finally:
            await client.close()
            await server.stop(0)

    asyncio.run(main())


def test_a_connection_lost_while_it_opens_fails_the_call_at_once():
    """A peer that dies just as we connect: the connection is lost before the call is sent on it.
    The call fails with RpcUnavailable at once instead of waiting for a reply that never comes."""
    from distcore._private.core_worker import framed_rpc

    class _OpensOntoADeadPeer(framed_rpc.FramedClient):
        async def _open(self):
            conn = await super()._open()
            for _ in range(200):  # the listener below closes every connection it accepts
                if conn.transport.is_closing():
                    break
                await asyncio.sleep(0.01)
            return conn

    async def main():
        target = "127.0.0.1:1"
        listener = await asyncio.start_unix_server(
            lambda _r, w: w.close(), path=framed_rpc.socket_name(target))
        client = _OpensOntoADeadPeer(target, "token")
        client._was_connected = True
        try:
            with pytest.raises(RpcUnavailable, match="connection was lost"):
                await asyncio.wait_for(client.call("Echo", 1, timeout=None), 10)
        finally:
            client.close()
            listener.close()
            await listener.wait_closed()

    asyncio.run(main())


def test_a_new_process_on_a_dead_peers_address_is_reached():
    """The kernel reuses a dead worker's port for a new one. A client that failed to reach the dead
    peer (the framed transport refused, gRPC in reconnect back-off) reaches the new one at once."""
    from distcore._private.core_worker.framed_rpc import FramedServer

    async def main():
        _, server, framed_server, target = await _serve()
        await framed_server.stop()
        await server.stop(0)
        client = RpcClient(target, "token", framed=True)
        try:
            for service in ("CoreWorker", "Health"):  # the peer is gone
                with pytest.raises(RpcUnavailable):
                    await client.call(service, "Echo" if service == "CoreWorker" else "Check", 1, timeout=10)
            # A new process listens on the same address.
            service = _Service()
            server = RpcServer("token", port=int(target.rsplit(":", 1)[1]))
            server.add_service("CoreWorker", service)
            await server.start()
            framed_server = FramedServer(service, "token")
            assert await framed_server.start(target)
            assert await client.call("Health", "Check", timeout=10) == "ok"
            assert await client.call("CoreWorker", "Echo", 7, timeout=10) == 7
            assert client._framed is not None and client._framed._conn is not None  # framed again
        finally:
            await client.close()
            await framed_server.stop()
            await server.stop(0)

    asyncio.run(main())


def test_a_peer_without_a_framed_listener_is_called_over_grpc():
    async def main():
        _, server, framed_server, target = await _serve(framed=False)
        client = RpcClient(target, "token", framed=True)
        try:
            assert await client.call("CoreWorker", "Echo", 7) == 7
            assert client._framed is None  # fell back for good
        finally:
            await client.close()
            await server.stop(0)

    asyncio.run(main())


class _DirectService:
    """PushTask answered from other threads, as the executor does (``DirectReply``)."""

    def __init__(self):
        import threading

        self.threads = set()
        self._lock = threading.Lock()

    async def rpc_PushTask(self, request):
        import threading

        from distcore._private.core_worker.framed_rpc import ALREADY_SENT, current_direct_reply

        direct = current_direct_reply.get()
        assert direct is not None
        size, index = request

        def run():
            with self._lock:
                self.threads.add(threading.get_ident())
            direct.send((index, b"x" * size))  # big replies: a partial write goes via the io loop

        await asyncio.get_running_loop().run_in_executor(None, run)
        return ALREADY_SENT


def test_replies_sent_from_other_threads_arrive_whole_and_matched():
    from distcore._private.core_worker.framed_rpc import FramedServer

    async def main():
        service = _DirectService()
        server = RpcServer("token")
        server.add_service("CoreWorker", service)
        port = await server.start()
        framed_server = FramedServer(service, "token")
        target = f"127.0.0.1:{port}"
        assert await framed_server.start(target)
        client = RpcClient(target, "token", framed=True)
        try:
            sizes = [10, 300_000, 2, 1_000_000, 5] * 40
            got = await asyncio.gather(*(client.call("CoreWorker", "PushTask", (s, i)) for i, s in enumerate(sizes)))
            assert [(i, len(b)) for i, b in got] == [(i, s) for i, s in enumerate(sizes)]
            assert len(service.threads) >= 1
        finally:
            await client.close()
            await framed_server.stop()
            await server.stop(None)

    asyncio.run(main())
