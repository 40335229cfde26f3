"""A node's Prometheus endpoint: a tiny HTTP/1.1 server on the node's event loop.

The node process already runs an asyncio loop (``node_main``); this serves
scrapes on that loop with ``asyncio.start_server``, so collectors read the
node manager's state from the thread that changes it, and no web framework
is needed. Each connection carries one request and is closed after the answer.

Paths:

``GET /metrics`` (or ``/``)  the node's metrics, in the text format or in
                             OpenMetrics when the scraper asks for it
``GET /-/healthz``           ``success``; the only path without a token

With a cluster token, every other request needs ``Authorization: Bearer
<token>`` and is refused with 401 (and logged) without it.

Example (``node_main``)::

    server = await start_metrics_server(nm, gcs, host="127.0.0.1", advertise_host="127.0.0.1",
                                        port=0, token=token)
    server.address      # "127.0.0.1:40211": scrape http://127.0.0.1:40211/metrics
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder

from distcore._private.metrics.collectors import ControlStoreCollector, NodeCollector

__all__ = ["MetricsServer", "build_registry", "start_metrics_server"]

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_HEAD = 16 * 1024
HEALTH_PATH = "/-/healthz"
METRICS_PATHS = frozenset({"/metrics", "/"})

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def build_registry(node_manager: Any, gcs: Any | None = None) -> CollectorRegistry:
    """A registry of its own (not prometheus-client's global one) for one node."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node_manager))
    if gcs is not None:
        registry.register(ControlStoreCollector(gcs, node_manager.node_id))
    ProcessCollector(namespace="distcore_node", registry=registry)
    return registry


class MetricsServer:
    """Serves one registry over HTTP until :meth:`close`."""

    def __init__(self, registry: CollectorRegistry, token: str | None) -> None:
        self.registry = registry
        self._expected = f"Bearer {token}".encode() if token else None
        self._server: asyncio.Server | None = None
        self.address = ""  # host:port scrapers use, once started

    async def start(self, host: str, port: int, advertise_host: str | None = None) -> None:
        """Listen on ``host:port`` (0: any free port). Raises ``OSError`` when it cannot."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_HEAD)
        bound = self._server.sockets[0].getsockname()[1]
        self.address = f"{advertise_host or host}:{bound}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                await _write(writer, 431, "text/plain", b"request head too large\n", {}, True)
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            peer = writer.get_extra_info("peername")
            status, content_type, body, headers, send_body = self._answer(head, peer)
            await _write(writer, status, content_type, body, headers, send_body)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes, peer: Any) -> tuple[int, str, bytes, dict[str, str], bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, "text/plain", b"malformed request line\n", {}, True
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path = urlsplit(target).path or "/"
        send_body = method != "HEAD"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", f"{method} is not allowed: use GET\n".encode(), {"Allow": "GET, HEAD"}, True
        if path == HEALTH_PATH:
            return 200, "text/plain", b"success\n", {}, send_body
        if path not in METRICS_PATHS:
            return 404, "text/plain", f"no such path {path!r}: scrape /metrics\n".encode(), {}, send_body
        if self._expected is not None and not hmac.compare_digest(
            headers.get("authorization", "").encode("latin-1"), self._expected
        ):
            logger.warning("refused a metrics scrape %s %s from %s: %s cluster token", method, path, peer,
                           "a wrong" if headers.get("authorization") else "no")
            body = (b"missing or wrong cluster token: send 'Authorization: Bearer <token>' (the cluster's "
                    b"DISTCORE_AUTH_TOKEN, or the token file in the head's session directory)\n")
            return 401, "text/plain", body, {"WWW-Authenticate": "Bearer"}, send_body
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        try:
            body = encoder(self.registry)
        except Exception as exc:  # noqa: BLE001 - a scrape must not take the node down
            logger.exception("collecting metrics failed")
            return 500, "text/plain", f"collecting metrics failed: {exc}\n".encode(), {}, send_body
        return 200, content_type, body, {}, send_body


async def _write(
    writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, headers: dict[str, str],
    send_body: bool,
) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if send_body:
        writer.write(body)
    await writer.drain()


async def start_metrics_server(
    node_manager: Any,
    gcs: Any | None,
    *,
    host: str,
    port: int,
    token: str | None,
    advertise_host: str | None = None,
) -> MetricsServer:
    """Serve ``node_manager``'s (and on the head ``gcs``'s) metrics on ``host:port``.

    Raises:
        OSError: the port is taken or the address is invalid.
    """
    server = MetricsServer(build_registry(node_manager, gcs), token)
    await server.start(host, port, advertise_host)
    logger.info("serving metrics at http://%s/metrics", server.address)
    return server
