"""``Cluster``: a multi-node cluster on this machine, for tests and notebooks.

Each node is a separate process tree (its own node manager, object store and
workers); the first node added is the head (control store included).

Example::

    from distcore.cluster_utils import Cluster

    cluster = Cluster()
    cluster.add_node(num_cpus=1)                  # the head
    worker = cluster.add_node(num_cpus=2, resources={"accel": 1})
    cluster.connect()                             # distcore.init(address=...)
    ...
    cluster.remove_node(worker)
    cluster.shutdown()
"""

from __future__ import annotations

import os
import time
from typing import Any

from distcore._private import node as node_mod

__all__ = ["Cluster", "NodeHandle"]


class NodeHandle:
    """One node process of a :class:`Cluster`."""

    def __init__(self, process: node_mod.NodeProcess) -> None:
        self._process = process

    @property
    def node_id(self) -> str:
        return self._process.node_id

    @property
    def address(self) -> str:
        return self._process.address

    @property
    def is_head(self) -> bool:
        return self._process.is_head

    @property
    def pid(self) -> int:
        return self._process.proc.pid

    @property
    def metrics_address(self) -> str | None:
        """``host:port`` of the node's Prometheus endpoint (scrape ``http://<it>/metrics`` with the
        cluster token as a bearer token); None unless ``add_node(metrics_export_port=...)``."""
        return self._process.metrics_address

    def is_alive(self) -> bool:
        return self._process.proc.poll() is None

    def __repr__(self) -> str:
        return f"NodeHandle({'head' if self.is_head else 'worker'}, {self.node_id[:8]}, {self.address})"


