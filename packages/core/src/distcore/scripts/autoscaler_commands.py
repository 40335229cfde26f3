"""``distcore up | down CLUSTER.yaml``: an autoscaling cluster on this machine.

``up`` starts a head with the autoscaler enabled (the local provider: worker
nodes are process trees on this machine, started and stopped with demand)
and prints how to connect; ``down`` stops the head and every worker node it
launched. The file uses Ray's cluster YAML fields (JSON works too)::

    cluster_name: demo
    max_workers: 2
    idle_timeout_minutes: 5        # or idle_timeout_s: 300
    provider: {type: local}
    head_node: {resources: {CPU: 0}}
    available_node_types:
      cpu_worker:
        resources: {CPU: 1}
        min_workers: 0
        max_workers: 2

Example::

    distcore up cluster.yaml
    python -c "import distcore; distcore.init(address='auto'); ..."
    distcore status
    distcore down cluster.yaml
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from typing import Any

from distcore._private import node as node_mod
from distcore.scripts.cli import DISTCORE

HEAD_STOP_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 10.0


def load_cluster_config(path: str) -> dict[str, Any]:
    """Read a cluster YAML (with PyYAML, when installed) or JSON file into a dict.

    Example::

        config = load_cluster_config("cluster.yaml")
        config["available_node_types"]
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read the cluster config {path}: {exc}") from None
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} is not JSON ({exc}) and PyYAML is not installed to read YAML: "
                "pip install 'distcore[default]', or write the config as JSON"
            ) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping (cluster_name, available_node_types, ...), got {data!r}")
    return data


def _clusters_dir() -> str:
    path = os.path.join(node_mod.temp_root(), "clusters")
    os.makedirs(path, exist_ok=True)
    return path


