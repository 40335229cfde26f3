"""One deployment's replicas, reconciled towards its target (runs inside the controller).

Each tick: start replicas up to the target (new code version first), stop old
versions only once new ones run (rolling update), replace replicas that failed
their health check or died, apply autoscaling, and explain in ``message`` why
a replica cannot start (missing resources, a failing constructor).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import distcore
from distcore.serve._internal.autoscaling import AutoscalingState, decide
from distcore.serve._internal.config import DEFAULT_REPLICA_NUM_CPUS
from distcore.serve._internal.replica import ReplicaActor
from distcore.serve._internal.specs import DeploymentSpec
from distcore.serve._internal.table import SERVE_NAMESPACE, DeploymentRoute, ReplicaInfo

STARTING, RUNNING, STOPPING = "STARTING", "RUNNING", "STOPPING"
MAX_CONSECUTIVE_FAILURES = 3
PLACEMENT_GRACE_S = 1.5
# a router's report of queued + in-flight requests counts this long (routers re-send every second while busy)
HANDLE_METRICS_TTL_S = 3.0

_RemoteReplica = distcore.remote(ReplicaActor)


HOSTED_PREFIX = "HOSTED::"
PROXY_NAME = "SERVE_PROXY"


class _HostedMethod:
    def __init__(self, proxy: Any, replica_id: str, method: str) -> None:
        self.proxy, self.replica_id, self.method = proxy, replica_id, method

    def remote(self, *args: Any) -> Any:
        return self.proxy.replica_call.remote(self.replica_id, self.method, args)


class HostedReplica:
    """A replica living inside the proxy process, called like a replica actor."""

    def __init__(self, proxy: Any, replica_id: str) -> None:
        self.proxy = proxy
        self.replica_id = replica_id

    def __getattr__(self, name: str) -> _HostedMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _HostedMethod(self.proxy, self.replica_id, name)

    def kill(self) -> None:
        try:
            self.proxy.remove_replica.remote(self.replica_id)
        except Exception:
            pass


@dataclass
class Replica:
    replica_id: str
    actor_name: str
    version: str
    state: str = STARTING
    actor: Any = None
    info: ReplicaInfo | None = None
    started_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task | None = None
    last_health: float = field(default_factory=time.monotonic)
    health_task: asyncio.Task | None = None
    ongoing: int = 0


class DeploymentState:
    def __init__(self, app: str, spec: DeploymentSpec, token: str, on_change: Any) -> None:
        self.app = app
        self.spec = spec
        self.token = token
        self.on_change = on_change
        self.replicas: dict[str, Replica] = {}
        self.target = spec.config.initial_target()
        self.message = ""
        self.failures = 0
        self.failed = False
        self.auto = AutoscalingState()
        self.demand_at = 0.0
        # router id -> (queued, in flight, when reported)
        self.handle_metrics: dict[str, tuple[int, int, float]] = {}
        self.deleting = False
        self.unschedulable = ""
        # the app's ingress with one fixed replica may live in the proxy process (no socket hop)
        self.colocate_ingress = False

    # ---------------------------------------------------------------- spec changes

    def update(self, spec: DeploymentSpec) -> bool:
        """Take a new spec; return True if anything changed."""
        old = self.spec
        changed = False
        if spec.replica_version() != old.replica_version() or spec.serialized_def != old.serialized_def and \
                spec.config.version is None:
            changed = True
            self.failures, self.failed, self.message = 0, False, ""
        if spec.config.user_config != old.config.user_config:
            changed = True
            for r in self.replicas.values():
                if r.state == RUNNING and r.version == spec.replica_version():
                    r.actor.reconfigure.remote(spec.config.user_config)
        if (spec.config.num_replicas != old.config.num_replicas
                or spec.config.autoscaling_config != old.config.autoscaling_config):
            changed = True
            self.target = spec.config.initial_target()
        if spec.config != old.config:
            changed = True
        self.spec = spec
        return changed

    # ---------------------------------------------------------------- status

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.replicas.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    def running(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == RUNNING]

    def status(self) -> str:
        if self.failed:
            return "DEPLOY_FAILED"
        version = self.spec.replica_version()
        current = [r for r in self.running() if r.version == version]
        others = [r for r in self.replicas.values() if r.version != version or r.state != RUNNING]
        if len(current) == self.target and not others:
            return "HEALTHY"
        if self.spec.config.autoscaling_config is not None and current and not any(
                r.version != version for r in self.replicas.values()):
            return "UPSCALING" if len(current) < self.target else (
                "DOWNSCALING" if len(self.replicas) > self.target else "HEALTHY")
        return "UPDATING"

    def route(self) -> DeploymentRoute:
        c = self.spec.config
        a = c.autoscaling_config
        return DeploymentRoute(
            app=self.app, name=self.spec.name, max_ongoing=c.max_ongoing_requests, queue_cap=c.queue_cap,
            request_timeout_s=c.request_timeout_s,
            replicas=[r.info for r in self.running() if r.info is not None],
            autoscaling_min=a.min_replicas if a else None,
            status_message=self.message,
        )

    # ---------------------------------------------------------------- reconcile

    def actor_options(self) -> dict[str, Any]:
        opts = dict(self.spec.config.ray_actor_options)
        if opts.get("num_cpus") is None:
            opts["num_cpus"] = DEFAULT_REPLICA_NUM_CPUS
        return opts

    def reconcile(self, now: float) -> None:
        if self.deleting:
            for r in list(self.replicas.values()):
                if r.state != STOPPING:
                    self._stop(r)
            return
        self._autoscale(now)
        version = self.spec.replica_version()
        live = [r for r in self.replicas.values() if r.state != STOPPING]
        current = [r for r in live if r.version == version]
        old = [r for r in live if r.version != version]
        if not self.failed and len(current) < self.target:
            for _ in range(self.target - len(current)):
                self._start()
        elif len(current) > self.target:
            # stop the extra ones: starting first, then the newest
            extra = sorted(current, key=lambda r: (r.state == RUNNING, r.started_at), reverse=False)
            for r in extra[: len(current) - self.target]:
                self._stop(r)
        # rolling update: an old replica stops once a new one runs in its place
        running_new = sum(1 for r in current if r.state == RUNNING)
        keep_old = max(0, self.target - running_new) if not self.failed else len(old)
        for r in sorted(old, key=lambda r: r.state == RUNNING)[: max(0, len(old) - keep_old)]:
            self._stop(r)
        self._check_placement(now)

    def record_handle_metrics(self, router_id: str, queued: int, inflight: int, now: float) -> None:
        if queued or inflight:
            self.handle_metrics[router_id] = (queued, inflight, now)
        else:
            self.handle_metrics.pop(router_id, None)

    def handle_requests(self, now: float) -> tuple[int, int]:
        """Requests queued in routers and in flight from them to replicas, over fresh router reports."""
        queued = inflight = 0
        for key, (q, i, at) in list(self.handle_metrics.items()):
            if now - at > HANDLE_METRICS_TTL_S:
                del self.handle_metrics[key]
                continue
            queued += q
            inflight += i
        return queued, inflight

    def _autoscale(self, now: float) -> None:
        cfg = self.spec.config.autoscaling_config
        if cfg is None:
            return
        running = self.running()
        queued, inflight = self.handle_requests(now)
        # Ray's metric: requests running on replicas plus those queued in routers and handles
        total = max(sum(r.ongoing for r in running), queued + inflight)
        current = self.target
        waiting = not running and (now - self.demand_at < 5.0 or queued > 0)
        if waiting:
            total = max(total, 1)
        new = decide(cfg, self.auto, current, total, now)
        if new != self.target:
            self.target = new
            self.on_change()
        msg = (f"scaling up from zero: requests are waiting for a replica of '{self.spec.name}'"
               if waiting and not running else "")
        if msg != self.message and (msg or self.message.startswith("scaling up from zero")):
            self.message = msg
            self.on_change()

    def _can_host_in_proxy(self) -> bool:
        c = self.spec.config
        opts = c.ray_actor_options
        return (self.colocate_ingress and c.autoscaling_config is None and c.num_replicas == 1
                and not opts.get("num_gpus") and not opts.get("resources") and not opts.get("runtime_env")
                and not opts.get("scheduling_strategy") and float(opts.get("num_cpus") or 0) <= 1)

    def _start(self) -> None:
        rid = uuid.uuid4().hex[:8]
        replica_id = f"{self.spec.name}#{rid}"
        spec = self.spec
        ctor = (self.app, spec.name, replica_id, spec.serialized_def, spec.init_args, spec.init_kwargs,
                spec.config.max_ongoing_requests, self.token, spec.is_function)
        actor: Any = None
        name = f"SERVE_REPLICA::{self.app}#{self.spec.name}#{rid}"
        if self._can_host_in_proxy():
            try:
                proxy = distcore.get_actor(PROXY_NAME, namespace=SERVE_NAMESPACE)
                proxy.host_replica.remote(replica_id, ctor)
                actor = HostedReplica(proxy, replica_id)
                name = HOSTED_PREFIX + replica_id
            except ValueError:
                actor = None
        if actor is None:
            actor = _RemoteReplica.options(
                name=name, namespace=SERVE_NAMESPACE, lifetime="detached", max_restarts=0,
                max_concurrency=1000, **self.actor_options(),
            ).remote(*ctor)
        r = Replica(replica_id=replica_id, actor_name=name, version=self.spec.replica_version(), actor=actor)
        self.replicas[r.replica_id] = r
        r.task = asyncio.get_running_loop().create_task(self._initialize(r, spec))

    async def _initialize(self, r: Replica, spec: DeploymentSpec) -> None:
        try:
            has_cfg = spec.config.user_config is not None
            info = await r.actor.initialize.remote(spec.config.user_config, has_cfg)
        except Exception as exc:  # the constructor or reconfigure raised, or the actor died
            if r.state == STOPPING:
                return
            self.failures += 1
            self.message = f"replica {r.replica_id} failed to start: {_short(exc)}"
            self.replicas.pop(r.replica_id, None)
            _kill(r.actor)
            if self.failures >= MAX_CONSECUTIVE_FAILURES:
                self.failed = True
                self.message = (f"deployment '{spec.name}' failed to start {self.failures} times; last error: "
                                f"{_short(exc)}")
            self.on_change()
            return
        if r.state == STOPPING:
            return
        r.info = ReplicaInfo(r.replica_id, info["host"], info["port"], info["node_id"], info.get("uds", ""))
        r.state = RUNNING
        r.last_health = time.monotonic()
        self.failures = 0
        self.unschedulable = ""
        if self.message.startswith(("replica ", "waiting", "cannot")):
            self.message = ""
        self.on_change()

    def _check_placement(self, now: float) -> None:
        starting = [r for r in self.replicas.values() if r.state == STARTING and now - r.started_at > PLACEMENT_GRACE_S]
        if not starting:
            return
        need = self.actor_options()
        wanted = {"CPU": float(need.get("num_cpus") or 0), "GPU": float(need.get("num_gpus") or 0)}
        wanted.update({k: float(v) for k, v in (need.get("resources") or {}).items()})
        wanted = {k: v for k, v in wanted.items() if v > 0}
        if not wanted:
            return
        try:
            nodes = [n for n in distcore.nodes() if n.get("Alive")]
            avail = distcore.available_resources()
        except Exception:
            return
        fits_somewhere = any(all(n["Resources"].get(k, 0.0) >= v for k, v in wanted.items()) for n in nodes)
        missing = {k: v - avail.get(k, 0.0) for k, v in wanted.items() if avail.get(k, 0.0) < v}
        if not fits_somewhere:
            largest = {k: max((n["Resources"].get(k, 0.0) for n in nodes), default=0.0) for k in wanted}
            msg = (f"cannot place a replica of deployment '{self.spec.name}': it needs {wanted} but no node has "
                   f"that much (largest node: {largest}); lower ray_actor_options or add nodes")
        elif missing:
            msg = (f"waiting for resources: deployment '{self.spec.name}' has {len(starting)} replica(s) that cannot "
                   f"be placed; each needs {wanted}, the cluster has {{{', '.join(f'{k}: {avail.get(k, 0.0):g}' for k in wanted)}}} "
                   f"available (missing {missing})")
        else:
            return
        if msg != self.message:
            self.message = msg
            self.unschedulable = msg
            self.on_change()

    def _stop(self, r: Replica) -> None:
        was_running = r.state == RUNNING
        r.state = STOPPING
        self.on_change()
        asyncio.get_running_loop().create_task(self._drain_and_kill(r, was_running))

    async def _drain_and_kill(self, r: Replica, was_running: bool) -> None:
        if was_running:
            try:
                # let routers see the new table before the replica starts refusing
                await asyncio.sleep(0.2)
                timeout = self.spec.config.graceful_shutdown_timeout_s
                await asyncio.wait_for(r.actor.prepare_shutdown.remote(timeout), timeout + 5)
            except Exception:
                pass
        _kill(r.actor)
        self.replicas.pop(r.replica_id, None)
        self.on_change()

    async def poll_metrics(self, now: float) -> None:
        """Ongoing requests for autoscaling; a replica that does not answer its health check is replaced."""
        running = self.running()
        if not running:
            return
        period = self.spec.config.health_check_period_s
        timeout = self.spec.config.health_check_timeout_s

        async def one(r: Replica) -> None:
            try:
                if now - r.last_health >= period:
                    await asyncio.wait_for(r.actor.check_health.remote(), timeout)
                    r.last_health = now
                m = await asyncio.wait_for(r.actor.get_metrics.remote(), timeout)
                r.ongoing = m["ongoing"]
            except Exception as exc:
                if r.state == RUNNING:
                    self.message = f"replica {r.replica_id} was unhealthy and is being replaced: {_short(exc)}"
                    r.state = STOPPING
                    _kill(r.actor)
                    self.replicas.pop(r.replica_id, None)
                    self.on_change()

        await asyncio.gather(*(one(r) for r in running))

    def recover(self, names: list[tuple[str, str, str]]) -> None:
        """Adopt replicas that survived a controller restart (replica_id, actor_name, version)."""
        for replica_id, actor_name, version in names:
            try:
                if actor_name.startswith(HOSTED_PREFIX):
                    actor = HostedReplica(distcore.get_actor(PROXY_NAME, namespace=SERVE_NAMESPACE), replica_id)
                else:
                    actor = distcore.get_actor(actor_name, namespace=SERVE_NAMESPACE)
            except Exception:
                continue
            r = Replica(replica_id=replica_id, actor_name=actor_name, version=version, actor=actor)
            self.replicas[replica_id] = r
            r.task = asyncio.get_running_loop().create_task(self._readopt(r))

    async def _readopt(self, r: Replica) -> None:
        try:
            info = await asyncio.wait_for(r.actor.initialize_info.remote(60.0), 70)
            r.info = ReplicaInfo(r.replica_id, info["host"], info["port"], info["node_id"], info.get("uds", ""))
            r.state = RUNNING
        except Exception:
            _kill(r.actor)
            self.replicas.pop(r.replica_id, None)
        self.on_change()


def _kill(actor: Any) -> None:
    if isinstance(actor, HostedReplica):
        actor.kill()
        return
    try:
        distcore.kill(actor)
    except Exception:
        pass


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 6:
        text = "\n".join(lines[-6:])
    return f"{type(exc).__name__}: {text}"[:2000]
