"""Text rendering of state rows for the CLI: aligned tables, detail blocks,
summaries and the ``distcore memory`` report.

Example::

    print(table([{"node_id": "ab", "state": "ALIVE"}], ["node_id", "state"]))
    # NODE_ID  STATE
    # ab       ALIVE
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

MAX_CELL = 60
UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def cell(value: Any, column: str = "", limit: int = MAX_CELL) -> str:
    """One value as table text: dicts as ``k: v``, times as local dates, long text cut."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, int) and (column.endswith("_ms") or column in ("start_time", "end_time")):
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value / 1000)) if value else ""
    elif isinstance(value, dict):
        text = ", ".join(f"{k}: {cell(v, limit=limit)}" for k, v in value.items() if k != "memory")
    elif isinstance(value, (list, tuple)):
        text = "; ".join(cell(v, limit=limit) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table(rows: Iterable[dict[str, Any]], columns: list[str]) -> str:
    """An aligned table with upper-case headers, two spaces between columns."""
    body = [[cell(r.get(c), c) for c in columns] for r in rows]
    headers = [c.upper() for c in columns]
    widths = [max([len(h)] + [len(line[i]) for line in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for line in body:
        lines.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(lines)


def detail_block(row: dict[str, Any]) -> str:
    """A row as ``key: value`` lines (nested values indented), for ``get`` and ``--detail``."""
    lines: list[str] = []
    width = max((len(k) for k in row), default=0)
    for key, value in row.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"  {k}: {cell(v, limit=200)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{key}:")
            lines += [f"  - {cell(v, limit=200)}" for v in value]
        elif isinstance(value, str) and "\n" in value:
            lines.append(f"{key}: |")
            lines += [f"  {line}" for line in value.rstrip().splitlines()]
        else:
            lines.append(f"{key.ljust(width)}: {cell(value, key, limit=10_000)}")
    return "\n".join(lines)


def size(n: int | float | None, units: str | None = None) -> str:
    """Bytes for humans (``1.91 MiB``), or in fixed ``units`` (B, KB, MB, GB)."""
    if n is None or n < 0:
        return "?"
    if units:
        value = n / UNITS[units]
        return f"{value:.0f} {units}" if units == "B" else f"{value:.2f} {units}"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def task_summary(summary: dict[str, Any]) -> str:
    s = summary["cluster"]
    rows = [{"func_or_class_name": k, "type": g["type"],
             "state_counts": ", ".join(f"{st}: {n}" for st, n in sorted(g["state_counts"].items()))}
            for k, g in s["summary"].items()]
    head = (f"Tasks: {s['total_tasks']} normal, {s['total_actor_tasks']} actor tasks, "
            f"{s['total_actor_scheduled']} actors scheduled")
    return head + "\n\n" + table(rows, ["func_or_class_name", "type", "state_counts"])


def actor_summary(summary: dict[str, Any]) -> str:
    s = summary["cluster"]
    rows = [{"class_name": k, "state_counts": ", ".join(f"{st}: {n}" for st, n in sorted(g["state_counts"].items()))}
            for k, g in s["summary"].items()]
    return f"Actors: {s['total_actors']}\n\n" + table(rows, ["class_name", "state_counts"])


def object_summary(summary: dict[str, Any]) -> str:
    s = summary["cluster"]
    rows = [{"reference_type": k, "total_objects": g["total_objects"], "total_size": size(g["total_size_mb"] * 2**20),
             "workers": g["total_num_workers"], "nodes": g["total_num_nodes"]}
            for k, g in s["summary"].items()]
    head = f"Objects: {s['total_objects']} ({size(s['total_size_mb'] * 2**20)})"
    return head + "\n\n" + table(rows, ["reference_type", "total_objects", "total_size", "workers", "nodes"])


# ------------------------------------------------------------------ distcore memory


def store_status(row: dict[str, Any]) -> str:
    if row.get("location") == "INLINE":
        return "inline"
    if row.get("spilled"):
        return "spilled"
    if row.get("location"):
        return "pinned" if row.get("pinned") else "in memory"
    return "pending" if row.get("task_status") == "PENDING" else "?"


def memory_report(rows: list[dict[str, Any]], stores: dict[str, dict[str, Any]], *, group_by: str = "node",
                  sort_by: str = "size", units: str | None = None, num_entries: int | None = None,
                  stats_only: bool = False) -> dict[str, Any]:
    """Objects grouped and totalled, plus each node's store counters (the data ``distcore memory`` prints)."""
    owner_pid = {r["owner_worker_id"]: r["pid"] for r in rows if r.get("is_owner")}
    key_of = {
        "node": lambda r: f"node {r['node_id'][:12]} ({r['ip']})",
        "owner": lambda r: f"owner {r['owner_worker_id'][:12]} (pid {owner_pid.get(r['owner_worker_id'], '?')})",
        "reference-type": lambda r: r["reference_type"],
    }[group_by]
    order = {
        "size": lambda r: -max(r["object_size"], 0),
        "pid": lambda r: r["pid"],
        "reference-type": lambda r: r["reference_type"],
    }[sort_by]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=order):
        r = dict(r, store=store_status(r), size=size(r["object_size"], units))
        groups.setdefault(key_of(r), []).append(r)
    report: dict[str, Any] = {"groups": {}, "totals": _totals(rows), "stores": stores, "units": units}
    for key, members in groups.items():
        report["groups"][key] = {"totals": _totals(members),
                                 "objects": [] if stats_only else members[: num_entries or None]}
    return report


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sizes = {r["object_id"]: max(r["object_size"], 0) for r in rows}
    by_type: dict[str, int] = {}
    for r in rows:
        by_type[r["reference_type"]] = by_type.get(r["reference_type"], 0) + 1
    spilled = {r["object_id"]: sizes[r["object_id"]] for r in rows if r.get("spilled")}
    pinned = {r["object_id"]: sizes[r["object_id"]] for r in rows if r.get("pinned") and not r.get("spilled")}
    inline = {r["object_id"] for r in rows if r.get("location") == "INLINE"}
    return {"references": len(rows), "objects": len(sizes), "bytes": sum(sizes.values()),
            "by_reference_type": by_type, "spilled_objects": len(spilled), "spilled_bytes": sum(spilled.values()),
            "pinned_objects": len(pinned), "pinned_bytes": sum(pinned.values()), "inline_objects": len(inline)}


def memory_text(report: dict[str, Any]) -> str:
    units = report.get("units")
    t = report["totals"]
    out = [f"======== Object references: {t['references']} to {t['objects']} objects "
           f"({size(t['bytes'], units)}) ========"]
    columns = ["object_id", "size", "reference_type", "type", "pid", "store", "location", "owner_worker_id"]
    for key, group in report["groups"].items():
        g = group["totals"]
        out.append(f"\n--- {key}: {g['references']} references, {g['objects']} objects, "
                   f"{size(g['bytes'], units)} ---")
        if group["objects"]:
            out.append(table(group["objects"], columns))
    out.append("\n--- Totals by reference type ---")
    out += [f"  {k:<22} {n} references" for k, n in sorted(t["by_reference_type"].items())] or ["  (none)"]
    out.append(f"  pinned in memory: {t['pinned_objects']} objects ({size(t['pinned_bytes'], units)}); "
               f"spilled: {t['spilled_objects']} objects ({size(t['spilled_bytes'], units)}); "
               f"inline: {t['inline_objects']} objects")
    out.append("\n--- Object store per node ---")
    for node_id, s in report["stores"].items():
        capacity = s.get("capacity", 0) or 1
        out.append(
            f"  node {node_id[:12]}: {size(s.get('used', 0), units)} / {size(s.get('capacity', 0), units)} used "
            f"({100 * s.get('used', 0) / capacity:.1f}%), {s.get('num_objects', 0)} objects, "
            f"{s.get('num_pinned', 0)} pinned ({size(s.get('pinned_bytes', 0), units)}), "
            f"{s.get('num_spilled', 0)} spilled ({size(s.get('spilled_bytes', 0), units)})"
        )
    return "\n".join(out)
