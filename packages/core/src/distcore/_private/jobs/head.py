"""Starting the jobs API from the head process, when its extra is installed.

Example (``node_main``)::

    dashboard, error = await start_if_available(gcs, nm, host="127.0.0.1", port=8265, ...)
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

MISSING_EXTRA = 'the jobs API needs starlette and uvicorn: pip install "distcore[default]"'


async def start_if_available(gcs: Any, node_manager: Any, **kwargs: Any) -> tuple[Any | None, str | None]:
    """``(server, None)`` once it listens, or ``(None, why not)``; the head runs on either way.

    ``kwargs`` are :func:`distcore._private.jobs.server.start_dashboard`'s.
    """
    try:
        from distcore._private.jobs.server import start_dashboard
    except ImportError as exc:
        message = f"{MISSING_EXTRA} ({exc})"
        logger.warning("not starting the jobs API: %s", message)
        return None, message
    try:
        return await start_dashboard(gcs, node_manager, **kwargs), None
    except OSError as exc:
        logger.error("not starting the jobs API: %s", exc)
        return None, str(exc)