def _record_path(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return os.path.join(_clusters_dir(), f"{safe}.json")


def _read_record(name: str) -> dict[str, Any] | None:
    try:
        with open(_record_path(name)) as f:
            record: dict[str, Any] = json.load(f)
            return record
    except (OSError, json.JSONDecodeError):
        return None


def _is_node_process(pid: int, node_id: str) -> bool:
    """``pid`` is alive (not a zombie) and is the distcore node ``node_id`` (not a reused pid)."""
    import psutil  # type: ignore[import-untyped]

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and node_id in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _stop_process(pid: int, node_id: str, timeout: float) -> bool:
    """SIGTERM the node's process group, then SIGKILL after ``timeout``; True if it was running."""
    if not _is_node_process(pid, node_id):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while _is_node_process(pid, node_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_node_process(pid, node_id):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def _configure_up(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", help="cluster YAML (or JSON): cluster_name, available_node_types, max_workers, ...")
    p.add_argument("--disable-auth", action="store_true",
                   help="run without a cluster token (anyone who can reach the port can run code)")


def _up(args: argparse.Namespace) -> int:
    from distcore._private.autoscaler.config import AutoscalingConfig, AutoscalingConfigError

    try:
        data = load_cluster_config(args.config_file)
        config = AutoscalingConfig.from_dict(data)
    except (ValueError, AutoscalingConfigError) as exc:
        print(f"distcore up: {exc}", file=sys.stderr)
        return 2
    name = config.cluster_name
    record = _read_record(name)
    if record is not None and _is_node_process(record["pid"], record["node_id"]):
        print(f"distcore cluster {name!r} is already up at {record['gcs_address']} "
              f"(distcore down {args.config_file} to stop it)")
        return 0
    head = dict(config.head_resources or {})
    cpus, gpus, memory = head.pop("CPU", None), head.pop("GPU", None), head.pop("memory", None)
    head.pop("object_store_memory", None)
    head_spec: dict[str, Any] = data["head_node"] if isinstance(data.get("head_node"), dict) else {}
    store = head_spec.get("object_store_memory") or node_mod.default_object_store_memory()
    resources = node_mod.node_resources(cpus, gpus, head, int(memory) if memory is not None else None)
    session_name, session_dir = node_mod.new_session()
    token: str | None
    if args.disable_auth:
        token = None
        print("distcore: WARNING: token auth is disabled; anyone who can reach this node can run code on it.",
              file=sys.stderr)
    else:
        token = os.environ.get("DISTCORE_AUTH_TOKEN") or node_mod.new_token()
        node_mod.write_token(session_dir, token)
    dashboard_port = data.get("dashboard_port")
    try:
        process = node_mod.start_node(
            head=True, resources=resources, object_store_memory=int(store), session_name=session_name,
            session_dir=session_dir, token=token, port=int(data.get("head_port", 0)),
            dashboard_port=int(dashboard_port) if dashboard_port is not None else None,
            autoscaling_config=config.to_dict(),
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"distcore up: the head did not start: {exc}", file=sys.stderr)
        return 1
    record = {"cluster_name": name, "pid": process.proc.pid, "node_id": process.node_id,
              "gcs_address": process.gcs_address, "session_name": session_name, "session_dir": session_dir,
              "config_file": os.path.abspath(args.config_file)}
    with open(_record_path(name), "w") as f:
        json.dump(record, f)
    # So ``distcore stop`` finds it too.
    nodes_dir = os.path.join(node_mod.temp_root(), "nodes")
    os.makedirs(nodes_dir, exist_ok=True)
    with open(os.path.join(nodes_dir, f"{process.proc.pid}.json"), "w") as f:
        json.dump({"pid": process.proc.pid, "node_id": process.node_id, "address": process.address,
                   "head": True, "session": session_name, "session_dir": session_dir}, f)
    node_mod.write_address_file(session_dir, process.gcs_address)
    types = ", ".join(f"{t.name} {_shape(t.resources)} x{t.min_workers}..{t.max_workers}"
                      for t in config.node_types.values())
    print(f"distcore cluster {name!r} is up: head at {process.gcs_address} (node {process.node_id[:8]})")
    print(f"  autoscaling:        {types}; max_workers {config.max_workers}, "
          f"idle_timeout_s {config.idle_timeout_s:g}")
    print(f"  connect a driver:   distcore.init(address='auto')  or  address='{process.gcs_address}'")
    if token:
        print(f"  cluster token file: {os.path.join(session_dir, 'token')} (other machines: export DISTCORE_AUTH_TOKEN=...)")
    print(f"  status:             distcore status --address {process.gcs_address}")
    print(f"  logs:               {session_dir}/logs")
    print(f"  tear down:          distcore down {args.config_file}")
    return 0


def _configure_down(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", help="the cluster YAML given to distcore up")


def _down(args: argparse.Namespace) -> int:
    from distcore._private.autoscaler.local_provider import recorded_nodes
    from distcore._private.object_store.shm import cleanup_session

    try:
        data = load_cluster_config(args.config_file)
    except ValueError as exc:
        print(f"distcore down: {exc}", file=sys.stderr)
        return 2
    name = str(data.get("cluster_name", "default"))
    record = _read_record(name)
    if record is None:
        print(f"distcore: no cluster named {name!r} is up on this machine")
        return 0
    session_dir, session_name = record["session_dir"], record["session_name"]
    workers = recorded_nodes(session_dir)
    # The head stops the nodes it launched on its way out; what is left is stopped here.
    head_was_up = _stop_process(record["pid"], record["node_id"], HEAD_STOP_TIMEOUT_S)
    stopped = 0
    for row in workers.values():
        _stop_process(row["pid"], row["node_id"], NODE_STOP_TIMEOUT_S)
        cleanup_session(node_mod.store_session(session_name, row["node_id"]))
        stopped += 1
    cleanup_session(node_mod.store_session(session_name, record["node_id"]))
    for path in (_record_path(name), os.path.join(node_mod.temp_root(), "nodes", f"{record['pid']}.json")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    what = "the head" if head_was_up else "nothing running at the head (it had exited)"
    print(f"distcore cluster {name!r} is down: stopped {what} and {stopped} worker node(s)")
    return 0


def _shape(shape: Any) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


DISTCORE.add("up", "start an autoscaling cluster from a cluster YAML (local provider)", _up, _configure_up)
DISTCORE.add("down", "stop a cluster started with distcore up, and its worker nodes", _down, _configure_down)
