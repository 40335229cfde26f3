"""The routing table each process follows: applications, their routes, deployments and live replicas.

The controller bumps a version on every change; :class:`TableClient` long-polls
``controller.listen(version)`` on the serve loop and keeps the latest copy,
waking everyone who waits for a change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

CONTROLLER_NAME = "SERVE_CONTROLLER"
PROXY_NAME = "SERVE_PROXY"
SERVE_NAMESPACE = "serve"
LISTEN_TIMEOUT_S = 10.0

logger = logging.getLogger("distcore.serve")


@dataclass
class ReplicaInfo:
    replica_id: str
    host: str
    port: int
    node_id: str
    # the replica's Unix socket (Linux abstract namespace) for routers on its node; "" if none
    uds: str = ""


@dataclass
class DeploymentRoute:
    """What a router needs to know about one deployment."""

    app: str
    name: str
    max_ongoing: int
    queue_cap: int
    request_timeout_s: float | None
    replicas: list[ReplicaInfo] = field(default_factory=list)
    autoscaling_min: int | None = None
    status_message: str = ""


@dataclass
class Table:
    version: int = 0
    token: str = ""
    # app -> (route_prefix or None, ingress deployment name)
    apps: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], DeploymentRoute] = field(default_factory=dict)
    request_timeout_s: float | None = None


def get_controller(timeout_s: float = 0.0) -> Any:
    import distcore

    return distcore.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)


class TableClient:
    """Follows the controller's table on the serve loop."""

    def __init__(self) -> None:
        self.table = Table()
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._first = asyncio.Event()
        self.controller: Any = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        failures = 0
        while True:
            try:
                if self.controller is None:
                    self.controller = await asyncio.get_running_loop().run_in_executor(None, get_controller)
                table = await self.controller.listen.remote(self.table.version, LISTEN_TIMEOUT_S)
                failures = 0
                if table is not None and table.version != self.table.version:
                    self.set(table)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the controller restarts or is gone: retry with backoff
                failures += 1
                self.controller = None if failures > 3 else self.controller
                if failures in (1, 20):
                    logger.debug("serve table poll failed: %r", exc)
                await asyncio.sleep(min(1.0, 0.05 * failures))

    def set(self, table: Table) -> None:
        self.table = table
        self._first.set()
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_first(self, timeout: float) -> None:
        self.start()
        await asyncio.wait_for(self._first.wait(), timeout)

    async def wait_change(self, timeout: float) -> None:
        self.start()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


_client: TableClient | None = None


def table_client() -> TableClient:
    """The process's table client (call on the serve loop)."""
    global _client
    if _client is None:
        _client = TableClient()
    _client.start()
    return _client


def reset_table_client() -> None:
    global _client
    if _client is not None:
        _client.stop()
    _client = None
