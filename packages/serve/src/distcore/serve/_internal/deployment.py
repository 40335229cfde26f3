"""``@serve.deployment``, ``Deployment``, ``Application`` and ``@serve.ingress``."""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from typing import Any

import cloudpickle

from distcore.serve._internal.config import AutoscalingConfig, DeploymentConfig, check_actor_options
from distcore.serve._internal.specs import AppSpec, DeploymentSpec

_CONFIG_OPTIONS = {f.name for f in fields(DeploymentConfig)} | {"actor_options", "name", "route_prefix",
                                                                 "graceful_shutdown_wait_loop_s"}


def _apply_options(config: DeploymentConfig, options: dict[str, Any], what: str) -> DeploymentConfig:
    unknown = sorted(set(options) - _CONFIG_OPTIONS)
    if unknown:
        import difflib

        hints = [h for u in unknown for h in difflib.get_close_matches(u, sorted(_CONFIG_OPTIONS), 1)]
        hint = f" Did you mean {hints}?" if hints else ""
        raise TypeError(f"{what} got unknown option(s) {unknown}.{hint} Valid: {sorted(_CONFIG_OPTIONS)}.")
    opts = {k: v for k, v in options.items() if k not in ("name", "route_prefix")}
    if "actor_options" in opts:
        if opts.get("ray_actor_options") is not None:
            raise ValueError("pass ray_actor_options or actor_options, not both")
        opts["ray_actor_options"] = opts.pop("actor_options")
    if "ray_actor_options" in opts:
        opts["ray_actor_options"] = check_actor_options(opts["ray_actor_options"])
    auto = options.get("autoscaling_config")
    if auto is not None:
        if options.get("num_replicas") not in (None, "auto"):
            raise ValueError("pass num_replicas or autoscaling_config, not both")
        opts["autoscaling_config"] = AutoscalingConfig.parse(auto)
        opts["num_replicas"] = None
    elif options.get("num_replicas") == "auto":
        opts["autoscaling_config"] = AutoscalingConfig(min_replicas=1, max_replicas=100)
        opts["num_replicas"] = None
    elif options.get("num_replicas") is not None:
        opts["autoscaling_config"] = None
    new = replace(config, **opts)
    new.validate()
    return new


class Deployment:
    """A class or function and how to run it; ``.bind(...)`` makes an :class:`Application`."""

    def __init__(self, func_or_class: Any, name: str, config: DeploymentConfig) -> None:
        self.func_or_class = func_or_class
        self._name = name
        self._config = config

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str | None:
        return self._config.version

    @property
    def num_replicas(self) -> int | None:
        return self._config.num_replicas

    @property
    def max_ongoing_requests(self) -> int:
        return self._config.max_ongoing_requests

    @property
    def max_queued_requests(self) -> int:
        return self._config.max_queued_requests

    @property
    def user_config(self) -> Any:
        return self._config.user_config

    @property
    def ray_actor_options(self) -> dict[str, Any]:
        return dict(self._config.ray_actor_options)

    @property
    def autoscaling_config(self) -> AutoscalingConfig | None:
        return self._config.autoscaling_config

    @property
    def config(self) -> DeploymentConfig:
        return self._config

    def options(self, **options: Any) -> Deployment:
        """A copy with some options changed (the same names as ``@serve.deployment``)."""
        name = options.get("name") or self._name
        return Deployment(self.func_or_class, name, _apply_options(self._config, options, f"{name}.options()"))

    def bind(self, *args: Any, **kwargs: Any) -> Application:
        return Application(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"Deployment '{self._name}' cannot be called directly: use "
                           f"serve.run({self._name}.bind(...)) and a DeploymentHandle.")

    def __repr__(self) -> str:
        return f"Deployment(name={self._name!r})"


class Application:
    """A bound deployment: the root of a graph of deployments to run together."""

    def __init__(self, deployment: Deployment, args: tuple, kwargs: dict) -> None:
        self._deployment = deployment
        self._args = args
        self._kwargs = kwargs

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def __repr__(self) -> str:
        return f"Application({self._deployment.name})"


