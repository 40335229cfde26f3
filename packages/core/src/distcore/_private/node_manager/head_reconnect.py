"""A node manager living through a restart of its head.

While the head is down, heartbeats fail and are retried (the node's workers
and actors keep running). When a head comes back on the same address it
reloads its tables and knows the node again; a head that lost them answers
the heartbeat with nothing, and the node registers again under the same id
(``RegisterNode`` is idempotent for a known node).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from distcore._private.rpc import RpcError

if TYPE_CHECKING:
    from distcore._private.node_manager.server import NodeManagerService

logger = logging.getLogger(__name__)

#: Seconds between warnings about an unreachable head (heartbeats go every 0.5 s).
WARN_EVERY_S = 10.0


class HeadLink:
    """Tracks the node's connection to its head: throttled warnings, registering again."""

    def __init__(self, nm: NodeManagerService) -> None:
        self._nm = nm
        self._down_since: float | None = None
        self._last_warning = 0.0
        self._refused = ""

    def heartbeat_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            logger.warning(
                "heartbeat to the control store failed (head unreachable for %.0f s; retrying, "
                "workers keep running): %s", now - self._down_since, exc,
            )

    def heartbeat_ok(self) -> None:
        if self._down_since is not None:
            logger.info("the control store answers again after %.1f s", time.monotonic() - self._down_since)
        self._down_since = None
        self._last_warning = 0.0

    async def unknown_node(self) -> None:
        """The head does not know this node (it restarted without its tables): register again."""
        info = getattr(self._nm, "node_info", None)
        if info is None:
            return
        try:
            self._nm.view = await self._nm._gcs().call("Gcs", "RegisterNode", info, timeout=10)
        except (RpcError, TimeoutError) as exc:
            self.heartbeat_failed(exc)
            return
        except Exception as exc:  # noqa: BLE001 - refused (declared dead): say so once, keep serving
            if str(exc) != self._refused:
                self._refused = str(exc)
                logger.error("the control store refused to register this node again: %s", exc)
            return
        self._refused = ""
        logger.info("registered again with the control store at %s", self._nm.config.gcs_address)
