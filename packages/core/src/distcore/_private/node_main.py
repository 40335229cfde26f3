"""Entry point of a node process: the head (control store + node manager) or
a worker node (node manager only). Started by :mod:`distcore._private.node`.

When ready it writes a JSON file with its address; it exits on SIGTERM or
when the process given by ``--parent-pid`` is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from distcore._private.node_manager.server import NodeConfig, NodeManagerService
from distcore._private.rpc import RpcServer


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="distcore-node")
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--gcs-address", default="")
    ap.add_argument("--node-ip", default="127.0.0.1")
    ap.add_argument("--bind", default=None, help="address to listen on (default: --node-ip)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--node-id", required=True)
    ap.add_argument("--resources", default="{}", help="JSON: every resource of the node, CPU and GPU included")
    ap.add_argument("--labels", default="{}")
    ap.add_argument("--object-store-memory", type=int, required=True)
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--session-name", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--parent-pid", type=int, default=0)
    ap.add_argument("--prestart", type=int, default=None)
    ap.add_argument("--dead-timeout-s", type=float, default=30.0)
    ap.add_argument("--recover", action="store_true",
                    help="head only: require the session's gcs.sqlite and recover the cluster from it "
                         "(a head recovers automatically whenever that file exists; use a fixed --port)")
    ap.add_argument("--dashboard-port", type=int, default=None,
                    help="head only: serve the jobs HTTP API on this port (0: any free port; default: off)")
    ap.add_argument("--autoscaling-config", default=None,
                    help="head only: JSON file of the autoscaling config; runs the autoscaler (default: off)")
    ap.add_argument("--metrics-export-port", type=int, default=None,
                    help="serve Prometheus metrics on this port (0: any free port; default: off)")
    ap.add_argument("--memory-usage-threshold", type=float, default=None,
                    help="fraction of memory use past which the memory monitor kills a worker "
                         "(default: env DISTCORE_MEMORY_USAGE_THRESHOLD, else 0.95)")
    return ap.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    token = os.environ.get("DISTCORE_AUTH_TOKEN") or None
    bind = args.bind or args.node_ip
    server = RpcServer(token, host=bind, port=args.port)
    gcs = None
    gcs_framed = None
    if args.head:
        from distcore._private.gcs.server import GcsService

        db = os.path.join(args.session_dir, "gcs.sqlite")
        if args.recover and not os.path.exists(db):
            raise OSError(f"--recover: no control-store tables to recover at {db}")
        gcs = GcsService(db, token, args.dead_timeout_s)  # reloads db's tables when it exists (``gcs/recovery.py``)
        server.add_service("Gcs", gcs)
    config = NodeConfig(
        node_id=args.node_id, ip=args.node_ip, gcs_address=args.gcs_address,
        session_dir=args.session_dir, session_name=args.session_name, token=token,
        resources=json.loads(args.resources), object_store_memory=args.object_store_memory,
        is_head=args.head, prestart=args.prestart, labels=json.loads(args.labels),
        memory_usage_threshold=args.memory_usage_threshold,
    )
    nm = NodeManagerService(config)
    server.add_service("NodeManager", nm)
    port = await server.start()
    address = f"{args.node_ip}:{port}"
    if gcs is not None:
        gcs.start_background()
        config.gcs_address = address
        # The head's own node manager (its bundles, the leases of actors placed there): no gRPC to this process.
        gcs.clients.set_local(address, {"NodeManager": nm})
        # ...and that node manager's calls to the control store (registration, heartbeats, the
        # cluster view's long poll) stay in this process too.
        nm.clients.set_local(address, {"Gcs": gcs, "NodeManager": nm})
        # Same-node clients' blocking control-store calls come framed (``core_worker/gcs_client.py``).
        from distcore._private.core_worker.framed_rpc import FramedServer

        gcs_framed = FramedServer(gcs, token, "Gcs")
        await gcs_framed.start(address, "gcs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dashboard, dashboard_error = None, None
    metrics, metrics_error = None, None
    autoscaler = None
    try:
        if args.metrics_export_port is not None:  # before start(): NodeInfo carries its address
            from distcore._private.metrics import start_if_available as start_metrics

            metrics, metrics_error = await start_metrics(
                nm, gcs, host=bind, advertise_host=args.node_ip, port=args.metrics_export_port, token=token)
            config.metrics_address = metrics.address if metrics else ""
        await nm.start(address)
        if gcs is not None and args.dashboard_port is not None:
            from distcore._private.jobs.head import start_if_available

            dashboard, dashboard_error = await start_if_available(
                gcs, nm, host=bind, advertise_host=args.node_ip, port=args.dashboard_port,
                session_dir=args.session_dir, session_name=args.session_name, gcs_address=address, token=token,
            )
        if gcs is not None and args.autoscaling_config:
            from distcore._private.autoscaler.monitor import start_autoscaler

            autoscaler = start_autoscaler(
                gcs, args.autoscaling_config, gcs_address=address, session_name=args.session_name,
                session_dir=args.session_dir, token=token, node_ip=args.node_ip, dead_timeout_s=args.dead_timeout_s,
            )
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"address": address, "gcs_address": config.gcs_address, "node_id": args.node_id,
                       "pid": os.getpid(), "session_dir": args.session_dir,
                       "dashboard_address": dashboard.address if dashboard else None,
                       "dashboard_error": dashboard_error,
                       "metrics_address": metrics.address if metrics else None, "metrics_error": metrics_error}, f)
        os.replace(tmp, args.ready_file)
        watch = asyncio.ensure_future(_watch_parent(args.parent_pid, stop)) if args.parent_pid else None
        await stop.wait()
        if watch:
            watch.cancel()
    finally:
        if autoscaler is not None:  # first: its nodes drain while the control store still answers
            await autoscaler.close()
        if dashboard is not None:
            await dashboard.close()
        if metrics is not None:
            await metrics.close()
        if gcs_framed is not None:
            await gcs_framed.stop()
        await nm.close()
        if gcs is not None:
            await gcs.close()
        await server.stop(0.2)


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            return
        except PermissionError:
            pass


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from distcore._private.node_manager.memory_monitor import resolve_threshold
    from distcore.exceptions import VersionMismatchError

    try:
        resolve_threshold(args.memory_usage_threshold)
    except ValueError as exc:
        print(f"distcore node failed to start: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(_serve(args))
    except (OSError, VersionMismatchError) as exc:
        print(f"distcore node failed to start: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
