"""Validated configuration records: deployments, autoscaling, HTTP and gRPC options.

Every check raises a typed error that names the option, the value given and what
is valid, so a bad ``@serve.deployment(...)`` or config file fails at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

DEFAULT_MAX_ONGOING_REQUESTS = 5
# Ray's -1 means "unbounded"; we never queue without bound: -1 becomes this cap.
DEFAULT_QUEUE_CAP = 1000
DEFAULT_HTTP_PORT = 8000
# Replicas reserve a small CPU share by default so a 3-deployment app fits on a 2-CPU laptop.
DEFAULT_REPLICA_NUM_CPUS = 0.1


def _fail(name: str, value: Any, valid: str, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"Invalid value for '{name}': {value!r}. Valid: {valid}.")


def check_int(name: str, value: Any, minimum: int, allow: tuple[int, ...] = ()) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, f"an int >= {minimum}", TypeError)
    if value < minimum and value not in allow:
        extra = f" (or {', '.join(map(str, allow))})" if allow else ""
        raise _fail(name, value, f"an int >= {minimum}{extra}")
    return value


def check_float(name: str, value: Any, minimum: float = 0.0, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, value, "a finite number", TypeError)
    if value < minimum or (positive and value <= 0):
        raise _fail(name, value, f"a number {'>' if positive else '>='} {minimum}")
    return float(value)


@dataclass
class AutoscalingConfig:
    """Replica count follows ongoing requests per replica (Ray's ``autoscaling_config``)."""

    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    smoothing_factor: float = 1.0
    metrics_interval_s: float = 0.5
    look_back_period_s: float = 2.0

    @classmethod
    def parse(cls, value: Any) -> AutoscalingConfig:
        if isinstance(value, AutoscalingConfig):
            return value
        if not isinstance(value, dict):
            raise _fail("autoscaling_config", value, "a dict or AutoscalingConfig", TypeError)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"Unknown autoscaling_config option(s) {unknown}. Valid: {sorted(known)}.")
        cfg = cls(**value)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        check_int("autoscaling_config.min_replicas", self.min_replicas, 0)
        check_int("autoscaling_config.max_replicas", self.max_replicas, 1)
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscaling_config: min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas}).")
        if self.initial_replicas is not None:
            check_int("autoscaling_config.initial_replicas", self.initial_replicas, 0)
            if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
                raise ValueError(
                    f"autoscaling_config: initial_replicas ({self.initial_replicas}) must be within "
                    f"[min_replicas, max_replicas] = [{self.min_replicas}, {self.max_replicas}].")
        check_float("autoscaling_config.target_ongoing_requests", self.target_ongoing_requests, positive=True)
        check_float("autoscaling_config.upscale_delay_s", self.upscale_delay_s)
        check_float("autoscaling_config.downscale_delay_s", self.downscale_delay_s)
        check_float("autoscaling_config.smoothing_factor", self.smoothing_factor, positive=True)
        check_float("autoscaling_config.metrics_interval_s", self.metrics_interval_s, positive=True)
        for name in ("upscaling_factor", "downscaling_factor"):
            if getattr(self, name) is not None:
                check_float(f"autoscaling_config.{name}", getattr(self, name), positive=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ACTOR_OPTION_KEYS = {"num_cpus", "num_gpus", "resources", "runtime_env", "memory", "accelerator_type",
                      "label_selector", "scheduling_strategy"}


def check_actor_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("ray_actor_options", value, "a dict such as {'num_cpus': 1}", TypeError)
    unknown = sorted(set(value) - _ACTOR_OPTION_KEYS)
    if unknown:
        raise ValueError(f"Unknown ray_actor_options key(s) {unknown}. Valid: {sorted(_ACTOR_OPTION_KEYS)}.")
    for key in ("num_cpus", "num_gpus", "memory"):
        if value.get(key) is not None:
            check_float(f"ray_actor_options.{key}", value[key])
    if value.get("resources") is not None and not isinstance(value["resources"], dict):
        raise _fail("ray_actor_options.resources", value["resources"], "a dict name -> quantity", TypeError)
    return dict(value)


@dataclass
class DeploymentConfig:
    """Everything that describes one deployment except its code and arguments."""

    num_replicas: int | None = 1
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS
    max_queued_requests: int = -1
    user_config: Any = None
    autoscaling_config: AutoscalingConfig | None = None
    ray_actor_options: dict[str, Any] = field(default_factory=dict)
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0
    request_timeout_s: float | None = None
    version: str | None = None

    def validate(self) -> None:
        if self.num_replicas is not None and self.num_replicas != "auto":
            check_int("num_replicas", self.num_replicas, 0)
        check_int("max_ongoing_requests", self.max_ongoing_requests, 1)
        check_int("max_queued_requests", self.max_queued_requests, 0, allow=(-1,))
        check_float("health_check_period_s", self.health_check_period_s, positive=True)
        check_float("health_check_timeout_s", self.health_check_timeout_s, positive=True)
        check_float("graceful_shutdown_timeout_s", self.graceful_shutdown_timeout_s)
        check_float("graceful_shutdown_wait_loop_s", self.graceful_shutdown_wait_loop_s)
        if self.request_timeout_s is not None:
            check_float("request_timeout_s", self.request_timeout_s, positive=True)
        if self.version is not None and not isinstance(self.version, str):
            raise _fail("version", self.version, "a string", TypeError)

    @property
    def queue_cap(self) -> int:
        return DEFAULT_QUEUE_CAP if self.max_queued_requests == -1 else self.max_queued_requests

    def initial_target(self) -> int:
        a = self.autoscaling_config
        if a is None:
            return int(self.num_replicas or 0)
        return a.initial_replicas if a.initial_replicas is not None else a.min_replicas


class ProxyLocation(StrEnum):
    """Where Serve runs HTTP proxies (Ray's ``proxy_location``)."""

    Disabled = "Disabled"
    HeadOnly = "HeadOnly"
    EveryNode = "EveryNode"

    @classmethod
    def parse(cls, value: Any) -> ProxyLocation:
        if isinstance(value, ProxyLocation):
            return value
        aliases = {"NoServer": "Disabled", "disabled": "Disabled", "headonly": "HeadOnly", "everynode": "EveryNode"}
        if isinstance(value, str):
            name = aliases.get(value, aliases.get(value.lower().replace("_", ""), value))
            if name in cls.__members__:
                return cls[name]
        raise ValueError(f"proxy_location must be one of {[m.value for m in cls]} (a string or ProxyLocation), "
                         f"got {value!r}.")


@dataclass
class HTTPOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    root_path: str = ""
    request_timeout_s: float | None = None
    keep_alive_timeout_s: int = 5
    access_log: bool = True
    # where the proxy appends access log lines; serve.start fills it from the session's log dir
    access_log_path: str | None = None
    # host an app's ingress in the proxy process when it has exactly one replica (measured: no CPU saved)
    colocate_ingress: bool = False
    # where proxies run: "HeadOnly" (default), "EveryNode" or "Disabled" (Ray's proxy_location / location)
    location: str = ProxyLocation.HeadOnly.value

    @classmethod
    def parse(cls, value: Any) -> HTTPOptions:
        if value is None:
            return cls()
        if isinstance(value, HTTPOptions):
            return value
        if not isinstance(value, dict):
            raise _fail("http_options", value, "a dict or HTTPOptions", TypeError)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"Unknown http_options key(s) {unknown}. Valid: {sorted(known)}.")
        out = cls(**value)
        check_int("http_options.port", out.port, 0)
        out.location = ProxyLocation.parse(out.location).value
        if out.request_timeout_s is not None:
            check_float("http_options.request_timeout_s", out.request_timeout_s, positive=True)
        return out


@dataclass
class gRPCOptions:
    port: int = 9000
    grpc_servicer_functions: list[Any] = field(default_factory=list)

    @classmethod
    def parse(cls, value: Any) -> gRPCOptions | None:
        if value is None or isinstance(value, gRPCOptions):
            return value
        if not isinstance(value, dict):
            raise _fail("grpc_options", value, "a dict or gRPCOptions", TypeError)
        return cls(**value)
