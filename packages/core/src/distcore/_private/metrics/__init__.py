"""Per-node Prometheus metrics (issue 4, observability).

Each node process can serve its own metrics over HTTP (``--metrics-export-port``
of ``distcore start``, ``Cluster.add_node(metrics_export_port=...)``,
``distcore.init(_metrics_export_port=...)``); ``docs/ports.md`` lists the names.

- :mod:`.stats`: lease counters and the grant-latency histogram, plain Python
  (the lease manager records into them whether or not metrics are served).
- :mod:`.collectors`: prometheus-client collectors that read the node's state
  when scraped.
- :mod:`.server`: the HTTP endpoint on the node's event loop.

prometheus-client comes with ``distcore[default]``; without it the node runs
without metrics and says why (:func:`start_if_available`).

Example (``node_main``)::

    server, error = await start_if_available(nm, gcs, host="127.0.0.1", port=0, token=token)
"""

from __future__ import annotations

import logging
from typing import Any

from distcore._private.metrics.stats import LeaseStats

__all__ = ["MISSING_EXTRA", "LeaseStats", "start_if_available"]

logger = logging.getLogger(__name__)

MISSING_EXTRA = 'metrics need prometheus-client: pip install "distcore[default]"'


async def start_if_available(node_manager: Any, gcs: Any | None, **kwargs: Any) -> tuple[Any | None, str | None]:
    """``(server, None)`` once it listens, or ``(None, why not)``; the node runs on either way.

    ``kwargs`` are :func:`distcore._private.metrics.server.start_metrics_server`'s.
    """
    try:
        from distcore._private.metrics.server import start_metrics_server
    except ImportError as exc:
        message = f"{MISSING_EXTRA} ({exc})"
        logger.warning("not serving metrics: %s", message)
        return None, message
    try:
        return await start_metrics_server(node_manager, gcs, **kwargs), None
    except OSError as exc:
        message = f"cannot serve metrics on {kwargs.get('host')}:{kwargs.get('port')}: {exc}"
        logger.error("not serving metrics: %s", message)
        return None, message
