"""Turning a user's return value or ASGI app into frames the proxy writes back.

A response that fits one body message goes back as one ``OK`` frame
``(status, headers, body)``; a streamed one as ``ITEM`` frames (the first holds
status and headers) and an ``END``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[Any], None]

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]
_BYTES = [(b"content-type", b"application/octet-stream")]


def plain_response(value: Any) -> tuple[int, list, bytes] | None:
    """(status, headers, body) for a plain return value, or None if it is an ASGI response."""
    if isinstance(value, str):
        return 200, _TEXT, value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 200, _BYTES, bytes(value)
    if value is None:
        return 200, _TEXT, b""
    if callable(value) and hasattr(value, "status_code"):
        return None  # a Starlette Response: run it as an ASGI app
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
    except ImportError:  # pragma: no cover
        pass
    return 200, _JSON, json.dumps(value).encode()


class ResponseCapture:
    """An ASGI ``send`` that forwards ``http.response.*`` messages as frames."""

    def __init__(self, emit_ok: Callable[[Any], None], emit_item: Callable[[Any], None]) -> None:
        self._emit_ok = emit_ok
        self._emit_item = emit_item
        self._start: dict | None = None
        self.streaming = False
        self.done = False

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self._start = message
            return
        if kind != "http.response.body":
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not self.streaming:
            start = self._start or {"status": 200, "headers": []}
            if not more:
                self.done = True
                self._emit_ok((start["status"], list(start.get("headers", [])), body))
                return
            self.streaming = True
            self._emit_item(("start", start["status"], list(start.get("headers", []))))
        if body:
            self._emit_item(("body", body))
        if not more:
            self.done = True


def make_receive(body: bytes, disconnected: Awaitable[Any] | None = None) -> Callable[[], Awaitable[dict]]:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if disconnected is not None:
            await disconnected
        else:
            import asyncio

            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive
