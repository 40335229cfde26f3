"""The Serve controller actor: applications in, replicas and a routing table out.

Detached and restartable: every accepted change is checkpointed in the
cluster KV (``internal_kv``, namespace ``serve``) before the call returns, and a
restarted controller reloads it and re-adopts the replicas that still run.
Routers follow the table with ``listen(version)`` (a long poll).
"""

from __future__ import annotations

import asyncio
import pickle
import secrets
import time
from typing import Any

import cloudpickle

import distcore
from distcore.experimental import internal_kv
from distcore.serve._internal.config import HTTPOptions
from distcore.serve._internal.deployment_state import DeploymentState
from distcore.serve._internal.specs import AppSpec
from distcore.serve._internal.table import SERVE_NAMESPACE, Table

CHECKPOINT_KEY = "serve/controller_checkpoint"
TICK_S = 0.1
METRICS_S = 0.5
# how often the controller looks for nodes without a proxy (proxy_location="EveryNode")
PROXY_CHECK_S = 1.0


class ServeController:
    def __init__(self, http_options: HTTPOptions | None = None, grpc_options: Any = None) -> None:
        self.apps: dict[str, AppSpec] = {}
        self.states: dict[tuple[str, str], DeploymentState] = {}
        self.deleting: set[str] = set()
        self.app_messages: dict[str, str] = {}
        self.token = secrets.token_hex(16)
        self.http_options = http_options or HTTPOptions()
        self.grpc_options = grpc_options
        self.version = 1
        self._changed: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None
        self._table: Table | None = None
        self._restored: dict | None = None
        self._dirty = False
        # non-head nodes' proxies (proxy_location="EveryNode"): node id -> actor, and their state
        self.node_proxies: dict[str, Any] = {}
        self.proxy_states: dict[str, str] = {}
        self._proxy_check_task: asyncio.Task | None = None
        raw = internal_kv._internal_kv_get(CHECKPOINT_KEY, namespace=SERVE_NAMESPACE)
        if raw:
            self._restored = pickle.loads(raw)
            self.token = self._restored["token"]
            self.http_options = self._restored["http_options"]
            self.grpc_options = self._restored.get("grpc_options")
            self.version = self._restored.get("version", 1) + 1000

    # ---------------------------------------------------------------- loop

    def _ensure_loop(self) -> None:
        if self._loop_task is not None:
            return
        self._changed = asyncio.Event()
        if self._restored is not None:
            restored, self._restored = self._restored, None
            for app in restored["apps"].values():
                self.apps[app.name] = app
                for spec in app.deployments:
                    st = DeploymentState(app.name, spec, self.token, self._mark_changed)
                    st.target = restored["targets"].get((app.name, spec.name), st.target)
                    st.recover(restored["replicas"].get((app.name, spec.name), []))
                    self.states[(app.name, spec.name)] = st
                self._set_ingress_flags(app)
            self.deleting = set(restored.get("deleting", ()))
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def _mark_changed(self) -> None:
        self._dirty = True
        self.version += 1
        self._table = None
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def _run(self) -> None:
        last_metrics = 0.0
        last_ckpt = 0.0
        last_proxies = 0.0
        while True:
            now = time.monotonic()
            try:
                for key, st in list(self.states.items()):
                    st.reconcile(now)
                    if st.deleting and not st.replicas:
                        del self.states[key]
                        self._mark_changed()
                for name in list(self.deleting):
                    if not any(k[0] == name for k in self.states):
                        self.deleting.discard(name)
                        self.apps.pop(name, None)
                        self._mark_changed()
                if now - last_proxies >= PROXY_CHECK_S and getattr(self.http_options, "location", "") == "EveryNode" and (
                        self._proxy_check_task is None or self._proxy_check_task.done()):
                    last_proxies = now
                    self._proxy_check_task = asyncio.get_running_loop().create_task(self._reconcile_proxies())
                if now - last_metrics >= METRICS_S:
                    last_metrics = now
                    await asyncio.gather(*(st.poll_metrics(now) for st in self.states.values()))
                if self._dirty or now - last_ckpt >= 5.0:
                    last_ckpt = now
                    self._dirty = False
                    self._checkpoint()
            except Exception:  # never let one bad tick stop the controller
                import logging

                logging.getLogger("distcore.serve").exception("serve controller tick failed")
            await asyncio.sleep(TICK_S)

    async def _reconcile_proxies(self) -> None:
        """Start a proxy on every live non-head node that has none (the head's comes from serve.start)."""
        from distcore.serve._internal.proxy import ProxyActor
        from distcore.serve._internal.table import PROXY_NAME
        from distcore.util import NodeAffinitySchedulingStrategy

        nodes = await asyncio.get_running_loop().run_in_executor(None, distcore.nodes)
        alive = {n["NodeID"] for n in nodes if n.get("Alive") and not n.get("IsHead")}
        for node_id in sorted(alive - set(self.node_proxies)):
            actor = distcore.remote(ProxyActor).options(
                name=f"{PROXY_NAME}::{node_id}", namespace=SERVE_NAMESPACE, lifetime="detached", max_restarts=-1,
                max_concurrency=1000, num_cpus=0, get_if_exists=True,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self.http_options, self.grpc_options)
            self.node_proxies[node_id] = actor
            self.proxy_states[node_id] = "STARTING"
            asyncio.get_running_loop().create_task(self._proxy_ready(node_id, actor))
        for node_id in set(self.node_proxies) - alive:  # the node is gone, and its proxy with it
            self.node_proxies.pop(node_id, None)
            self.proxy_states.pop(node_id, None)

    async def _proxy_ready(self, node_id: str, actor: Any) -> None:
        try:
            await asyncio.wait_for(actor.ready.remote(), 60)
            state = "HEALTHY"
        except Exception as exc:
            state = f"UNHEALTHY: {type(exc).__name__}: {str(exc)[:300]}"
        if self.node_proxies.get(node_id) is actor:
            self.proxy_states[node_id] = state

    async def proxy_statuses(self) -> dict[str, str]:
        """Non-head nodes' proxies: node id -> HEALTHY, STARTING or UNHEALTHY: <why>."""
        self._ensure_loop()
        return dict(self.proxy_states)

    async def proxy_actor_names(self) -> list[str]:
        from distcore.serve._internal.table import PROXY_NAME

        return [f"{PROXY_NAME}::{node_id}" for node_id in self.node_proxies]

    async def _stop_node_proxies(self) -> None:
        proxies, self.node_proxies = self.node_proxies, {}
        self.proxy_states.clear()
        for actor in proxies.values():
            try:
                await asyncio.wait_for(actor.stop.remote(), 10)
            except Exception:
                pass
            try:
                distcore.kill(actor)
            except Exception:
                pass

    def _checkpoint(self) -> None:
        state = {
            "token": self.token,
            "http_options": self.http_options,
            "grpc_options": self.grpc_options,
            "version": self.version,
            "apps": self.apps,
            "deleting": sorted(self.deleting),
            "targets": {k: st.target for k, st in self.states.items()},
            "replicas": {k: [(r.replica_id, r.actor_name, r.version) for r in st.replicas.values()
                             if r.state != "STOPPING"] for k, st in self.states.items()},
        }
        internal_kv._internal_kv_put(CHECKPOINT_KEY, cloudpickle.dumps(state), namespace=SERVE_NAMESPACE)

    # ---------------------------------------------------------------- API

    async def ping(self) -> dict:
        self._ensure_loop()
        return {"token": self.token, "http_options": self.http_options}

    async def get_http_options(self) -> HTTPOptions:
        return self.http_options

    async def deploy_application(self, app: AppSpec) -> None:
        self._ensure_loop()
        if app.route_prefix is not None:
            for other in self.apps.values():
                if other.name != app.name and other.route_prefix == app.route_prefix and other.name not in self.deleting:
                    raise ValueError(f"route_prefix '{app.route_prefix}' is already used by application "
                                     f"'{other.name}'; pick another route_prefix or delete that application")
        self.deleting.discard(app.name)
        old = self.apps.get(app.name)
        changed = old is None or old.route_prefix != app.route_prefix or old.ingress != app.ingress
        new_names = {d.name for d in app.deployments}
        for spec in app.deployments:
            st = self.states.get((app.name, spec.name))
            if st is None or st.deleting:
                if st is not None:
                    # a deployment being deleted is brought back: start fresh beside the old one
                    st.deleting = False
                    st.update(spec)
                else:
                    self.states[(app.name, spec.name)] = DeploymentState(app.name, spec, self.token, self._mark_changed)
                changed = True
            else:
                changed = st.update(spec) or changed
        for (name, dep), st in self.states.items():
            if name == app.name and dep not in new_names:
                st.deleting = True
                changed = True
        self.apps[app.name] = app
        self._set_ingress_flags(app)
        self.app_messages.pop(app.name, None)
        if changed:
            self._mark_changed()
        self._checkpoint()

    def _set_ingress_flags(self, app: AppSpec) -> None:
        colocate = getattr(self.http_options, "colocate_ingress", False)
        for (name, dep), st in self.states.items():
            if name == app.name:
                st.colocate_ingress = colocate and dep == app.ingress and app.route_prefix is not None

    async def delete_apps(self, names: list[str]) -> None:
        self._ensure_loop()
        for name in names:
            if name not in self.apps:
                continue
            self.deleting.add(name)
            for (app, _), st in self.states.items():
                if app == name:
                    st.deleting = True
        self._mark_changed()
        self._checkpoint()

    async def record_demand(self, app: str, deployment: str) -> None:
        st = self.states.get((app, deployment))
        if st is not None:
            st.demand_at = time.monotonic()

    async def record_handle_metrics(self, app: str, deployment: str, router_id: str, queued: int,
                                    inflight: int) -> None:
        """A router's queued and in-flight requests to one deployment (autoscaling counts both, as Ray does)."""
        st = self.states.get((app, deployment))
        if st is not None:
            st.record_handle_metrics(router_id, queued, inflight, time.monotonic())

    async def listen(self, version: int, timeout_s: float) -> Table | None:
        self._ensure_loop()
        if version == self.version:
            assert self._changed is not None
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return None
        return self._build_table()

    def _build_table(self) -> Table:
        if self._table is not None and self._table.version == self.version:
            return self._table
        t = Table(version=self.version, token=self.token, request_timeout_s=self.http_options.request_timeout_s)
        for name, app in self.apps.items():
            if name not in self.deleting:
                t.apps[name] = (app.route_prefix, app.ingress)
        for key, st in self.states.items():
            if not st.deleting:
                t.deployments[key] = st.route()
        self._table = t
        return t

    async def get_table(self) -> Table:
        self._ensure_loop()
        return self._build_table()

    async def status(self) -> dict:
        self._ensure_loop()
        out: dict[str, Any] = {}
        for name, app in self.apps.items():
            deps = {}
            for spec in app.deployments:
                st = self.states.get((name, spec.name))
                if st is None:
                    continue
                deps[spec.name] = {"status": st.status(), "message": st.message,
                                   "replica_states": st.counts(), "target": st.target,
                                   "unschedulable": st.unschedulable}
            if name in self.deleting:
                status = "DELETING"
            elif any(d["status"] == "DEPLOY_FAILED" for d in deps.values()):
                status = "DEPLOY_FAILED"
            elif all(d["status"] in ("HEALTHY", "UPSCALING", "DOWNSCALING") for d in deps.values()):
                status = "RUNNING"
            else:
                status = "DEPLOYING"
            message = "; ".join(d["message"] for d in deps.values() if d["message"])
            out[name] = {"status": status, "message": message, "route_prefix": app.route_prefix,
                         "ingress": app.ingress, "deployments": deps}
        return out

    async def get_app_spec(self, name: str) -> AppSpec | None:
        return self.apps.get(name)

    async def graceful_shutdown(self) -> None:
        self._ensure_loop()
        await self.delete_apps(list(self.apps))
        deadline = time.monotonic() + 30
        while self.states and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._proxy_check_task is not None:
            self._proxy_check_task.cancel()
        self.http_options.location = "HeadOnly"  # no new node proxies from here on
        await self._stop_node_proxies()
        internal_kv._internal_kv_del(CHECKPOINT_KEY, namespace=SERVE_NAMESPACE)

    async def replica_actor_names(self) -> list[str]:
        return [r.actor_name for st in self.states.values() for r in st.replicas.values()]


def checkpoint_exists() -> bool:
    return bool(internal_kv._internal_kv_exists(CHECKPOINT_KEY, namespace=SERVE_NAMESPACE))


RemoteController = distcore.remote(ServeController)
