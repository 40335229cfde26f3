"""A pull from a node the puller's cluster view does not know yet waits for the view, not "lost".

Seen under load after a head restart: a task on a worker node pulled an object
from the new head node before that node's view listed it, and the object was
declared lost at once.
"""

from __future__ import annotations

import asyncio
import time

from distcore._private import protocol as p
from distcore._private.node_manager.object_transfer import ObjectTransfer, PullObject


def _transfer(view: p.ClusterView, refresh) -> ObjectTransfer:
    return ObjectTransfer(None, None, "puller", lambda: view, refresh)  # type: ignore[arg-type]


def test_a_holder_that_joins_the_view_late_is_found():
    view = p.ClusterView(nodes={})
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the third look-up sees the new node
            view.nodes["new"] = p.NodeView("new", "127.0.0.1:5000", {}, {}, True)

    address = asyncio.run(_transfer(view, refresh)._holder_address(PullObject("o1", "new", 0)))
    assert address == "127.0.0.1:5000" and calls == 3


def test_a_dead_holder_is_lost_at_once_and_an_unknown_one_after_the_wait(monkeypatch):
    from distcore._private.node_manager import object_transfer

    view = p.ClusterView(nodes={"dead": p.NodeView("dead", "127.0.0.1:5001", {}, {}, False)})

    async def refresh() -> None:
        pass

    start = time.monotonic()
    assert asyncio.run(_transfer(view, refresh)._holder_address(PullObject("o1", "dead", 0))) is None
    assert time.monotonic() - start < 0.5
    monkeypatch.setattr(object_transfer, "UNKNOWN_NODE_WAIT_S", 0.6)
    start = time.monotonic()
    assert asyncio.run(_transfer(view, refresh)._holder_address(PullObject("o1", "never", 0))) is None
    assert 0.5 <= time.monotonic() - start < 3
