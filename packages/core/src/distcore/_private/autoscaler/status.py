"""Formatting the autoscaler's state (``GetAutoscalerStatus``) for ``distcore status``.

Example output::

    Autoscaler (max_workers 2, idle_timeout_s 3):
      cpu_worker   launching 0  active 2  idle 0   (min 0, max 2)  {CPU: 1}
      Recent decisions:
        12:00:01 launch 2 x cpu_worker for task demand that fits nowhere: 2 x {CPU: 1}
        12:00:09 terminate local-cpu_worker-1a2b (cpu_worker): idle for 3.0 s (idle_timeout_s=3)
"""

from __future__ import annotations

import time
from typing import Any

MAX_SHOWN_DECISIONS = 10


def format_autoscaler_status(status: dict[str, Any] | None) -> list[str]:
    """Lines for ``distcore status``; one line saying it is off when ``status`` is None."""
    if not status:
        return ["Autoscaler: off (start the head with an autoscaling config: distcore up cluster.yaml)"]
    lines = [f"Autoscaler (max_workers {status.get('max_workers')}, idle_timeout_s {status.get('idle_timeout_s'):g}):"]
    types = status.get("node_types") or {}
    width = max((len(n) for n in types), default=0)
    for name, row in sorted(types.items()):
        limits = f"(min {row.get('min_workers', 0)}, max {row.get('max_workers', '?')})" if "max_workers" in row else ""
        res = _shape(row.get("resources", {}))
        lines.append(f"  {name:<{width}}  launching {row['launching']}  active {row['active']}  idle {row['idle']}"
                     f"   {limits}  {res}".rstrip())
    for node in status.get("nodes", []):
        idle = f" idle {node['idle_s']:.0f} s" if node.get("state") == "idle" else ""
        node_id = node.get("node_id", "")[:12] or "-"
        lines.append(f"    {node['state']:<9} {node['node_type']:<{width}} {node['provider_id']} node {node_id}{idle}")
    if status.get("resource_request"):
        lines.append(f"  request_resources: {', '.join(_shape(b) for b in status['resource_request'])}")
    if status.get("infeasible"):
        lines.append(f"  infeasible (no node type fits): {', '.join(_shape(b) for b in status['infeasible'])}")
    if status.get("capped"):
        lines.append(f"  waiting for max_workers: {', '.join(_shape(b) for b in status['capped'])}")
    if status.get("error"):
        lines.append(f"  last update failed: {status['error']}")
    decisions = status.get("last_decisions") or []
    lines.append("  Recent decisions:")
    if not decisions:
        lines.append("    (none)")
    for d in decisions[-MAX_SHOWN_DECISIONS:]:
        lines.append(f"    {time.strftime('%H:%M:%S', time.localtime(d['time']))} {d['message']}")
    return lines


def _shape(shape: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items()) if v) + "}"
