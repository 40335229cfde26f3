"""A placement group created while the head dies before replying is created once (keyed writes).

``CreatePlacementGroup`` records no reply (``gcs/idempotency.py`` KEYED_WRITES): the
armed head (env ``DISTCORE_TESTING_GCS_EXIT_AFTER_WRITE``) exits right after it
applied the create, the caller retries against the restarted head, and the
control store recognises the group's id from its persisted row.
"""

from __future__ import annotations

import os
import time

import pytest

import distcore
from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.gcs.idempotency import EXIT_AFTER_ENV
from distcore._private.testing import restart_head_when_it_exits
from distcore.util import placement_group, placement_group_table, remove_placement_group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _available(resource: str, want: float, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    got = distcore.available_resources().get(resource, 0.0)
    while abs(got - want) > 1e-6 and time.monotonic() < deadline:
        time.sleep(0.1)
        got = distcore.available_resources().get(resource, 0.0)
    return got


@pytest.mark.parametrize("where", ["head", "worker_node"])
def test_create_retried_after_a_lost_reply_gives_one_group(cluster, tmp_path, monkeypatch, where):
    marker = str(tmp_path / "head-exited")
    monkeypatch.setenv(EXIT_AFTER_ENV, f"CreatePlacementGroup:{marker}")
    if where == "head":
        cluster.add_node(num_cpus=1, resources={"slot": 1})
    else:
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1, resources={"slot": 1})  # reserved over gRPC, after the row is written
    cluster.connect(namespace="once")
    core = worker_state.core_worker()
    assert core.gcs_call("KvGet", p.KvKey("once", "warm")) is None  # the blocking path is up (framed here)
    errors: list = []
    restarter = restart_head_when_it_exits(cluster, marker, errors)

    pg = placement_group([{"slot": 1}], name="once-pg")  # applied; the head exits; the retry reaches the new head
    restarter.join(60)
    assert not errors, errors
    assert os.path.exists(marker), "the head was not armed: the test proves nothing"

    assert pg.wait(timeout_seconds=30) is True
    table = placement_group_table()
    assert list(table) == [pg.id], table  # one group, not one per try
    assert table[pg.id]["state"] == "CREATED"
    assert _available("slot", 0.0) == 0.0  # its one bundle holds the one slot
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert _available("slot", 1.0) == 1.0
