"""Placement groups on the head's own node: reserved within placement_group(), semantics unchanged.

The control store reserves bundles on the head's node manager in-process, so a
group that fits there is created by the time placement_group() returns, and
the first wait() on that handle needs no second call.
"""

from __future__ import annotations

import time

import pytest

import distcore
from distcore.util import placement_group, placement_group_table, remove_placement_group

pytestmark = pytest.mark.timeout(120)


def test_a_group_that_fits_is_created_when_placement_group_returns(shared_cluster):
    pg = placement_group([{"custom": 1}])
    assert placement_group_table(pg)["state"] == "CREATED"  # no wait() needed
    assert pg.wait(timeout_seconds=10) is True
    assert pg.wait(timeout_seconds=10) is True  # asks the control store this time
    assert distcore.get(pg.ready(), timeout=10) is True
    remove_placement_group(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_wait_after_removal_through_the_handle_is_false(shared_cluster):
    pg = placement_group([{"custom": 1}])
    remove_placement_group(pg)
    assert pg.wait(timeout_seconds=1) is False


def test_a_group_that_does_not_fit_is_pending_and_wait_times_out(shared_cluster):
    pg = placement_group([{"custom": 1000}])
    start = time.monotonic()
    assert pg.wait(timeout_seconds=0.5) is False
    assert time.monotonic() - start >= 0.4
    assert placement_group_table(pg)["state"] == "PENDING"
    remove_placement_group(pg)


def test_removal_frees_the_bundles_for_the_next_group(shared_cluster):
    total = distcore.cluster_resources()["custom"]
    for _ in range(5):
        pg = placement_group([{"custom": total}])  # all of it: fits only once the last one is gone
        assert pg.wait(timeout_seconds=10) is True
        remove_placement_group(pg)


def test_a_handle_passed_to_a_task_asks_the_control_store(shared_cluster):
    @distcore.remote(num_cpus=0)
    def check(handle):
        return handle.wait(timeout_seconds=1)

    pg = placement_group([{"custom": 1}])
    assert distcore.get(check.remote(pg), timeout=30) is True
    remove_placement_group(pg)
    assert distcore.get(check.remote(pg), timeout=30) is False