class Cluster:
    """Start a head and any number of worker nodes as local processes."""

    def __init__(
        self,
        initialize_head: bool = False,
        connect: bool = False,
        head_node_args: dict[str, Any] | None = None,
        *,
        auth_token: str | None = None,
        node_dead_timeout_s: float = 30.0,
        include_dashboard: bool = False,
        autoscaling_config: dict[str, Any] | None = None,
    ) -> None:
        """``autoscaling_config`` (the fields of ``distcore up``'s YAML) runs the autoscaler on the head.

        Example::

            cluster = Cluster(autoscaling_config={
                "idle_timeout_s": 3,
                "available_node_types": {"cpu": {"resources": {"CPU": 1}, "max_workers": 2}},
            })
            cluster.add_node(num_cpus=0)  # the head; worker nodes come and go with demand
        """
        if not node_dead_timeout_s > 0:
            raise ValueError(f"node_dead_timeout_s must be a positive number of seconds, got {node_dead_timeout_s!r}")
        if autoscaling_config is not None:
            from distcore._private.autoscaler.config import AutoscalingConfig

            AutoscalingConfig.from_dict(autoscaling_config)  # a bad config fails here, not in the head
        self._autoscaling_config = autoscaling_config
        self._session_name, self.session_dir = node_mod.new_session()
        self._token = auth_token if auth_token is not None else node_mod.new_token()
        if self._token:
            node_mod.write_token(self.session_dir, self._token)
        self._dead_timeout_s = node_dead_timeout_s
        self._include_dashboard = include_dashboard
        # The nodes end with the process that started them, even when it dies without shutdown().
        self._parent_pid = os.getpid()
        self.head: NodeHandle | None = None
        self.worker_nodes: list[NodeHandle] = []
        self._connected = False
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    @property
    def address(self) -> str:
        if self.head is None:
            raise RuntimeError("the cluster has no head yet: call add_node() first")
        return self.head._process.gcs_address

    @property
    def auth_token(self) -> str | None:
        return self._token

    @property
    def dashboard_address(self) -> str:
        """The head's jobs API, ``http://host:port`` (needs ``Cluster(include_dashboard=True)``).

        Example::

            cluster = Cluster(initialize_head=True, include_dashboard=True)
            client = JobSubmissionClient(cluster.dashboard_address)
        """
        if self.head is None:
            raise RuntimeError("the cluster has no head yet: call add_node() first")
        process = self.head._process
        if process.dashboard_address is None:
            why = process.dashboard_error or "pass Cluster(include_dashboard=True)"
            raise RuntimeError(f"the head serves no jobs API: {why}")
        return process.dashboard_address

    def add_node(
        self,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        resources: dict[str, float] | None = None,
        object_store_memory: int = 128 * 1024 * 1024,
        labels: dict[str, str] | None = None,
        memory: int | None = None,
        prestart: int | None = None,
        wait: bool = True,
        metrics_export_port: int | None = None,
    ) -> NodeHandle:
        """Start a node with the given resources; the first one is the head.

        ``metrics_export_port``: serve the node's Prometheus metrics on this port
        (0: any free port; default: no metrics); see ``NodeHandle.metrics_address``.
        """
        res = node_mod.node_resources(num_cpus, num_gpus, resources, memory)
        is_head = self.head is None
        if is_head:  # restart_head() starts the head again the same way
            self._head_start = dict(resources=res, object_store_memory=object_store_memory, prestart=prestart,
                                    labels=labels, metrics_export_port=metrics_export_port,
                                    parent_pid=self._parent_pid)
        process = node_mod.start_node(
            head=is_head, resources=res, object_store_memory=object_store_memory,
            session_name=self._session_name, session_dir=self.session_dir, token=self._token,
            gcs_address="" if is_head else self.address, prestart=prestart, labels=labels,
            dead_timeout_s=self._dead_timeout_s,
            dashboard_port=0 if is_head and self._include_dashboard else None,
            autoscaling_config=self._autoscaling_config if is_head else None,
            metrics_export_port=metrics_export_port, parent_pid=self._parent_pid,
        )
        handle = NodeHandle(process)
        if is_head:
            self.head = handle
            node_mod.register_token(process.gcs_address, self._token)
            if process.dashboard_address:
                node_mod.register_token(process.dashboard_address, self._token)
        else:
            self.worker_nodes.append(handle)
        if wait:
            self.wait_for_nodes()
        return handle

    def remove_node(self, node: NodeHandle, allow_graceful: bool = True) -> None:
        """Stop a node's process tree.

        ``allow_graceful=False`` simulates a crash of the whole node: the node
        manager and all its workers get SIGKILL at once (workers run in their
        own sessions, so they are found as the node manager's descendants).
        """
        if node is self.head:
            raise ValueError("remove the head with shutdown(), not remove_node()")
        if allow_graceful:
            node._process.stop()
        else:
            import os
            import signal

            import psutil

            try:
                tree = psutil.Process(node.pid).children(recursive=True)
            except psutil.Error:
                tree = []
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for proc in tree:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            node._process.proc.wait(timeout=10)
            node._process.stop()
        if node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def restart_head(self, allow_graceful: bool = True, *, down_s: float = 0.0, timeout: float = 30.0) -> NodeHandle:
        """Stop the head and start a new head process on the same address, session and token.

        The new head reloads the control store's tables from the session's
        ``gcs.sqlite`` (nodes, jobs, actors, placement groups, the KV store);
        worker nodes, their workers and actors keep running and reconnect.
        The head's node manager restarts under a new node id, so actors on
        the head node die with it (and restart if ``max_restarts`` allows).
        ``allow_graceful=False`` kills the head's process tree with SIGKILL,
        as a crash would; ``down_s`` keeps the head down that long.

        Example::

            cluster.restart_head(allow_graceful=False)
            assert distcore.get_actor("counter", namespace="app")  # detached actors survive
        """
        from distcore._private.head_restart import restart_head_process

        if self.head is None:
            raise RuntimeError("the cluster has no head yet: call add_node() first")
        old = self.head._process
        process = restart_head_process(
            old, allow_graceful=allow_graceful, down_s=down_s, dead_timeout_s=self._dead_timeout_s,
            dashboard_port=0 if self._include_dashboard else None,
            autoscaling_config=self._autoscaling_config, **self._head_start,
        )
        self.head = NodeHandle(process)
        node_mod.register_token(process.gcs_address, self._token)
        if process.dashboard_address:
            node_mod.register_token(process.dashboard_address, self._token)
        self.wait_for_nodes(timeout=timeout)
        return self.head

    def list_all_nodes(self) -> list[NodeHandle]:
        return ([self.head] if self.head else []) + list(self.worker_nodes)

    def wait_for_nodes(self, timeout: float = 30.0) -> None:
        """Block until the control store sees every node of this cluster alive."""
        import asyncio

        from distcore._private.rpc import RpcClient, RpcUnavailable

        want = {n.node_id for n in self.list_all_nodes() if n.is_alive()}

        async def alive() -> set[str]:
            client = RpcClient(self.address, self._token)
            try:
                nodes = await client.call("Gcs", "ListNodes", None, timeout=5)
            finally:
                await client.close()
            return {n.node_id for n in nodes if n.state == "ALIVE"}

        deadline = time.monotonic() + timeout
        while True:
            try:
                seen = asyncio.run(alive())
            except RpcUnavailable:  # a head that just (re)started: its address may still be in connect backoff
                seen = set()
            if want <= seen:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(want)} did not all register within {timeout} s")
            time.sleep(0.05)

    def connect(self, namespace: str | None = None, **init_kwargs: Any) -> dict[str, Any]:
        """``distcore.init`` this process as a driver of the cluster."""
        import distcore

        ctx = distcore.init(address=self.address, namespace=namespace, **init_kwargs)
        self._connected = True
        return ctx

    def shutdown(self) -> None:
        """Disconnect the driver (if connected) and stop every node."""
        import distcore

        if self._connected and distcore.is_initialized():
            distcore.shutdown()
        self._connected = False
        for node in list(self.worker_nodes):
            self.remove_node(node)
        if self.head is not None:
            self.head._process.stop()
            node_mod.register_token(self.head._process.gcs_address, None)
            if self.head._process.dashboard_address:
                node_mod.register_token(self.head._process.dashboard_address, None)
            self.head = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
