"""Sending one request to one replica: power-of-two-choices on in-flight counts, bounded queueing.

Each process keeps one :class:`Router` per deployment on its serve loop. A
replica takes at most ``max_ongoing_requests`` from this router (the replica
refuses beyond its own limit, and the router then tries another); requests
that find every replica full wait in a queue of at most ``max_queued_requests``
and beyond it fail at once with :class:`BackPressureError`. Replicas on this
process's node are preferred.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from typing import Any

from distcore.serve._internal import wire
from distcore.serve._internal.local import local_connection
from distcore.serve._internal.table import DeploymentRoute, ReplicaInfo, table_client
from distcore.serve.exceptions import BackPressureError, DeploymentUnavailableError

NO_REPLICA_WAIT_S = 60.0
# routers of autoscaling deployments report queued + in-flight requests this often while busy
REPORT_INTERVAL_S = 0.25
# a router that has been idle this long stops reporting (after one report of zero)
REPORT_IDLE_STOP_S = 2.0


class Router:
    def __init__(self, app: str, deployment: str) -> None:
        self.app = app
        self.deployment = deployment
        self.client = table_client()
        self.inflight: dict[str, int] = {}
        self.conns: dict[str, wire.ClientConnection] = {}
        self._connecting: dict[str, asyncio.Future] = {}
        self.waiters: deque[asyncio.Future] = deque()
        self.full_until: dict[str, float] = {}
        self._local_node = _local_node_id()
        self._demand_sent = 0.0
        self.model_replicas: dict[str, str] = {}
        self.router_id = f"{os.getpid()}:{id(self):x}"
        self._reporter: asyncio.Task | None = None
        self._no_report_version = -1

    # ---------------------------------------------------------------- table

    def route(self) -> DeploymentRoute | None:
        return self.client.table.deployments.get((self.app, self.deployment))

    def queued(self) -> int:
        return len(self.waiters)

    # ---------------------------------------------------------------- choosing

    def _candidates(self, route: DeploymentRoute) -> list[ReplicaInfo]:
        now = time.monotonic()
        cap = route.max_ongoing
        out = [r for r in route.replicas
               if self.inflight.get(r.replica_id, 0) < cap and self.full_until.get(r.replica_id, 0) <= now]
        if len(out) > 1 and self._local_node:
            local = [r for r in out if r.node_id == self._local_node]
            if local:
                return local
        return out

    def _pick(self, route: DeploymentRoute, model_id: str = "") -> ReplicaInfo | None:
        cands = self._candidates(route)
        if not cands:
            return None
        if model_id:
            # multiplexing: a model goes back to the replica that loaded it while that one has room
            sticky = self.model_replicas.get(model_id)
            for r in cands:
                if r.replica_id == sticky:
                    return r
            if sticky is not None and any(r.replica_id == sticky for r in route.replicas):
                return None  # wait for the replica that holds the model
        if len(cands) == 1:
            choice = cands[0]
        else:
            a, b = random.sample(cands, 2)
            choice = a if self.inflight.get(a.replica_id, 0) <= self.inflight.get(b.replica_id, 0) else b
        if model_id:
            self.model_replicas[model_id] = choice.replica_id
        return choice

    async def choose(self, deadline: float | None, model_id: str = "") -> ReplicaInfo:
        route = self.route()
        if route is None:
            await self.client.wait_first(30.0)
            route = self.route()
            if route is None:
                await self.client.wait_change(2.0)
                route = self.route()
                if route is None:
                    raise DeploymentUnavailableError(
                        f"deployment '{self.deployment}' of application '{self.app}' does not exist")
        replica = self._pick(route, model_id) if not self.waiters else None
        if replica is not None:
            return replica
        if len(self.waiters) >= route.queue_cap:
            raise BackPressureError(len(self.waiters), route.queue_cap, self.deployment)
        limit = deadline if deadline is not None else time.monotonic() + NO_REPLICA_WAIT_S
        while True:
            route = self.route()
            if route is None:
                raise DeploymentUnavailableError(f"deployment '{self.deployment}' of '{self.app}' was deleted")
            if not route.replicas:
                self._ask_for_replicas()
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            if self._reporter is None:
                self._start_reporter()
            remaining = limit - time.monotonic()
            if remaining <= 0:
                self._drop(fut)
                raise DeploymentUnavailableError(self._unavailable_message(route))
            # wake on a freed slot, on a table change, or every 50 ms (replicas marked full expire)
            change = asyncio.ensure_future(self.client.wait_change(min(remaining, 0.05)))
            try:
                await asyncio.wait([fut, change], timeout=min(remaining, 0.05), return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()
                self._drop(fut)
            route = self.route()
            if route is not None:
                replica = self._pick(route, model_id)
                if replica is not None:
                    return replica

    def _unavailable_message(self, route: DeploymentRoute) -> str:
        why = f": {route.status_message}" if route.status_message else ""
        return (f"no replica of deployment '{self.deployment}' (application '{self.app}') could take the request "
                f"in time ({len(route.replicas)} running){why}")

    def _drop(self, fut: asyncio.Future) -> None:
        try:
            self.waiters.remove(fut)
        except ValueError:
            pass

    def _wake_one(self) -> None:
        while self.waiters:
            fut = self.waiters[0]
            if not fut.done():
                fut.set_result(None)
                return
            self.waiters.popleft()

    def _ask_for_replicas(self) -> None:
        now = time.monotonic()
        if now - self._demand_sent < 0.5 or self.client.controller is None:
            return
        self._demand_sent = now
        try:
            self.client.controller.record_demand.remote(self.app, self.deployment)
        except Exception:
            pass

    # ---------------------------------------------------------------- connections

    async def _conn(self, replica: ReplicaInfo) -> wire.ClientConnection:
        conn = self.conns.get(replica.replica_id)
        if conn is not None and not conn.lost:
            return conn
        local = local_connection(replica.replica_id)
        if local is not None:
            self.conns[replica.replica_id] = local
            return local
        pending = self._connecting.get(replica.replica_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._connecting[replica.replica_id] = fut
        try:
            conn = None
            if replica.uds and replica.node_id == self._local_node:
                try:
                    conn = await wire.connect_unix(replica.uds, self.client.table.token)
                except OSError:
                    conn = None  # fall back to TCP
            if conn is None:
                conn = await wire.connect(replica.host, replica.port, self.client.table.token)
            self.conns[replica.replica_id] = conn
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._connecting.pop(replica.replica_id, None)

    def _acquire(self, replica_id: str) -> None:
        self.inflight[replica_id] = self.inflight.get(replica_id, 0) + 1
        if self._reporter is None:
            self._start_reporter()

    # ---------------------------------------------------------------- autoscaling metrics

    def _start_reporter(self) -> None:
        """Report queued + in-flight requests to the controller while busy (autoscaling deployments only)."""
        version = self.client.table.version
        if version == self._no_report_version:
            return  # not autoscaling as of this table: checked once per table version
        route = self.route()
        if route is None or route.autoscaling_min is None or self.client.controller is None:
            if route is not None and route.autoscaling_min is None:
                self._no_report_version = version
            return
        self._reporter = asyncio.get_running_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        last: tuple[int, int] | None = None
        last_sent = 0.0
        idle_since: float | None = None
        try:
            while True:
                value = (len(self.waiters), sum(self.inflight.values()))
                now = time.monotonic()
                if value != last or now - last_sent >= 1.0:
                    controller = self.client.controller
                    if controller is not None:
                        try:
                            controller.record_handle_metrics.remote(self.app, self.deployment, self.router_id,
                                                                    value[0], value[1])
                        except Exception:
                            pass
                    last, last_sent = value, now
                if value == (0, 0):
                    if idle_since is None:
                        idle_since = now
                    elif now - idle_since >= REPORT_IDLE_STOP_S:
                        return
                else:
                    idle_since = None
                await asyncio.sleep(REPORT_INTERVAL_S)
        finally:
            self._reporter = None

    def _release(self, replica_id: str) -> None:
        n = self.inflight.get(replica_id, 1) - 1
        if n <= 0:
            self.inflight.pop(replica_id, None)
        else:
            self.inflight[replica_id] = n
        if self.waiters:
            self._wake_one()

    def _replica_failed(self, replica: ReplicaInfo) -> None:
        self.full_until[replica.replica_id] = time.monotonic() + 1.0
        conn = self.conns.pop(replica.replica_id, None)
        if conn is not None:
            conn.close()

    # ---------------------------------------------------------------- calls

    def try_send(self, method: str, args: tuple, meta: dict, reply: Any) -> bool:
        """Send at once when a replica has room and an open connection; its frames go to ``reply(kind, payload)``.

        False (nothing sent) when the call must wait, connect or queue: the caller takes the async path.
        ``reply`` gets ``replica``, ``conn`` and ``rid`` set before anything can arrive.
        """
        if self.waiters:
            return False
        route = self.route()
        if route is None:
            return False
        replica = self._pick(route, meta.get("model_id", ""))
        if replica is None:
            return False
        conn = self.conns.get(replica.replica_id)
        if conn is None or conn.lost:
            return False
        self._acquire(replica.replica_id)
        reply.replica = replica
        reply.conn = conn
        reply.rid = conn.start_callback(method, args, {}, meta, reply)
        return True

    async def call(self, method: str, args: tuple, kwargs: dict, meta: dict | None,
                   deadline: float | None = None) -> Any:
        """Send one call; retry on refusal or a connection lost before an answer (once)."""
        lost = 0
        while True:
            replica = await self.choose(deadline, (meta or {}).get("model_id", ""))
            self._acquire(replica.replica_id)
            try:
                try:
                    conn = await self._conn(replica)
                except OSError:
                    self._replica_failed(replica)
                    continue
                rid, fut = conn.start_call(method, args, kwargs, meta)
                try:
                    if deadline is None:
                        kind, payload = await fut
                    else:
                        kind, payload = await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
                except (asyncio.CancelledError, TimeoutError):
                    conn.cancel(rid)
                    raise
            finally:
                self._release(replica.replica_id)
            if kind == wire.OK:
                return payload
            if kind == wire.REJECT:
                self.full_until[replica.replica_id] = time.monotonic() + 0.01
                continue
            if isinstance(payload, wire.ReplicaConnectionError):
                self._replica_failed(replica)
                lost += 1
                if lost <= 1:
                    continue
            raise payload

    async def stream(self, method: str, args: tuple, kwargs: dict, meta: dict | None,
                     deadline: float | None = None) -> Any:
        """An async iterator of ``(kind, payload)`` frames of one streamed call (after its first frame)."""
        lost = 0
        while True:
            replica = await self.choose(deadline, (meta or {}).get("model_id", ""))
            self._acquire(replica.replica_id)
            try:
                conn = await self._conn(replica)
            except OSError:
                self._release(replica.replica_id)
                self._replica_failed(replica)
                continue
            rid, fut = conn.start_stream(method, args, kwargs, meta or {})
            try:
                if deadline is None:
                    first = await fut
                else:
                    first = await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
            except BaseException:
                conn.cancel(rid)
                self._release(replica.replica_id)
                raise
            if first[0] == wire.REJECT:
                self._release(replica.replica_id)
                self.full_until[replica.replica_id] = time.monotonic() + 0.01
                continue
            if first[0] == wire.ERR and isinstance(first[1], wire.ReplicaConnectionError) and lost < 1:
                # the replica died before answering: retry once on another one
                lost += 1
                self._release(replica.replica_id)
                self._replica_failed(replica)
                continue
            return _Stream(self, replica.replica_id, conn, rid, conn.rest(rid), first)


class _Stream:
    """The frames of one streamed call; releases the replica slot when it ends."""

    def __init__(self, router: Router, replica_id: str, conn: wire.ClientConnection, rid: int,
                 queue: asyncio.Queue | None, first: tuple) -> None:
        self.router = router
        self.replica_id = replica_id
        self.conn = conn
        self.rid = rid
        self.queue = queue
        self.first: tuple | None = first
        self.finished = False

    async def next(self) -> tuple:
        if self.first is not None:
            item, self.first = self.first, None
        elif self.queue is None:
            item = (wire.END, None)
        else:
            item = await self.queue.get()
        if item[0] in (wire.OK, wire.END, wire.ERR):
            self.close(cancel=False)
        return item

    def close(self, cancel: bool = True) -> None:
        if not self.finished:
            self.finished = True
            if cancel:
                self.conn.cancel(self.rid)
            self.router._release(self.replica_id)


def _local_node_id() -> str:
    try:
        import distcore

        return distcore.get_runtime_context().get_node_id()
    except Exception:
        return ""


_routers: dict[tuple[str, str], Router] = {}


def get_router(app: str, deployment: str) -> Router:
    key = (app, deployment)
    router = _routers.get(key)
    if router is None:
        router = _routers[key] = Router(app, deployment)
    return router


def all_routers() -> dict[tuple[str, str], Router]:
    return _routers


def reset_routers() -> None:
    for router in _routers.values():
        if router._reporter is not None:
            router._reporter.cancel()
        for conn in router.conns.values():
            conn.close()
    _routers.clear()
