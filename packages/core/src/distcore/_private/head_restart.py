"""Restarting a head process on the same address and session.

The new head listens on the old head's port, so worker nodes, workers and
drivers reach it again at the address they know; its control store reloads
the session's ``gcs.sqlite`` (``gcs/recovery.py``). Used by
``Cluster.restart_head``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from distcore._private import node as node_mod

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
