"""``distcore-serve build | deploy | run | status | shutdown``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import yaml


def _connect(address: str | None) -> None:
    import distcore

    if not distcore.is_initialized():
        distcore.init(address=address or "auto", log_to_driver=False)


def deploy_config(cfg: dict, timeout_s: float = 300.0) -> list[str]:
    """Apply a validated config: deploy every application in it, delete the ones it no longer lists."""
    from distcore.serve._internal import api
    from distcore.serve._internal.schema import app_spec_from_config, validate_config

    validate_config(cfg)
    specs = [app_spec_from_config(app) for app in cfg["applications"]]
    api.start(http_options=cfg.get("http_options"), proxy_location=cfg.get("proxy_location"))
    controller = api._controller()
    current = set(api._get(controller.status.remote()))
    for spec in specs:
        api._get(controller.deploy_application.remote(spec))
    stale = sorted(current - {s.name for s in specs})
    if stale:
        api._get(controller.delete_apps.remote(stale))
    for spec in specs:
        api.wait_for_application(spec.name, timeout_s)
    return [s.name for s in specs]


def _status_dict() -> dict[str, Any]:
    from distcore import serve

    st = serve.status()
    return {"applications": {
        name: {"status": app.status, "message": app.message, "route_prefix": app.route_prefix,
               "deployments": {d: {"status": dep.status, "replica_states": dep.replica_states,
                                   "message": dep.message} for d, dep in app.deployments.items()}}
        for name, app in st.applications.items()}}


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", "-a", default=None, help="cluster address HOST:PORT (default: auto)")


def configure_build(p: argparse.ArgumentParser) -> None:
    p.add_argument("import_path", help="module:application, e.g. my_app:app")
    p.add_argument("-o", "--output-path", default=None, help="file to write (default: stdout)")
    p.add_argument("--name", default="default")
    p.add_argument("--route-prefix", default="/")


def run_build(args: argparse.Namespace) -> int:
    from distcore.serve._internal.schema import ConfigError, build_config, load_application

    try:
        app, _ = load_application(args.import_path)
    except ConfigError as exc:
        print(f"distcore-serve build: {exc}", file=sys.stderr)
        return 1
    text = yaml.safe_dump(build_config(app, args.import_path, args.name, args.route_prefix), sort_keys=False)
    if args.output_path:
        with open(args.output_path, "w") as f:
            f.write(text)
        print(f"wrote {args.output_path}")
    else:
        print(text, end="")
    return 0


def configure_deploy(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", help="a config file written by `distcore-serve build`")
    _address(p)
    p.add_argument("--timeout-s", type=float, default=300.0)


def _load_yaml(path: str) -> dict:
    from distcore.serve._internal.schema import ConfigError

    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from None
    return cfg


def run_deploy(args: argparse.Namespace) -> int:
    from distcore.serve._internal.schema import ConfigError, validate_config
    from distcore.serve.exceptions import RayServeException

    try:
        cfg = validate_config(_load_yaml(args.config_file))
        _connect(args.address)
        names = deploy_config(cfg, args.timeout_s)
    except (ConfigError, RayServeException, TimeoutError) as exc:
        print(f"distcore-serve deploy: {exc}", file=sys.stderr)
        return 1
    print(f"deployed {', '.join(names)}")
    return 0


def configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="module:application or a config file (.yaml)")
    _address(p)
    p.add_argument("--name", default="default")
    p.add_argument("--route-prefix", default="/")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--reload", action="store_true", help="redeploy when the module's file changes")
    p.add_argument("--non-blocking", action="store_true", help="return once deployed")


def _module_file(import_path: str) -> str | None:
    module_name = import_path.split(":", 1)[0]
    module = sys.modules.get(module_name)
    return getattr(module, "__file__", None)


def run_run(args: argparse.Namespace) -> int:
    from distcore.serve._internal.schema import ConfigError
    from distcore.serve.exceptions import RayServeException

    if args.target.endswith((".yaml", ".yml")):
        cfg = _load_yaml(args.target)
    else:
        cfg = {"applications": [{"name": args.name, "route_prefix": args.route_prefix,
                                 "import_path": args.target}]}
    if args.port is not None:
        cfg.setdefault("http_options", {})["port"] = args.port
    try:
        if args.address:
            _connect(args.address)
        else:
            import distcore

            if not distcore.is_initialized():
                distcore.init(log_to_driver=True)
        deploy_config(cfg)
    except (ConfigError, RayServeException, TimeoutError) as exc:
        print(f"distcore-serve run: {exc}", file=sys.stderr)
        return 1
    print("application running; Ctrl-C to stop", flush=True)
    if args.non_blocking:
        return 0
    files = [f for f in (_module_file(a["import_path"]) for a in cfg["applications"]) if f]
    mtimes = {f: os.path.getmtime(f) for f in files}
    try:
        while True:
            time.sleep(0.5)
            if args.reload and any(os.path.getmtime(f) != m for f, m in mtimes.items()):
                mtimes = {f: os.path.getmtime(f) for f in files}
                for a in cfg["applications"]:
                    module_name = a["import_path"].split(":", 1)[0]
                    sys.modules.pop(module_name, None)
                try:
                    deploy_config(cfg)
                    print("reloaded", flush=True)
                except Exception as exc:  # keep serving the old version
                    print(f"reload failed: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        from distcore import serve

        serve.shutdown()
    return 0


def run_status(args: argparse.Namespace) -> int:
    _connect(args.address)
    print(yaml.safe_dump(_status_dict(), sort_keys=False), end="")
    return 0


def run_shutdown(args: argparse.Namespace) -> int:
    from distcore import serve

    _connect(args.address)
    serve.shutdown()
    print("Serve is shut down")
    return 0


def register(cli: Any) -> None:
    cli.add("build", "write a config file for an application", run_build, configure_build)
    cli.add("deploy", "deploy the applications of a config file (idempotent)", run_deploy, configure_deploy)
    cli.add("run", "run an application (module:app or config file), optionally reloading", run_run, configure_run)
    cli.add("status", "show applications, deployments and replicas", run_status, _address)
    cli.add("shutdown", "delete every application and stop Serve", run_shutdown, _address)
