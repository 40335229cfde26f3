"""Control-store writes that are safe to retry: one request id per logical call.

A client retries a control-store call that failed as unavailable (the head
crashed or restarts; ``core_worker/gcs_client.py``). For a read that is
harmless; for a write whose reply was lost after the head applied it, the
retry would apply it twice: a second job id for one driver, an actor
registered twice, ``KvPut(overwrite=False)`` answering False for the caller's
own key. So the client sends each write in :class:`OnceCall`, with a request
id it keeps across the retries, and the control store runs it through
:class:`ReplyCache`:

- a request id seen before gets the reply recorded for it, without running
  the write again (a retry arriving while the first attempt still runs
  waits for that attempt);
- a reply is recorded in the session's SQLite (table ``replies``) before it
  is sent, so a head restarted on the same session still knows it;
- the cache is bounded (:data:`MAX_REPLIES`, oldest dropped) and an entry
  lives :data:`REPLY_TTL_S` at most: far longer than a client retries.

A failed write (the handler raised) is not recorded: its retry runs again
and fails the same way, or succeeds if the failure was transient.

A *keyed* write (:data:`KEYED_WRITES`) names, in its request, the one thing
it changes by an id the caller made for this logical call (a placement
group's id), and its handler answers a repeat from that thing's persisted
state without changing anything. Applying it twice is applying it once, so
its reply is not recorded (no SQLite row, nothing to trim: two rows and,
once the cache is full, two deletes less per placement group); a retry
arriving while the first attempt still runs waits for that attempt all the
same.

Example::

    cache = ReplyCache(storage)
    reply = await cache.run(OnceCall("3f2a...", "RegisterJob", job), service.rpc_RegisterJob)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from distcore._private.gcs.storage import Storage

logger = logging.getLogger(__name__)

#: Control-store methods that change state; clients send them as :class:`OnceCall`.
WRITE_METHODS = frozenset({
    "RegisterJob", "RegisterActor", "KillActor", "CreatePlacementGroup", "RemovePlacementGroup", "KvPut", "KvDel",
})
#: Writes whose retry the handler itself recognises (see the module docstring): no recorded reply.
KEYED_WRITES = frozenset({"CreatePlacementGroup", "RemovePlacementGroup"})
MAX_REPLIES = 10_000
REPLY_TTL_S = 3600.0
TABLE = "replies"

#: Test hook (env): ``Method:/path/marker``: the head exits right after it recorded the reply of
#: ``Method`` (the write applied, the reply never sent), once: it creates the marker first.
EXIT_AFTER_ENV = "DISTCORE_TESTING_GCS_EXIT_AFTER_WRITE"


@dataclass(slots=True)
class OnceCall:
    """``Gcs.Once`` request: ``method``'s request, with the id that names the logical call."""

    request_id: str
    method: str
    request: Any


class ReplyCache:
    """Replies of applied writes by request id, persisted in ``storage``."""

    def __init__(self, storage: Storage, max_replies: int = MAX_REPLIES, ttl_s: float = REPLY_TTL_S) -> None:
        self._storage = storage
        self._max = max_replies
        self._ttl = ttl_s
        now = time.time()
        loaded = sorted(storage.load(TABLE).items(), key=lambda kv: kv[1][0])
        self._replies: OrderedDict[str, tuple[float, Any]] = OrderedDict(
            (rid, row) for rid, row in loaded if now - row[0] < ttl_s
        )
        for rid, _ in loaded:
            if rid not in self._replies:
                storage.delete(TABLE, rid)
        self._trim()
        self._running: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._replies)

    async def run(self, call: OnceCall, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """``handler(call.request)``, once per ``call.request_id``; its recorded reply otherwise."""
        done = self._replies.get(call.request_id)
        if done is not None and time.time() - done[0] < self._ttl:
            logger.info("%s %s was applied before (a retried write): answering its recorded reply",
                        call.method, call.request_id[:8])
            return done[1]
        running = self._running.get(call.request_id)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._running[call.request_id] = fut
        try:
            reply = await handler(call.request)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a waiting retry re-raises it, nobody else needs to
            raise
        else:
            if call.method not in KEYED_WRITES:
                self._record(call.request_id, reply)
            fut.set_result(reply)
            _maybe_exit_for_test(call.method)
            return reply
        finally:
            self._running.pop(call.request_id, None)

    def _record(self, request_id: str, reply: Any) -> None:
        row = (time.time(), reply)
        self._replies[request_id] = row
        self._replies.move_to_end(request_id)
        try:
            self._storage.put(TABLE, request_id, row)
        except Exception:  # noqa: BLE001 - an unpicklable reply: the in-memory record still dedups
            logger.exception("could not persist the reply of write %s", request_id[:8])
        self._trim()

    def _trim(self) -> None:
        while len(self._replies) > self._max:
            rid, _ = self._replies.popitem(last=False)
            self._storage.delete(TABLE, rid)


def _maybe_exit_for_test(method: str) -> None:
    spec = os.environ.get(EXIT_AFTER_ENV, "")
    if not spec or ":" not in spec:
        return
    target, marker = spec.split(":", 1)
    if target != method or os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    logger.warning("test hook %s: exiting after applying %s, before its reply", EXIT_AFTER_ENV, method)
    os._exit(17)
