"""``distcore list | get | summary | logs | timeline | memory``: the state API from the shell.

Every command talks to the cluster at ``--address`` (default: this
machine's running cluster, or ``DISTCORE_ADDRESS``) with the token of
``DISTCORE_AUTH_TOKEN`` or the local session; ``--format json`` prints
machine-readable output.

Examples::

    distcore list actors --filter state=ALIVE
    distcore list tasks --filter name=train --filter state!=FINISHED --limit 20 --format json
    distcore get task 0a1b2c3d...
    distcore summary tasks
    distcore logs --actor-id 5e6f... --follow
    distcore timeline -o trace.json
    distcore memory --group-by owner --units MB
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from distcore.scripts.cli import DISTCORE

RESOURCES = {
    "nodes": "nodes", "jobs": "jobs", "actors": "actors", "tasks": "tasks", "objects": "objects",
    "placement-groups": "placement_groups", "workers": "workers",
}
SINGULAR = {"actor": "actors", "task": "tasks", "node": "nodes", "placement-group": "placement_groups",
            "job": "jobs", "worker": "workers"}


class _UsageError(Exception):
    """Bad command-line input: exit code 2."""


def _common(p: argparse.ArgumentParser, fmt: bool = True) -> None:
    p.add_argument("--address", default=None, help="HOST:PORT of the cluster's head (default: this machine's cluster)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the cluster (default 30)")
    if fmt:
        p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")


def _client(args: argparse.Namespace) -> Any:
    from distcore._private.state_client import StateClient

    return StateClient(args.address, args.timeout)


def _run(name: str, fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command body; turn the errors users cause into a message and an exit code."""
    from distcore._private.rpc import RpcError
    from distcore._private.state_client import StateApiError
    from distcore.exceptions import AuthenticationError

    try:
        return fn(args)
    except _UsageError as exc:
        print(f"distcore {name}: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError, StateApiError, AuthenticationError,
            RpcError) as exc:
        print(f"distcore {name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# ------------------------------------------------------------------ list / get


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("resource", choices=sorted(RESOURCES), help="what to list")
    p.add_argument("--filter", "-f", action="append", default=[], metavar="KEY=VALUE",
                   help="keep rows where KEY=VALUE (or KEY!=VALUE); repeat to combine, e.g. --filter state=ALIVE")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    p.add_argument("--detail", action="store_true", help="every field of every row")
    _common(p)


def _list(args: argparse.Namespace) -> int:
    from distcore._private.state_client import filter_keys
    from distcore._private.state_filters import check_filters, parse_filters
    from distcore._private.state_format import detail_block, table
    from distcore._private.state_schema import SCHEMAS

    resource = RESOURCES[args.resource]
    try:
        filters = check_filters(parse_filters(args.filter), filter_keys(resource), args.resource)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if args.limit < 0:
        raise _UsageError(f"--limit must be 0 or more, got {args.limit}")
    rows, total = _client(args).list_rows(resource, filters, args.limit, args.detail)
    dicts = [r.asdict() for r in rows]
    if args.format == "json":
        _dump(dicts)
        return 0
    if args.detail:
        print("\n\n".join(detail_block(d) for d in dicts) if dicts else f"(no {args.resource})")
    elif dicts:
        print(table(dicts, SCHEMAS[resource].table_columns()))
    else:
        print(f"(no {args.resource}{' match the filters' if filters else ''})")
    if total > len(rows):
        print(f"({len(rows)} of {total} {args.resource} shown; raise --limit to see more)", file=sys.stderr)
    return 0


def _configure_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("resource", choices=sorted(SINGULAR), help="what to show")
    p.add_argument("id", help="its id (a unique prefix is enough)")
    _common(p)


def _get(args: argparse.Namespace) -> int:
    from distcore._private.state_format import detail_block

    row = _client(args).get(SINGULAR[args.resource], args.id)
    if row is None:
        print(f"distcore get: no {args.resource} has id {args.id!r}; `distcore list {args.resource}s` shows them",
              file=sys.stderr)
        return 1
    if args.format == "json":
        _dump(row.asdict())
    else:
        print(detail_block(row.asdict()))
    return 0


# ------------------------------------------------------------------ summary


def _configure_summary(p: argparse.ArgumentParser) -> None:
    p.add_argument("resource", choices=("tasks", "actors", "objects"), help="what to summarize")
    _common(p)


def _summary(args: argparse.Namespace) -> int:
    from distcore._private import state_client, state_format

    client = _client(args)
    if args.resource == "tasks":
        summary, text = client.summarize_tasks(), state_format.task_summary
    elif args.resource == "actors":
        summary, text = state_client.summarize_actors(client.list_rows("actors", limit=1 << 30)[0]), state_format.actor_summary
    else:
        rows = client.list_rows("objects", limit=1 << 30)[0]
        summary, text = state_client.summarize_objects(rows), state_format.object_summary
    if args.format == "json":
        _dump(summary)
    else:
        print(text(summary))
    return 0


# ------------------------------------------------------------------ logs


def _configure_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("filename", nargs="?", help="a log file of --node-id to print (as listed without it)")
    p.add_argument("--node-id", help="the node whose logs to list (or whose FILENAME to print)")
    p.add_argument("--actor-id", help="print the log of the worker hosting this actor")
    p.add_argument("--task-id", help="print the log of the worker that ran this task")
    p.add_argument("--job-id", help="print the logs of every worker that ran this job's tasks")
    p.add_argument("--worker-id", help="print this worker's log")
    p.add_argument("--tail", type=int, default=1000, help="print the last N lines (default 1000; -1: all)")
    p.add_argument("--follow", action="store_true", help="keep printing new lines until interrupted")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    _common(p, fmt=False)


def _logs(args: argparse.Namespace) -> int:
    from distcore._private.state_client import iter_logs
    from distcore._private.state_format import size, table

    client = _client(args)
    selectors = [args.actor_id, args.task_id, args.job_id, args.worker_id]
    if sum(1 for s in selectors if s) > 1:
        raise _UsageError("give one of --actor-id, --task-id, --job-id or --worker-id")
    if args.filename:
        if not args.node_id:
            raise _UsageError("printing a log file needs --node-id too (`distcore logs` lists every node's files)")
        targets = [(client.node(args.node_id).node_id, args.filename, args.filename)]
    elif any(selectors):
        targets = client.worker_logs(worker_id=args.worker_id, actor_id=args.actor_id, task_id=args.task_id,
                                     job_id=args.job_id)
    else:
        for node_id, files in client.list_logs(args.node_id).items():
            print(f"======== node {node_id} ========")
            rows = [{"filename": f.filename, "size": size(f.size),
                     "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.modified))} for f in files]
            print(table(rows, ["filename", "size", "modified"]) if rows else "(no log files)")
        return 0
    tail = args.tail if args.tail >= 0 else 1 << 30
    for text in iter_logs(client, targets, tail=tail, follow=args.follow, interval=args.interval,
                          headers=len(targets) > 1):
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ timeline


def _configure_timeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="file to write (default: distcore-timeline-<time>.json in the temp dir)")
    p.add_argument("--job-id", help="only this job's tasks")
    _common(p, fmt=False)


def _timeline(args: argparse.Namespace) -> int:
    from distcore._private.core_worker.task_events import chrome_trace

    events = chrome_trace(_client(args).task_events(args.job_id))
    path = args.output or os.path.join(
        tempfile.gettempdir(), f"distcore-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    )
    with open(path, "w") as f:
        json.dump(events, f)
    print(f"wrote {len(events)} task executions to {path}; open it in chrome://tracing or https://ui.perfetto.dev")
    return 0


# ------------------------------------------------------------------ memory


def _configure_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-by", choices=("node", "owner", "reference-type"), default="node",
                   help="group references by the node of the process holding them, the owner, or the type")
    p.add_argument("--sort-by", choices=("size", "pid", "reference-type"), default="size")
    p.add_argument("--units", choices=("B", "KB", "MB", "GB"), default=None, help="fixed size units")
    p.add_argument("--num-entries", type=int, default=None, help="at most N references per group")
    p.add_argument("--stats-only", action="store_true", help="totals only, no per-object rows")
    _common(p)


def _memory(args: argparse.Namespace) -> int:
    from distcore._private.state_format import memory_report, memory_text

    client = _client(args)
    rows = [r.asdict() for r in client.list_rows("objects", limit=1 << 30)[0]]
    stores = {node.node_id: dict(stats.object_store) for node, stats in client.node_stats()}
    report = memory_report(rows, stores, group_by=args.group_by, sort_by=args.sort_by, units=args.units,
                           num_entries=args.num_entries, stats_only=args.stats_only)
    if args.format == "json":
        _dump(report)
    else:
        print(memory_text(report))
    return 0


def _cmd(name: str, body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    return lambda args: _run(name, body, args)


DISTCORE.add("list", "list nodes, jobs, actors, tasks, objects, placement groups or workers",
             _cmd("list", _list), _configure_list)
DISTCORE.add("get", "show one actor, task, node, placement group, job or worker", _cmd("get", _get), _configure_get)
DISTCORE.add("summary", "summarize tasks, actors or objects", _cmd("summary", _summary), _configure_summary)
DISTCORE.add("logs", "list log files, or print (and follow) the logs of a node, actor, task, job or worker",
             _cmd("logs", _logs), _configure_logs)
DISTCORE.add("timeline", "write task executions as a Chrome trace (JSON)", _cmd("timeline", _timeline),
             _configure_timeline)
DISTCORE.add("memory", "objects by node, owner or reference type; pinned, spilled and totals",
             _cmd("memory", _memory), _configure_memory)
