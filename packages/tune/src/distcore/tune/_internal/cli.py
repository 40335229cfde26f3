"""``distcore-tune list`` and ``distcore-tune show``: experiments and results from a storage path."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from distcore.tune._internal.experiment_state import STATE_FILE


def _storage_default() -> str:
    return os.environ.get("DISTCORE_STORAGE_PATH") or os.path.join(os.path.expanduser("~"), "distcore_results")


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def list_experiments(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.path or _storage_default())
    if not os.path.isdir(root):
        print(f"no such directory: {root}")
        return 1
    rows = [["experiment", "trials", "terminated", "errored", "unfinished", "updated"]]
    for name in sorted(os.listdir(root)):
        state_path = os.path.join(root, name, STATE_FILE)
        if not os.path.exists(state_path):
            continue
        with open(state_path) as f:
            state = json.load(f)
        statuses = [t["status"] for t in state.get("trials", [])]
        rows.append([name, str(len(statuses)), str(statuses.count("TERMINATED")), str(statuses.count("ERROR")),
                     str(len(statuses) - statuses.count("TERMINATED") - statuses.count("ERROR")),
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.get("timestamp", 0)))])
    if len(rows) == 1:
        print(f"no experiments under {root}")
        return 0
    print(_table(rows))
    return 0


def show_experiment(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.path)
    state_path = os.path.join(path, STATE_FILE)
    if not os.path.exists(state_path):
        print(f"not an experiment directory (no {STATE_FILE}): {path}")
        return 1
    with open(state_path) as f:
        state = json.load(f)
    trials = state.get("trials", [])
    from distcore.tune._internal.variants import flatten

    config_keys: list[str] = []
    metric_keys: list[str] = [args.metric] if args.metric else []
    for t in trials:
        for key in flatten(t["config"]):
            if key not in config_keys:
                config_keys.append(key)
    metric_keys += [k for k in ("training_iteration", "time_total_s") if k not in metric_keys]
    if args.metric and args.mode:
        def sort_key(t: dict[str, Any]) -> float:
            value = flatten(t.get("last_result") or {}).get(args.metric)
            if not isinstance(value, (int, float)):
                return float("inf")
            return value if args.mode == "min" else -value

        trials = sorted(trials, key=sort_key)
    rows = [["trial", "status", *config_keys[:8], *metric_keys]]
    for t in trials[: args.limit]:
        flat = flatten(t["config"])
        result = flatten(t.get("last_result") or {})
        rows.append([t.get("custom_name") or f"{t['trainable_name']}_{t['trial_id']}", t["status"],
                     *[_fmt(flat.get(k)) for k in config_keys[:8]], *[_fmt(result.get(k)) for k in metric_keys]])
    print(f"{state.get('name')}: {len(trials)} trials")
    print(_table(rows))
    return 0


def configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="storage path (default $DISTCORE_STORAGE_PATH or ~/distcore_results)")


def configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an experiment directory (storage_path/name)")
    parser.add_argument("--metric", help="metric column to show (and sort by, with --mode)")
    parser.add_argument("--mode", choices=["min", "max"], help="sort order for --metric")
    parser.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