def build_app_spec(app: Application, name: str, route_prefix: str | None) -> AppSpec:
    """Walk the graph: every bound deployment becomes a spec; bound args become DeploymentHandles."""
    from distcore.serve._internal.handle import DeploymentHandle

    if not isinstance(app, Application):
        hint = " (call .bind() on the deployment)" if isinstance(app, Deployment) else ""
        raise TypeError(f"serve.run expects an Application built with Deployment.bind(), got "
                        f"{type(app).__name__}{hint}")
    specs: dict[str, DeploymentSpec] = {}
    seen: dict[int, str] = {}

    def visit(node: Application) -> str:
        if id(node) in seen:
            return seen[id(node)]
        dep = node.deployment
        dep_name = dep.name
        i = 1
        while dep_name in specs:
            dep_name = f"{dep.name}_{i}"
            i += 1
        seen[id(node)] = dep_name
        specs[dep_name] = None  # type: ignore[assignment]  # reserve the name

        def conv(v: Any) -> Any:
            if isinstance(v, Application):
                return DeploymentHandle(visit(v), name)
            if isinstance(v, Deployment):
                raise TypeError(f"deployment '{v.name}' passed to '{dep.name}' must be bound first: use "
                                f"{v.name}.bind()")
            if isinstance(v, (list, tuple)):
                return type(v)(conv(x) for x in v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v

        args = tuple(conv(a) for a in node._args)
        kwargs = {k: conv(v) for k, v in node._kwargs.items()}
        target = dep.func_or_class
        is_function = not inspect.isclass(target)
        try:
            serialized = cloudpickle.dumps(target)
        except Exception as exc:
            raise TypeError(f"deployment '{dep.name}' cannot be serialized: {exc}") from exc
        specs[dep_name] = DeploymentSpec(dep_name, serialized, args, kwargs, is_function, dep.config)
        return dep_name

    ingress = visit(app)
    if route_prefix is not None:
        if not isinstance(route_prefix, str) or not route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must be a string starting with '/', got {route_prefix!r}")
        if route_prefix != "/" and route_prefix.endswith("/"):
            route_prefix = route_prefix.rstrip("/")
    return AppSpec(name=name, route_prefix=route_prefix, ingress=ingress, deployments=list(specs.values()))


def make_deployment(func_or_class: Any, options: dict[str, Any]) -> Deployment:
    if not (inspect.isclass(func_or_class) or callable(func_or_class)):
        raise TypeError(f"@serve.deployment decorates a class or a function, got {type(func_or_class).__name__}")
    name = options.get("name") or getattr(func_or_class, "__name__", "Deployment")
    config = _apply_options(DeploymentConfig(), options, f"@serve.deployment on {name}")
    return Deployment(func_or_class, name, config)


def _register_reducers() -> None:
    """Starlette's ``State`` cannot be unpickled as is (its ``__getattr__`` recurses): rebuild it from its dict."""
    import copyreg

    try:
        from starlette.datastructures import State
    except ImportError:  # pragma: no cover
        return
    copyreg.pickle(State, lambda s: (State, (dict(s._state),)))


_register_reducers()


def ingress(asgi_app: Any) -> Any:
    """Class decorator: requests to the deployment go to ``asgi_app`` (FastAPI or Starlette).

    Methods of the class decorated with the FastAPI app's route decorators
    (``@app.get(...)`` on ``self`` methods) are bound to the replica instance.
    """

    def decorator(cls: type) -> type:
        if not inspect.isclass(cls):
            raise TypeError("@serve.ingress decorates a class")

        class ASGIIngress(cls):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.__serve_asgi_app__ = _bind_app(asgi_app, self, cls)

        ASGIIngress.__name__ = cls.__name__
        ASGIIngress.__qualname__ = cls.__qualname__
        ASGIIngress.__module__ = cls.__module__
        ASGIIngress.__doc__ = cls.__doc__
        return ASGIIngress

    return decorator


def _bind_app(app: Any, instance: Any, cls: type) -> Any:
    """Bind FastAPI route endpoints that are methods of ``cls`` (first parameter ``self``) to ``instance``."""
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not routes:
        return app
    methods = {id(v): k for k, v in vars(cls).items() if callable(v)}
    try:
        from fastapi.routing import APIRoute, APIWebSocketRoute
    except ImportError:
        return app
    import functools

    for route in list(routes):
        endpoint = getattr(route, "endpoint", None)
        if endpoint is None or id(endpoint) not in methods:
            continue
        params = list(inspect.signature(endpoint).parameters)
        if not params or params[0] != "self":
            continue
        bound = functools.partial(endpoint, instance)
        functools.update_wrapper(bound, endpoint)
        bound.__signature__ = inspect.signature(endpoint).replace(  # type: ignore[attr-defined]
            parameters=list(inspect.signature(endpoint).parameters.values())[1:])
        if isinstance(route, APIRoute):
            new = APIRoute(route.path, bound, methods=list(route.methods or []), name=route.name,
                           response_model=route.response_model, status_code=route.status_code)
        elif isinstance(route, APIWebSocketRoute):
            new = APIWebSocketRoute(route.path, bound, name=route.name)
        else:
            continue
        routes[routes.index(route)] = new
    return app
