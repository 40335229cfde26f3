"""Drivers' and workers' calls to the control store, through a head restart.

Writes travel as ``Gcs.Once`` with a request id kept across the retries, so
one applied before its reply was lost is not applied twice
(``gcs/idempotency.py``). A call that finds the head unreachable
(``RpcUnavailable``: it crashed or is restarting) is retried with backoff; the channel reconnects by itself once a
head listens on the address again, which reloads its tables from the session
directory. After :data:`HEAD_RECONNECT_TIMEOUT_S` (or the call's own
``timeout``, if shorter) the call fails with :class:`HeadUnreachableError`,
a ``ConnectionError`` that says the head is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from distcore._private.gcs.idempotency import WRITE_METHODS, OnceCall
from distcore._private.rpc import RpcClient, RpcUnavailable

#: Seconds a control-store call keeps retrying while the head is unreachable
#: (env ``DISTCORE_HEAD_RECONNECT_TIMEOUT_S``).
HEAD_RECONNECT_TIMEOUT_S = float(os.environ.get("DISTCORE_HEAD_RECONNECT_TIMEOUT_S", "30"))

# Calls not worth waiting for a head: telemetry (resent later) and a driver's
# goodbye (the head ends a vanished driver's job by itself).
_NO_RETRY = frozenset({"AddTaskEvents", "JobFinished"})


class HeadUnreachableError(RpcUnavailable, ConnectionError):
    """The control store (head) stayed unreachable for the whole retry window."""


class GcsClient:
    """``call``/``stream`` like :class:`RpcClient`, retrying while the head is away."""

    def __init__(self, address: str, client: Callable[[], RpcClient]) -> None:
        self.address = address
        self._client = client  # the pool's current client for the address

    async def call(self, service: str, method: str, request: Any = None, timeout: float | None = None) -> Any:
        window = HEAD_RECONNECT_TIMEOUT_S if timeout is None else min(HEAD_RECONNECT_TIMEOUT_S, timeout)
        if method in _NO_RETRY:
            window = 0.0
        if service == "Gcs" and method in WRITE_METHODS:
            # One id for every try: a write the head applied before its reply was lost applies once.
            service, method, request = "Gcs", "Once", OnceCall(uuid.uuid4().hex, method, request)
        deadline: float | None = None
        delay = 0.1
        while True:
            try:
                return await self._client().call(service, method, request, timeout=timeout)
            except RpcUnavailable as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + window
                if now >= deadline:
                    if window <= 0:
                        raise
                    raise HeadUnreachableError(
                        f"the distcore head (control store) at {self.address} is unreachable: {service}.{method} "
                        f"kept failing for {window:g} s ({exc}). The head crashed or is restarting; restart it "
                        "on the same address and session to recover, or call distcore.shutdown() and init() again"
                    ) from None
                await asyncio.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 1.0)

    def stream(self, service: str, method: str, request: Any = None) -> AsyncIterator[Any]:
        return self._client().stream(service, method, request)

    async def close(self) -> None:
        await self._client().close()
