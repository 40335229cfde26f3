"""Placement-group writes are keyed by the group's id (``gcs/idempotency.py`` KEYED_WRITES).

A retried ``CreatePlacementGroup`` or ``RemovePlacementGroup`` (same request
id, or the same group id after a head restart) applies once without a
recorded reply: the control store answers it from the group's own row.
"""

from __future__ import annotations

import asyncio

from distcore._private import protocol as p
from distcore._private.gcs.idempotency import TABLE, OnceCall
from distcore._private.gcs.server import GcsService
from distcore._private.gcs.storage import Storage


def _spec(pg_id: str, name: str = "") -> p.PlacementGroupSpec:
    return p.PlacementGroupSpec(pg_id=pg_id, bundles=[{"CPU": 1.0}], strategy="PACK", name=name,
                                namespace="ns", job_id="00000001", detached=False)


async def _stop_placing(gcs: GcsService) -> None:
    for group in gcs.pgs.groups.values():
        if group.task is not None:
            group.task.cancel()
    await asyncio.sleep(0)
    await gcs.close()


def test_create_and_remove_retried_apply_once_without_reply_rows_across_a_restart(tmp_path):
    db = str(tmp_path / "gcs.sqlite")

    async def first_head() -> list:
        gcs = GcsService(db, None)
        create = OnceCall("req-create", "CreatePlacementGroup", _spec("pg1", name="g"))
        # No node can hold it: it stays PENDING. A retry while the first try runs joins it.
        states = await asyncio.gather(gcs.rpc_Once(create), gcs.rpc_Once(create))
        states.append(await gcs.rpc_Once(create))  # a later retry: answered from the group's row
        groups = sorted(gcs.pgs.groups)
        await _stop_placing(gcs)
        return [states, groups]

    states, groups = asyncio.run(first_head())
    assert states == ["PENDING", "PENDING", "PENDING"]
    assert groups == ["pg1"]  # one group, not one per try (a second create of the name would raise)
    storage = Storage(db)
    assert storage.load(TABLE) == {}  # no recorded reply
    assert storage.load("pgs")["pg1"].state == "PENDING"  # written before the reply left
    storage.close()

    async def restarted_head() -> list:
        gcs = GcsService(db, None)  # reloads the group
        again = await gcs.rpc_Once(OnceCall("req-create", "CreatePlacementGroup", _spec("pg1", name="g")))
        removes = [await gcs.rpc_Once(OnceCall("req-remove", "RemovePlacementGroup", "pg1")) for _ in range(2)]
        state = gcs.pgs.groups["pg1"].info.state
        count = len(gcs.pgs.groups)
        await _stop_placing(gcs)
        return [again, removes, state, count]

    again, removes, state, count = asyncio.run(restarted_head())
    assert again == "PENDING" and removes == [None, None] and state == "REMOVED" and count == 1
    storage = Storage(db)
    assert storage.load(TABLE) == {}
    assert storage.load("pgs")["pg1"].state == "REMOVED"
    storage.close()


def test_other_writes_still_record_their_replies(tmp_path):
    async def run() -> tuple:
        gcs = GcsService(str(tmp_path / "gcs.sqlite"), None)
        put = OnceCall("req-kv", "KvPut", p.KvPut("ns", "k", b"v", overwrite=False))
        replies = (await gcs.rpc_Once(put), await gcs.rpc_Once(put))
        rows = gcs.storage.load(TABLE)
        await gcs.close()
        return replies, rows

    replies, rows = asyncio.run(run())
    assert replies == (True, True)  # the retry gets the first reply, not "already there"
    assert list(rows) == ["req-kv"]
