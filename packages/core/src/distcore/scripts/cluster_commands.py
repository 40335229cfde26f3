"""``distcore start | stop | status``: run cluster nodes from the shell.

Nodes started here outlive the command (they run in their own session);
each leaves a record under ``<temp root>/nodes/`` so ``distcore stop`` finds
every node this machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

from distcore._private import node as node_mod
from distcore._private.jobs.common import DEFAULT_DASHBOARD_PORT
from distcore.scripts.cli import DISTCORE

DEFAULT_PORT = 6379


def _records_dir() -> str:
    path = os.path.join(node_mod.temp_root(), "nodes")
    os.makedirs(path, exist_ok=True)
    return path


def _configure_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", action="store_true", help="start the head node (control store + node manager)")
    p.add_argument("--address", help="HOST:PORT of the head, to start a worker node")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"head's port (default {DEFAULT_PORT})")
    p.add_argument("--num-cpus", type=float, default=None)
    p.add_argument("--num-gpus", type=float, default=None)
    p.add_argument("--resources", default="{}", help='custom resources as JSON, e.g. \'{"accel": 2}\'')
    p.add_argument("--labels", default="{}", help="node labels as JSON")
    p.add_argument("--object-store-memory", type=int, default=None, help="bytes of shared memory for objects")
    p.add_argument("--node-ip-address", default="127.0.0.1",
                   help="address this node listens on and is reached at (default: loopback only)")
    p.add_argument("--disable-auth", action="store_true",
                   help="run without a cluster token (anyone who can reach the port can run code)")
    p.add_argument("--block", action="store_true", help="stay in the foreground until interrupted")
    p.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT,
                   help=f"head: port of the jobs HTTP API (default {DEFAULT_DASHBOARD_PORT}; 0: any free port)")
    p.add_argument("--include-dashboard", choices=("true", "false"), default="true",
                   help="head: serve the jobs HTTP API (needs distcore[default]; default true)")
    p.add_argument("--memory-usage-threshold", type=float, default=None,
                   help="fraction of the node's memory in use past which the memory monitor kills the newest "
                        "retriable worker (default: env DISTCORE_MEMORY_USAGE_THRESHOLD, else 0.95)")
    p.add_argument("--node-dead-timeout-s", type=float, default=30.0,
                   help="head: seconds without a heartbeat before a node is declared dead (default 30; a node "
                        "whose processes are gone while its host is up is declared dead within about 2 s)")
    p.add_argument("--metrics-export-port", type=int, default=0,
                   help="port of this node's Prometheus metrics (needs distcore[default]; default 0: any free "
                        "port; -1: off)")


def _json_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"distcore start: --{what} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"distcore start: --{what} must be a JSON object, got {text!r}")
    return value


def _start(args: argparse.Namespace) -> int:
    if args.head == bool(args.address):
        print("distcore start: give exactly one of --head or --address HOST:PORT", file=sys.stderr)
        return 2
    if not args.node_dead_timeout_s > 0:
        print(f"distcore start: --node-dead-timeout-s must be a positive number of seconds, got "
              f"{args.node_dead_timeout_s}", file=sys.stderr)
        return 2
    if args.memory_usage_threshold is not None:
        from distcore._private.node_manager.memory_monitor import validate_threshold

        try:
            validate_threshold(args.memory_usage_threshold, "--memory-usage-threshold")
        except ValueError as exc:
            print(f"distcore start: {exc}", file=sys.stderr)
            return 2
    resources = node_mod.node_resources(args.num_cpus, args.num_gpus, _json_arg(args.resources, "resources"), None)
    store = args.object_store_memory or node_mod.default_object_store_memory()
    session_name, session_dir = node_mod.new_session()
    if args.disable_auth:
        token = None
        print("distcore: WARNING: token auth is disabled; anyone who can reach this node can run code on it.",
              file=sys.stderr)
    elif args.head:
        token = os.environ.get("DISTCORE_AUTH_TOKEN") or node_mod.new_token()
    else:
        token = os.environ.get("DISTCORE_AUTH_TOKEN") or _local_token()
        if token is None:
            print("distcore start: set DISTCORE_AUTH_TOKEN to the head's token (see its token file)", file=sys.stderr)
            return 2
    if token:
        token_file = node_mod.write_token(session_dir, token)
    try:
        process = node_mod.start_node(
            head=args.head, resources=resources, object_store_memory=store, session_name=session_name,
            session_dir=session_dir, token=token, gcs_address=args.address or "", node_ip=args.node_ip_address,
            port=args.port if args.head else 0, labels=_json_arg(args.labels, "labels"),
            dashboard_port=args.dashboard_port if args.head and args.include_dashboard == "true" else None,
            metrics_export_port=args.metrics_export_port if args.metrics_export_port >= 0 else None,
            memory_usage_threshold=args.memory_usage_threshold, dead_timeout_s=args.node_dead_timeout_s,
        )
    except (RuntimeError, TimeoutError) as exc:
        print(f"distcore start: {exc}", file=sys.stderr)
        return 1
    with open(os.path.join(_records_dir(), f"{process.proc.pid}.json"), "w") as f:
        json.dump({"pid": process.proc.pid, "node_id": process.node_id, "address": process.address,
                   "head": args.head, "session": session_name, "session_dir": session_dir}, f)
    if args.head:
        node_mod.write_address_file(session_dir, process.gcs_address)
        print(f"distcore head node started at {process.gcs_address} (node {process.node_id[:8]})")
        print(f"  connect a driver:   distcore.init(address='auto')  or  address='{process.gcs_address}'")
        print(f"  add a worker node:  distcore start --address {process.gcs_address}")
        if token:
            print(f"  cluster token file: {token_file} (other machines: export DISTCORE_AUTH_TOKEN=...)")
        print(f"  logs:               {session_dir}/logs")
        if process.dashboard_address:
            print(f"  jobs API:           {process.dashboard_address}  (distcore job submit -- python script.py)")
        elif process.dashboard_error:
            print(f"distcore: WARNING: no jobs API: {process.dashboard_error}", file=sys.stderr)
    else:
        print(f"distcore worker node started (node {process.node_id[:8]}), joined {args.address}")
    if process.metrics_address:
        print(f"  metrics:            http://{process.metrics_address}/metrics  (bearer token: the cluster token)")
    elif process.metrics_error:
        print(f"distcore: metrics are off: {process.metrics_error}", file=sys.stderr)
    if args.block:
        try:
            while process.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            process.stop()
        return 0
    return 0


def _local_token() -> str | None:
    try:
        with open(os.path.join(node_mod.temp_root(), "session_latest", "token")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _configure_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="SIGKILL instead of a graceful stop")


def _stop(args: argparse.Namespace) -> int:
    from distcore._private.object_store.shm import cleanup_session

    records = []
    for name in os.listdir(_records_dir()):
        path = os.path.join(_records_dir(), name)
        try:
            with open(path) as f:
                records.append((path, json.load(f)))
        except (OSError, json.JSONDecodeError):
            os.unlink(path)
    # Worker nodes first, the head last.
    records.sort(key=lambda r: r[1].get("head", False))
    stopped = 0
    for path, rec in records:
        pid = rec["pid"]
        try:
            os.killpg(pid, signal.SIGKILL if args.force else signal.SIGTERM)
            stopped += 1
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        cleanup_session(node_mod.store_session(rec["session"], rec["node_id"]))
        os.unlink(path)
    print(f"distcore: stopped {stopped} node(s)")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _configure_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="auto", help="HOST:PORT of the head (default: this machine's cluster)")


def _status(args: argparse.Namespace) -> int:
    from distcore._private.api.runtime import _resolve_address, _token_for
    from distcore._private.rpc import RpcClient

    try:
        address = _resolve_address(args.address)
    except (ConnectionError, ValueError) as exc:
        print(f"distcore status: {exc}", file=sys.stderr)
        return 1
    assert address is not None

    async def fetch():
        client = RpcClient(address, _token_for(address))
        try:
            return await client.call("Gcs", "GetStatus", None, timeout=10)
        finally:
            await client.close()

    try:
        status = asyncio.run(fetch())
    except Exception as exc:  # noqa: BLE001
        print(f"distcore status: cannot reach the cluster at {address}: {exc}", file=sys.stderr)
        return 1
    print(format_status(address, status))
    return 0


def format_status(address: str, status: dict) -> str:
    lines = [f"======== distcore cluster at {address} ========", "Nodes:"]
    for n in status["nodes"]:
        used = {k: n["total"].get(k, 0) - n["available"].get(k, 0) for k in n["total"]}
        res = ", ".join(f"{_fmt(used[k])}/{_fmt(v)} {k}" for k, v in sorted(n["total"].items()) if k != "memory")
        metrics = f"  metrics http://{n['metrics_address']}/metrics" if n.get("metrics_address") else ""
        lines.append(f"  {n['state']:<5} {n['node_id'][:12]} {n['address']:<22} {'head' if n['is_head'] else 'worker'}  {res}{metrics}")
        if n["state"] == "DEAD" and n.get("death_reason"):
            lines.append(f"        died: {n['death_reason']}")
    lines.append("Resources (used/total):")
    for k, v in sorted(status["total"].items()):
        lines.append(f"  {_fmt(v - status['available'].get(k, 0))}/{_fmt(v)} {k}")
    lines.append("Pending demands:")
    lines += [f"  {d}" for d in status["pending"]] or ["  (none)"]
    lines.append("Infeasible demands:")
    lines += [f"  {d}" for d in status["infeasible"]] or ["  (none)"]
    if "autoscaler" in status:
        from distcore._private.autoscaler.status import format_autoscaler_status

        lines += format_autoscaler_status(status["autoscaler"])
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


DISTCORE.add("start", "start a head or worker node on this machine", _start, _configure_start)
DISTCORE.add("stop", "stop every distcore node on this machine", _stop, _configure_stop)
DISTCORE.add("status", "show nodes, resources and demands of a cluster", _status, _configure_status)
