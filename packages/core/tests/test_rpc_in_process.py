"""Calls to a service of the calling process itself (the head's control store to its own node
manager) skip the wire but keep its semantics: copies of the messages, typed errors, timeouts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from distcore._private.rpc import ClientPool, InProcessClient, RpcClient, RpcError


@dataclass
class Msg:
    items: list[int] = field(default_factory=list)


class Service:
    def __init__(self) -> None:
        self.seen: list[Msg] = []

    async def rpc_Keep(self, req: Msg) -> Msg:
        self.seen.append(req)
        return Msg(list(req.items) + [99])

    async def rpc_Fail(self, req: Msg) -> Msg:
        raise ValueError("bad request: " + repr(req.items))

    async def rpc_Slow(self, req: Msg) -> Msg:
        await asyncio.sleep(5)
        return req


def test_the_pool_serves_a_local_address_in_process_and_others_over_the_wire() -> None:
    pool = ClientPool(token="t")
    service = Service()
    pool.set_local("10.0.0.1:7000", {"NodeManager": service})
    assert isinstance(pool.get("10.0.0.1:7000"), InProcessClient)
    assert isinstance(pool.get("10.0.0.1:7001"), RpcClient)


def test_messages_are_copies_errors_keep_their_type_and_timeouts_apply() -> None:
    service = Service()
    client = ClientPool(token=None)
    client.set_local("me", {"NodeManager": service})
    local = client.get("me")

    async def scenario() -> None:
        request = Msg([1, 2])
        reply = await local.call("NodeManager", "Keep", request)
        assert reply == Msg([1, 2, 99])
        request.items.append(3)           # the caller changes its message after the call ...
        assert service.seen[0] == Msg([1, 2])  # ... the service kept its own copy
        with pytest.raises(ValueError, match=r"bad request: \[5\]"):
            await local.call("NodeManager", "Fail", Msg([5]))
        with pytest.raises(asyncio.TimeoutError):
            await local.call("NodeManager", "Slow", Msg(), timeout=0.05)
        with pytest.raises(RpcError, match="Gcs.Keep is not served in this process"):
            await local.call("Gcs", "Keep", Msg())
        with pytest.raises(RpcError, match="NodeManager.Nope is not served"):
            await local.call("NodeManager", "Nope", Msg())

    asyncio.run(asyncio.wait_for(scenario(), 10))
