"""Finding dead nodes before their heartbeat timeout runs out.

The node table declares a node dead after ``dead_timeout_s`` without a
heartbeat (default 30 s): that covers a host that vanished or hangs. When a
node's process tree is gone but its host is up, the control store knows
sooner: once heartbeats are late (:data:`LATE_AFTER_S`), it probes the node
manager's address with a fresh connection. A refused connection (nothing
listens there any more), twice in a row, means the node manager is gone, and
the node is declared dead at once. A probe that answers, or times out (a
slow or unreachable host), changes nothing: the timeout decides. This works
across hosts: only the node manager's own address is probed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from distcore._private.gcs.nodes import NodeTable
from distcore._private.rpc import RpcClient, RpcError, RpcUnavailable

logger = logging.getLogger(__name__)

#: Heartbeats (every 0.5 s) this late make the control store probe the node.
LATE_AFTER_S = 1.0
CHECK_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 2.0
_PROBES = 2  # refusals in a row that prove the node manager is gone
_PROBE_GAP_S = 0.2


async def probe_refused(address: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``address`` refuses connections (nothing listens); False when it answers or is slow."""
    client = RpcClient(address, None)  # the Health service needs no token
    try:
        await client.call("Health", "Check", None, timeout=timeout)
    except RpcUnavailable:
        return True
    except (RpcError, TimeoutError):
        return False
    finally:
        await client.close()
    return False


class NodeHealthChecker:
    """Probes nodes whose heartbeats are late; declares the refusing ones dead."""

    def __init__(
        self,
        nodes: NodeTable,
        dead_timeout_s: float,
        probe: Callable[[str], Awaitable[bool]] = probe_refused,
    ) -> None:
        self._nodes = nodes
        self._late_after_s = min(LATE_AFTER_S, dead_timeout_s / 2)
        self._probe = probe
        self._probing: set[str] = set()

    def late_nodes(self, now: float) -> list[str]:
        """Alive nodes whose last heartbeat is older than the probing threshold."""
        return [
            node_id for node_id, info in self._nodes.nodes.items()
            if info.state == "ALIVE" and node_id not in self._probing
            and now - self._nodes.last_seen.get(node_id, now) > self._late_after_s
        ]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            for node_id in self.late_nodes(time.monotonic()):
                self._probing.add(node_id)
                asyncio.ensure_future(self._check(node_id))

    async def _check(self, node_id: str) -> None:
        try:
            info = self._nodes.nodes.get(node_id)
            if info is None:
                return
            for attempt in range(_PROBES):
                if attempt:
                    await asyncio.sleep(_PROBE_GAP_S)
                if not await self._probe(info.address):
                    return  # it answers (only its heartbeats are late), or the host is slow: wait
            last = self._nodes.last_seen.get(node_id, time.monotonic())
            silent = time.monotonic() - last
            if info.state != "ALIVE" or silent <= self._late_after_s:
                return  # a heartbeat came meanwhile
            await self._nodes.mark_dead(
                node_id,
                f"its node manager at {info.address} stopped (connection refused) and sent no heartbeat "
                f"for {silent:.1f} s: the node's processes died",
            )
        except Exception:  # noqa: BLE001 - never let one probe stop the checker
            logger.exception("probing node %s failed", node_id[:8])
        finally:
            self._probing.discard(node_id)
