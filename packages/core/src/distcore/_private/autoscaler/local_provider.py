"""``LocalProcessNodeProvider``: worker nodes as process trees on this machine.

Each node is started with :func:`distcore._private.node.start_node` (its own
node manager, object store and workers) and joins the head with the cluster
token. ``create_node`` returns at once; the node boots on a background
thread. The provider writes what it runs to ``<session>/autoscaler/nodes.json``
so ``distcore down`` can stop nodes a crashed head left behind; every node
also watches the head's pid and exits when the head is gone.

Example::

    provider = LocalProcessNodeProvider(config, gcs_address="127.0.0.1:6379", session_name=name,
                                        session_dir=session_dir, token=token)
    provider.create_node("cpu_worker", 2)
    ...
    provider.shutdown()
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from distcore._private import node as node_mod
from distcore._private.autoscaler.config import AutoscalingConfig
from distcore._private.autoscaler.node_provider import (
    LABEL_NODE_TYPE,
    LABEL_PROVIDER_NODE_ID,
    TAG_NODE_STATUS,
    TAG_NODE_TYPE,
    NodeProvider,
)
from distcore._private.ids import random_hex

logger = logging.getLogger(__name__)

NODES_FILE = os.path.join("autoscaler", "nodes.json")


@dataclass
class _LocalNode:
    provider_id: str
    node_type: str
    status: str = "launching"  # launching | running | failed | terminated
    process: node_mod.NodeProcess | None = None
    error: str = ""


class LocalProcessNodeProvider(NodeProvider):
    """Starts and stops worker node process trees on this machine."""

    def __init__(
        self,
        config: AutoscalingConfig,
        *,
        gcs_address: str,
        session_name: str,
        session_dir: str,
        token: str | None,
        node_ip: str = "127.0.0.1",
        dead_timeout_s: float = 30.0,
        parent_pid: int | None = None,
    ) -> None:
        self._config = config
        self._gcs_address = gcs_address
        self._session_name = session_name
        self._session_dir = session_dir
        self._token = token
        self._node_ip = node_ip
        self._dead_timeout_s = dead_timeout_s
        self._parent_pid = parent_pid if parent_pid is not None else os.getpid()
        self._nodes: dict[str, _LocalNode] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="distcore-local-provider")
        self._closed = False

    # ---------------------------------------------------------------- NodeProvider

    def non_terminated_nodes(self) -> list[str]:
        with self._lock:
            return [i for i, n in self._nodes.items() if n.status in ("launching", "running")]

    def create_node(self, node_type: str, count: int) -> None:
        if node_type not in self._config.node_types:
            raise ValueError(f"unknown node type {node_type!r}; configured: {', '.join(self._config.node_types)}")
        for _ in range(count):
            node = _LocalNode(f"local-{node_type}-{random_hex(4)}", node_type)
            with self._lock:
                if self._closed:
                    return
                self._nodes[node.provider_id] = node
            self._pool.submit(self._start, node)

    def terminate_node(self, node_id: str) -> None:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None or node.status in ("terminated", "failed"):
                return
            node.status = "terminated"
            process = node.process
        if process is not None:
            process.stop()
        self._save()

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            node = self._nodes[node_id]
            tags = {TAG_NODE_TYPE: node.node_type, TAG_NODE_STATUS: node.status}
            if node.process is not None:
                tags["distcore-node-id"] = node.process.node_id
            return tags

    def is_running(self, node_id: str) -> bool:
        with self._lock:
            node = self._nodes.get(node_id)
            return node is not None and node.status == "running" and node.process is not None \
                and node.process.proc.poll() is None

    def shutdown(self) -> None:
        """Stop every node this provider started (in parallel) and wait for them."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)  # let starts in flight finish, then stop them too
        with self._lock:
            ids = [i for i, n in self._nodes.items() if n.status in ("launching", "running")]
        if ids:
            with ThreadPoolExecutor(max_workers=len(ids)) as stopper:
                list(stopper.map(self.terminate_node, ids))
        self._save()

    # ---------------------------------------------------------------- internals

    def _start(self, node: _LocalNode) -> None:
        node_type = self._config.node_types[node.node_type]
        res = dict(node_type.resources)
        cpus = res.pop("CPU", 0.0)
        gpus = res.pop("GPU", 0.0)
        memory = res.pop("memory", None)
        res.pop("object_store_memory", None)
        labels = {**node_type.labels, LABEL_PROVIDER_NODE_ID: node.provider_id, LABEL_NODE_TYPE: node.node_type}
        try:
            resources = node_mod.node_resources(cpus, gpus, res, int(memory) if memory is not None else None)
            process = node_mod.start_node(
                head=False, resources=resources, object_store_memory=node_type.object_store_memory,
                session_name=self._session_name, session_dir=self._session_dir, token=self._token,
                gcs_address=self._gcs_address, node_ip=self._node_ip, parent_pid=self._parent_pid,
                labels=labels, dead_timeout_s=self._dead_timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - any failure to boot is a failed launch
            logger.warning("launching a %s node failed: %s", node.node_type, exc)
            with self._lock:
                node.status, node.error = "failed", str(exc)
            self._save()
            return
        with self._lock:
            node.process = process
            stop_now = node.status == "terminated" or self._closed
            if not stop_now:
                node.status = "running"
        if stop_now:  # terminated (or the head stopped) while it booted
            process.stop()
            with self._lock:
                node.status = "terminated"
        logger.info("%s node %s started (node %s, pid %d)", node.node_type, node.provider_id,
                    process.node_id[:8], process.proc.pid)
        self._save()

    def _save(self) -> None:
        """Record the live nodes (pid, node id) for ``distcore down``."""
        with self._lock:
            rows = {
                i: {"node_type": n.node_type, "pid": n.process.proc.pid, "node_id": n.process.node_id,
                    "session_name": self._session_name}
                for i, n in self._nodes.items() if n.process is not None and n.status == "running"
            }
        path = os.path.join(self._session_dir, NODES_FILE)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "w") as f:
                json.dump(rows, f)
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot record the autoscaler's nodes in %s: %s", path, exc)


def recorded_nodes(session_dir: str) -> dict[str, dict]:
    """The nodes a local provider of this session last recorded as running."""
    try:
        with open(os.path.join(session_dir, NODES_FILE)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}
