"""Restarting a head process on the same address and session.

The new head listens on the old head's port, so worker nodes, workers and
drivers reach it again at the address they know; its control store reloads
the session's ``gcs.sqlite`` (``gcs/recovery.py``). Used by
``Cluster.restart_head``.

The restarted head's node manager has a new node id (the old one's store and
workers died with it). A driver on the head node (its node manager is the
head's address) follows that: :func:`follow_local_node` asks its node
manager for the node id every :data:`FOLLOW_INTERVAL_S` and adopts a new one,
so its ``put`` objects, its owner address and ``get_node_id()`` name the live
node, not the dead one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from distcore._private import node as node_mod

logger = logging.getLogger(__name__)

#: Seconds between a head-node driver's checks of its node manager's id.
FOLLOW_INTERVAL_S = 1.0

#: Seconds to keep trying to listen on the old head's port (it may linger after a kill).
PORT_RETRY_S = 10.0


def kill_tree(process: node_mod.NodeProcess) -> None:
    """SIGKILL a node process and every process under it (its workers run in their own sessions)."""
    import psutil

    try:
        tree = psutil.Process(process.proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    try:
        os.killpg(process.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in tree:
        try:
            proc.kill()
        except psutil.Error:
            pass
    process.proc.wait(timeout=10)


def restart_head_process(
    old: node_mod.NodeProcess, *, allow_graceful: bool = True, down_s: float = 0.0, **start: Any,
) -> node_mod.NodeProcess:
    """Stop ``old`` (gracefully, or SIGKILL of its tree) and start a head on its port and session."""
    if not old.is_head:
        raise ValueError("restart_head_process() restarts a head, not a worker node")
    port = int(old.gcs_address.rsplit(":", 1)[1])
    ip = old.gcs_address.rsplit(":", 1)[0]
    if not allow_graceful:
        kill_tree(old)
    old.stop()  # graceful stop, or (after a kill) the removal of its shared-memory segments
    if down_s > 0:
        time.sleep(down_s)
    deadline = time.monotonic() + PORT_RETRY_S
    while True:
        try:
            return node_mod.start_node(
                head=True, session_name=old.session_name, session_dir=old.session_dir, token=old.token,
                node_ip=ip, port=port, recover=True, **start,
            )
        except RuntimeError as exc:
            if "already in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def on_head_node(core: Any) -> bool:
    """True for a process whose node manager is the head's (same address as the control store)."""
    return bool(core.node_address) and core.node_address == core.gcs_address


async def follow_local_node(core: Any, interval_s: float = FOLLOW_INTERVAL_S) -> None:
    """Adopt the node id of a head node manager restarted on this process's node address."""
    from distcore._private.rpc import RpcError

    while not getattr(core, "_closed", False):
        await asyncio.sleep(interval_s)
        try:
            node_id = await core.node().call("NodeManager", "GetNodeId", None, timeout=5)
        except (RpcError, TimeoutError):
            continue  # the head is down or restarting: ask again
        except Exception:  # noqa: BLE001 - an older node manager without GetNodeId: nothing to follow
            return
        if node_id and node_id != core.node_id:
            adopt_node(core, node_id)


def adopt_node(core: Any, node_id: str) -> None:
    """Make ``core`` (a driver's core worker) belong to ``node_id`` from now on."""
    old = core.node_id
    core.node_id = node_id
    if core.address is not None:
        core.address.node_id = node_id
    core.cluster_view = None  # the next lookup fetches a view that knows the new node
    logger.warning(
        "the head restarted: this driver now belongs to its new node %s (was %s); objects it put in the old "
        "head's store are lost", node_id[:8], old[:8],
    )
