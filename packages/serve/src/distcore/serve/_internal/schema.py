"""Serve config files: validate, build from an application, and deploy declaratively.

The schema follows Ray Serve's::

    http_options: {host: 127.0.0.1, port: 8000}
    applications:
      - name: default
        route_prefix: /
        import_path: my_module:app
        args: {}
        deployments:
          - name: Model
            num_replicas: 2
            user_config: {threshold: 0.5}

Every error names the field by its path (``applications[0].deployments[1].num_replicas``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import fields
from typing import Any

from distcore.serve._internal.config import (
    AutoscalingConfig,
    DeploymentConfig,
    HTTPOptions,
    ProxyLocation,
    check_actor_options,
)
from distcore.serve._internal.deployment import Application, _apply_options, build_app_spec
from distcore.serve._internal.specs import AppSpec, digest


class ConfigError(ValueError):
    """A Serve config file is invalid; the message names the field."""


_TOP = {"proxy_location", "http_options", "grpc_options", "applications", "logging_config", "target_capacity"}
_APP = {"name", "route_prefix", "import_path", "runtime_env", "args", "deployments", "logging_config",
        "external_scaler_enabled"}
_DEPLOYMENT = ({f.name for f in fields(DeploymentConfig)} - {"version"}) | {"name", "version", "actor_options",
                                                                             "logging_config"}


def _check_keys(where: str, value: Any, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(value).__name__} ({value!r})")
    unknown = sorted(set(value) - allowed)
    if unknown:
        import difflib

        hints = {u: difflib.get_close_matches(u, sorted(allowed), 1) for u in unknown}
        hint = "; ".join(f"'{u}' (did you mean '{h[0]}'?)" if h else f"'{u}'" for u, h in hints.items())
        raise ConfigError(f"{where or 'config'}: unknown field(s) {hint}. Valid: {sorted(allowed)}")
    return value


def validate_config(cfg: Any) -> dict:
    """Check a parsed config file; return it (raises :class:`ConfigError` naming the field)."""
    _check_keys("", cfg, _TOP)
    try:
        HTTPOptions.parse({k: v for k, v in (cfg.get("http_options") or {}).items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"http_options: {exc}") from None
    if cfg.get("proxy_location") is not None:
        try:
            ProxyLocation.parse(cfg["proxy_location"])
        except ValueError as exc:
            raise ConfigError(f"proxy_location: {exc}") from None
    apps = cfg.get("applications")
    if not isinstance(apps, list) or not apps:
        raise ConfigError("applications: expected a non-empty list of applications")
    names: set[str] = set()
    prefixes: set[str] = set()
    for i, app in enumerate(apps):
        where = f"applications[{i}]"
        _check_keys(where, app, _APP)
        if not isinstance(app.get("import_path"), str) or not app["import_path"]:
            raise ConfigError(f"{where}.import_path: required, like 'my_module:app'")
        if ":" not in app["import_path"] and "." not in app["import_path"]:
            raise ConfigError(f"{where}.import_path: {app['import_path']!r} must look like 'module:attribute'")
        name = app.get("name", "default")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: expected a non-empty string, got {name!r}")
        if name in names:
            raise ConfigError(f"{where}.name: application name {name!r} is used twice")
        names.add(name)
        prefix = app.get("route_prefix", "/")
        if prefix is not None:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ConfigError(f"{where}.route_prefix: must start with '/', got {prefix!r}")
            if prefix in prefixes:
                raise ConfigError(f"{where}.route_prefix: {prefix!r} is used by two applications")
            prefixes.add(prefix)
        if app.get("args") is not None and not isinstance(app["args"], dict):
            raise ConfigError(f"{where}.args: expected a mapping")
        deps = app.get("deployments") or []
        if not isinstance(deps, list):
            raise ConfigError(f"{where}.deployments: expected a list")
        for j, dep in enumerate(deps):
            dwhere = f"{where}.deployments[{j}]"
            _check_keys(dwhere, dep, _DEPLOYMENT)
            if not isinstance(dep.get("name"), str):
                raise ConfigError(f"{dwhere}.name: required (the deployment's name)")
            try:
                _apply_options(DeploymentConfig(), _deployment_options(dep), dwhere)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{dwhere}: {exc}") from None
    return cfg


def _deployment_options(dep: dict) -> dict:
    return {k: v for k, v in dep.items() if k not in ("name", "logging_config")}


def import_attr(import_path: str) -> Any:
    if ":" in import_path:
        module_name, attr = import_path.split(":", 1)
    else:
        module_name, attr = import_path.rsplit(".", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"import_path {import_path!r}: cannot import module {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"import_path {import_path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_application(import_path: str, args: dict | None = None) -> tuple[Application, str]:
    """The Application at ``import_path`` (a builder function is called with ``args``) and its code digest."""
    import cloudpickle

    module_name = import_path.split(":", 1)[0] if ":" in import_path else import_path.rsplit(".", 1)[0]
    obj = import_attr(import_path)
    module = sys.modules[module_name]
    # the user's module travels by value, so replicas need not import it and code changes get a new version
    try:
        cloudpickle.register_pickle_by_value(module)
    except Exception:
        pass
    if not isinstance(obj, Application):
        if callable(obj) and not hasattr(obj, "bind"):
            obj = obj(args or {})
        elif hasattr(obj, "bind"):
            obj = obj.bind()
    if not isinstance(obj, Application):
        raise ConfigError(f"import_path {import_path!r} is a {type(obj).__name__}, not an application "
                          "(use Deployment.bind(...) or a builder function returning one)")
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        source = ""
    return obj, digest(source)


def app_spec_from_config(app_cfg: dict) -> AppSpec:
    app, code_digest = load_application(app_cfg["import_path"], app_cfg.get("args"))
    overrides = {d["name"]: _deployment_options(d) for d in app_cfg.get("deployments") or []}
    spec = build_app_spec(app, app_cfg.get("name", "default"), app_cfg.get("route_prefix", "/"))
    spec.import_path = app_cfg["import_path"]
    known = {d.name for d in spec.deployments}
    missing = sorted(set(overrides) - known)
    if missing:
        raise ConfigError(f"application {spec.name!r}: deployments {missing} in the config are not in the "
                          f"application (it has {sorted(known)})")
    for d in spec.deployments:
        if d.name in overrides:
            d.config = _apply_options(d.config, overrides[d.name], f"deployment {d.name!r}")
        # the code version: an explicit version, else the module's source and the bound arguments
        d.code_version = d.config.version or digest(code_digest, d.init_args, d.init_kwargs)
    return spec


def build_config(app: Application, import_path: str, name: str = "default", route_prefix: str = "/") -> dict:
    """The config file for one application (what ``distcore-serve build`` writes)."""
    spec = build_app_spec(app, name, route_prefix)
    deployments = []
    for d in spec.deployments:
        c = d.config
        entry: dict[str, Any] = {"name": d.name}
        if c.autoscaling_config is not None:
            entry["autoscaling_config"] = c.autoscaling_config.to_dict()
        else:
            entry["num_replicas"] = c.num_replicas
        entry["max_ongoing_requests"] = c.max_ongoing_requests
        if c.max_queued_requests != -1:
            entry["max_queued_requests"] = c.max_queued_requests
        if c.user_config is not None:
            entry["user_config"] = c.user_config
        if c.ray_actor_options:
            entry["ray_actor_options"] = check_actor_options(c.ray_actor_options)
        if c.request_timeout_s is not None:
            entry["request_timeout_s"] = c.request_timeout_s
        if c.version is not None:
            entry["version"] = c.version
        deployments.append(entry)
    return {
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [{"name": name, "route_prefix": route_prefix, "import_path": import_path,
                          "deployments": deployments}],
    }


__all__ = ["AutoscalingConfig", "ConfigError", "app_spec_from_config", "build_config", "validate_config"]
