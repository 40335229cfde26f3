"""The jobs HTTP server inside the head process, on the head's asyncio loop.

:func:`start_dashboard` wires a :class:`~distcore._private.jobs.manager.JobManager`
to the control store object the head already has (records and packages in
its key-value store, drivers' core jobs from its job table) and to the head's
node manager (entrypoint resources), serves :func:`~distcore._private.jobs.app.create_app`
with uvicorn as a task of the running loop, and publishes the address in
``<session_dir>/dashboard_address`` and in the key-value store
(``cluster``/``dashboard_address``).

Needs ``pip install "distcore[default]"`` (starlette, uvicorn); importing
this module without them raises ``ImportError``.

Example (what ``node_main`` does)::

    dashboard = await start_dashboard(gcs, nm, host="127.0.0.1", port=8265, ...)
    ...
    await dashboard.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import starlette  # noqa: F401 - fail here, early, when the extra is missing
import uvicorn

from distcore._private import protocol as p
from distcore._private.jobs.app import create_app
from distcore._private.jobs.common import (
    CLUSTER_KV_NAMESPACE,
    DASHBOARD_ADDRESS_FILE,
    DASHBOARD_ADDRESS_KEY,
)
from distcore._private.jobs.manager import JobManager

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


class GcsKv:
    """The manager's :class:`~distcore._private.jobs.manager.Kv` over the in-process control store."""

    def __init__(self, gcs: Any) -> None:
        self._gcs = gcs

    async def get(self, namespace: str, key: str) -> bytes | None:
        return await self._gcs.rpc_KvGet(p.KvKey(namespace, key))

    async def put(self, namespace: str, key: str, value: bytes) -> None:
        await self._gcs.rpc_KvPut(p.KvPut(namespace, key, value, overwrite=True))

    async def delete(self, namespace: str, key: str) -> None:
        await self._gcs.rpc_KvDel(p.KvKey(namespace, key))

    async def keys(self, namespace: str) -> list[str]:
        return await self._gcs.rpc_KvKeys(p.KvKey(namespace, ""))


class NodeManagerLeaser:
    """Holds entrypoint resources as a lease on the head's own node manager (like Ray's supervisor actor)."""

    def __init__(self, node_manager: Any) -> None:
        self._nm = node_manager

    async def acquire(self, lease_id: str, resources: dict[str, float]) -> list[int]:
        from distcore._private.scheduling.policy import NodeAffinityStrategy

        req = p.LeaseRequest(lease_id, dict(resources), None, "", "", None,
                             strategy=NodeAffinityStrategy(self._nm.node_id, False), name="job entrypoint")
        reply = await self._nm.rpc_RequestWorkerLease(req)
        if not reply.granted:
            raise ValueError(reply.reason or "the head's node manager refused the lease")
        return list(reply.gpu_ids)

    async def release(self, lease_id: str) -> None:
        await self._nm.rpc_ReturnWorker(p.ReturnWorker(lease_id))


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the head process owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class DashboardServer:
    """A running jobs server: ``address`` is its ``http://host:port``."""

    def __init__(self, manager: JobManager, server: uvicorn.Server, task: asyncio.Task, address: str,
                 session_dir: str, kv: GcsKv) -> None:
        self.manager = manager
        self.address = address
        self._server = server
        self._task = task
        self._session_dir = session_dir
        self._kv = kv

    async def close(self) -> None:
        """Stop the live jobs' drivers, then the HTTP server."""
        await self.manager.close()
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except (TimeoutError, Exception):  # noqa: BLE001 - shutting down regardless
            self._task.cancel()
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._session_dir, DASHBOARD_ADDRESS_FILE))
        with contextlib.suppress(Exception):
            await self._kv.delete(CLUSTER_KV_NAMESPACE, DASHBOARD_ADDRESS_KEY)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the jobs API cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


async def start_dashboard(
    gcs: Any,
    node_manager: Any,
    *,
    host: str,
    advertise_host: str,
    port: int,
    session_dir: str,
    session_name: str,
    gcs_address: str,
    token: str | None,
) -> DashboardServer:
    """Start the jobs API on ``host:port`` (0: any free port) and publish its address.

    Raises:
        OSError: the port is taken or the address is invalid.
    """
    kv = GcsKv(gcs)

    def core_job(submission_id: str) -> dict[str, Any] | None:
        found = [j for j in gcs.jobs.values() if getattr(j, "submission_id", "") == submission_id]
        if not found:
            return None
        job = max(found, key=lambda j: j.start_time)
        return {"id": job.job_id, "pid": job.driver_pid, "node_ip_address": advertise_host,
                "is_dead": job.is_dead, "namespace": job.namespace}

    async def finish_core_jobs(submission_id: str) -> None:
        for job in list(gcs.jobs.values()):
            if getattr(job, "submission_id", "") == submission_id and not job.is_dead:
                await gcs.rpc_JobFinished(job.job_id)

    manager = JobManager(
        kv, session_dir=session_dir, gcs_address=gcs_address, token=token,
        leaser=NodeManagerLeaser(node_manager) if node_manager is not None else None,
        node_id=getattr(node_manager, "node_id", None), core_job=core_job, on_driver_exit=finish_core_jobs,
    )
    await manager.start()
    sock = _listen(host, port)
    config = uvicorn.Config(
        create_app(manager, token=token, session_name=session_name), log_config=None, access_log=False,
        lifespan="off", ws="none", timeout_graceful_shutdown=2, server_header=False, proxy_headers=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            sock.close()
            exc = task.exception()
            raise OSError(f"the jobs API server stopped while starting: {exc!r}")
        if loop.time() > deadline:
            server.should_exit = True
            raise OSError(f"the jobs API server did not start within {START_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.01)
    bound = sock.getsockname()[1]
    shown = f"[{advertise_host}]" if ":" in advertise_host else advertise_host
    address = f"http://{shown}:{bound}"
    path = os.path.join(session_dir, DASHBOARD_ADDRESS_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(address)
    os.replace(path + ".tmp", path)
    await kv.put(CLUSTER_KV_NAMESPACE, DASHBOARD_ADDRESS_KEY, address.encode())
    if token is None:
        logger.warning("the jobs API at %s runs WITHOUT token auth: anyone who reaches it can run commands", address)
    logger.info("jobs API listening at %s", address)
    return DashboardServer(manager, server, task, address, session_dir, kv)
