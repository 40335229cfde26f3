"""serve.start / run / status / delete / shutdown and the handle getters (driver side)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import distcore
from distcore.serve._internal import loop as serve_loop
from distcore.serve._internal.config import HTTPOptions, ProxyLocation, gRPCOptions
from distcore.serve._internal.context import current_replica_context
from distcore.serve._internal.deployment import Application, build_app_spec
from distcore.serve._internal.handle import DeploymentHandle
from distcore.serve._internal.table import CONTROLLER_NAME, SERVE_NAMESPACE
from distcore.serve.exceptions import RayServeException

PROXY_NAME = "SERVE_PROXY"
CALL_TIMEOUT_S = 60.0
UNSCHEDULABLE_GRACE_S = 4.0


@dataclass
class DeploymentStatusOverview:
    name: str
    status: str
    message: str = ""
    replica_states: dict[str, int] = field(default_factory=dict)
    target_replicas: int = 0


@dataclass
class ApplicationStatusOverview:
    name: str
    status: str
    message: str = ""
    route_prefix: str | None = None
    deployments: dict[str, DeploymentStatusOverview] = field(default_factory=dict)


@dataclass
class ServeStatus:
    applications: dict[str, ApplicationStatusOverview] = field(default_factory=dict)
    http_port: int | None = None
    grpc_port: int | None = None
    # node id -> proxy state ("HEALTHY", "STARTING", "UNHEALTHY: <why>"), one per node running a proxy
    proxies: dict[str, str] = field(default_factory=dict)


_ports: dict[str, int] = {}


def _ensure_init() -> None:
    if not distcore.is_initialized():
        distcore.init()


def _get(ref: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
    return distcore.get(ref, timeout=timeout)


def _controller_or_none() -> Any:
    _ensure_init()
    try:
        return distcore.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return None


def _head_strategy() -> Any:
    from distcore.util import NodeAffinitySchedulingStrategy

    node_id = distcore.get_runtime_context().get_node_id()
    for n in distcore.nodes():
        if n.get("IsHead") and n.get("Alive"):
            node_id = n["NodeID"]
    return NodeAffinitySchedulingStrategy(node_id, soft=True)


def _session_log_path() -> str | None:
    try:
        ctx = distcore.init(ignore_reinit_error=True)
        session_dir = ctx.get("session_dir") if isinstance(ctx, dict) else None
    except Exception:
        session_dir = None
    if not session_dir:
        return None
    path = os.path.join(session_dir, "logs")
    os.makedirs(path, exist_ok=True)
    return os.path.join(path, "serve_access.log")


def start(http_options: dict | HTTPOptions | None = None, grpc_options: dict | gRPCOptions | None = None,
          detached: bool = True, proxy_location: str | ProxyLocation | None = None, **_ignored: Any) -> None:
    """Start Serve (controller and HTTP proxies) on the connected cluster; a no-op if it runs.

    ``proxy_location``: "HeadOnly" (default: one proxy, on the head), "EveryNode" (one
    per node; nodes sharing a host share the port) or "Disabled" (handles only).
    """
    from distcore.serve._internal.controller import RemoteController
    from distcore.serve._internal.proxy import ProxyActor

    options = HTTPOptions.parse(http_options)
    if proxy_location is not None:
        options.location = ProxyLocation.parse(proxy_location).value
    grpc = gRPCOptions.parse(grpc_options)
    _ensure_init()
    controller = _controller_or_none()
    if controller is None:
        if options.access_log and options.access_log_path is None:
            options.access_log_path = _session_log_path()
        controller = RemoteController.options(
            name=CONTROLLER_NAME, namespace=SERVE_NAMESPACE, lifetime="detached", max_restarts=-1,
            max_task_retries=-1, max_concurrency=1000, num_cpus=0, get_if_exists=True,
            scheduling_strategy=_head_strategy(),
        ).remote(options, grpc)
    info = _get(controller.ping.remote())
    options = info["http_options"]
    if getattr(options, "location", "HeadOnly") == ProxyLocation.Disabled.value:
        return
    try:
        proxy = distcore.get_actor(PROXY_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        proxy = distcore.remote(ProxyActor).options(
            name=PROXY_NAME, namespace=SERVE_NAMESPACE, lifetime="detached", max_restarts=-1, max_concurrency=1000,
            num_cpus=0, get_if_exists=True, scheduling_strategy=_head_strategy(),
        ).remote(options, grpc)
    try:
        ports = _get(proxy.ready.remote())
    except Exception as exc:
        _kill_quietly(proxy)
        _kill_quietly(controller)
        raise RayServeException(f"Serve's proxy failed to start: {exc}") from exc
    _ports.update(ports)


def _kill_quietly(actor: Any) -> None:
    try:
        distcore.kill(actor)
    except Exception:
        pass


def _controller() -> Any:
    controller = _controller_or_none()
    if controller is None:
        raise RayServeException("Serve is not running: call serve.start() or serve.run() first")
    return controller


def run(target: Application, blocking: bool = False, name: str = "default", route_prefix: str | None = "/",
        logging_config: Any = None, _local_testing_mode: bool = False, timeout_s: float = 300.0) -> DeploymentHandle:
    """Deploy ``target`` as application ``name`` and wait until it runs; return its ingress handle."""
    spec = build_app_spec(target, name, route_prefix)
    start()
    return _deploy_and_wait(spec, blocking, timeout_s)


def _deploy_and_wait(spec: Any, blocking: bool, timeout_s: float) -> DeploymentHandle:
    controller = _controller()
    _get(controller.deploy_application.remote(spec))
    wait_for_application(spec.name, timeout_s)
    handle = DeploymentHandle(spec.ingress, spec.name)
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return handle


def wait_for_application(name: str, timeout_s: float) -> None:
    controller = _controller()
    deadline = time.monotonic() + timeout_s
    stuck_since: float | None = None
    while True:
        st = _get(controller.status.remote()).get(name)
        if st is None:
            raise RayServeException(f"application '{name}' disappeared while deploying")
        if st["status"] == "RUNNING":
            return
        if st["status"] == "DEPLOY_FAILED":
            raise RayServeException(f"Deploying application '{name}' failed: {st['message']}")
        blocked = [d["unschedulable"] for d in st["deployments"].values() if d.get("unschedulable")]
        if blocked:
            now = time.monotonic()
            stuck_since = stuck_since or now
            if any(b.startswith("cannot place") for b in blocked) or now - stuck_since > UNSCHEDULABLE_GRACE_S:
                raise RayServeException(f"Application '{name}' cannot be placed: {'; '.join(blocked)}")
        else:
            stuck_since = None
        if time.monotonic() > deadline:
            raise TimeoutError(f"application '{name}' was not running after {timeout_s} s: {st['message'] or st}")
        time.sleep(0.05)


def status() -> ServeStatus:
    controller = _controller_or_none()
    out = ServeStatus(http_port=_ports.get("http_port"), grpc_port=_ports.get("grpc_port"))
    if controller is None:
        return out
    try:
        head = distcore.get_actor(PROXY_NAME, namespace=SERVE_NAMESPACE)
        out.proxies[_get(head.ready.remote(), 10)["node_id"]] = "HEALTHY"
    except ValueError:
        pass  # no proxy (proxy_location="Disabled")
    except Exception as exc:
        out.proxies["head"] = f"UNHEALTHY: {type(exc).__name__}: {exc}"
    out.proxies.update(_get(controller.proxy_statuses.remote()))
    for name, st in _get(controller.status.remote()).items():
        deps = {d: DeploymentStatusOverview(d, v["status"], v["message"], v["replica_states"], v["target"])
                for d, v in st["deployments"].items()}
        out.applications[name] = ApplicationStatusOverview(name, st["status"], st["message"], st["route_prefix"],
                                                           deps)
    return out


def delete(name: str, _blocking: bool = True, timeout_s: float = 60.0) -> None:
    controller = _controller()
    _get(controller.delete_apps.remote([name]))
    if _blocking:
        deadline = time.monotonic() + timeout_s
        while name in _get(controller.status.remote()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"application '{name}' was not deleted within {timeout_s} s")
            time.sleep(0.05)


def shutdown(timeout_s: float = 60.0) -> None:
    """Delete every application and stop the controller and proxy."""
    if not distcore.is_initialized():
        return
    controller = _controller_or_none()
    node_proxies: list[str] = []
    if controller is not None:
        try:
            node_proxies = _get(controller.proxy_actor_names.remote(), 10)
        except Exception:
            pass
        try:
            _get(controller.graceful_shutdown.remote(), timeout_s)
        except Exception:
            pass
    for name in node_proxies:  # the controller stopped them; make sure none outlives it
        try:
            _kill_quietly(distcore.get_actor(name, namespace=SERVE_NAMESPACE))
        except ValueError:
            pass
    try:
        proxy = distcore.get_actor(PROXY_NAME, namespace=SERVE_NAMESPACE)
        try:
            _get(proxy.stop.remote(), 15)
        except Exception:
            pass
        _kill_quietly(proxy)
    except ValueError:
        pass
    if controller is not None:
        _kill_quietly(controller)
    try:
        from distcore.experimental import internal_kv
        from distcore.serve._internal.controller import CHECKPOINT_KEY

        internal_kv._internal_kv_del(CHECKPOINT_KEY, namespace=SERVE_NAMESPACE)
    except Exception:
        pass
    _reset_local()
    port = _ports.get("http_port")
    _ports.clear()
    if port:
        _wait_port_free(port, 10.0)


def _wait_port_free(port: int, timeout_s: float) -> None:
    """The killed proxy's process may hold its port a moment longer: wait so a new serve.start can bind it."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.05)


def _reset_local() -> None:
    from distcore.serve._internal.router import reset_routers
    from distcore.serve._internal.table import reset_table_client

    async def reset() -> None:
        reset_routers()
        reset_table_client()

    try:
        serve_loop.run_sync(reset(), timeout=10)
    except Exception:
        pass


def get_app_handle(name: str) -> DeploymentHandle:
    controller = _controller()
    spec = _get(controller.get_app_spec.remote(name))
    if spec is None:
        raise RayServeException(f"application '{name}' does not exist")
    return DeploymentHandle(spec.ingress, name)


def get_deployment_handle(deployment_name: str, app_name: str | None = None) -> DeploymentHandle:
    if app_name is None:
        ctx = current_replica_context()
        app_name = ctx.app_name if ctx is not None else "default"
    controller = _controller()
    spec = _get(controller.get_app_spec.remote(app_name))
    if spec is None:
        raise RayServeException(f"application '{app_name}' does not exist")
    if deployment_name not in {d.name for d in spec.deployments}:
        raise RayServeException(f"application '{app_name}' has no deployment '{deployment_name}' "
                                f"(it has {sorted(d.name for d in spec.deployments)})")
    return DeploymentHandle(deployment_name, app_name)
