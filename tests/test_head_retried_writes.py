"""Control-store writes retried after a lost reply apply once (``gcs/idempotency.py``).

The head of a real cluster is armed (env ``DISTCORE_TESTING_GCS_EXIT_AFTER_WRITE``)
to exit right after it applied and recorded one write, before it replies: the
caller sees the head vanish and retries. A thread restarts the head on the
same address and session (``Cluster.restart_head``); the retry must get the
first attempt's reply instead of applying the write again.
"""

from __future__ import annotations

import os

import pytest

import distcore
from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.gcs.idempotency import EXIT_AFTER_ENV
from distcore._private.testing import restart_head_when_it_exits
from distcore.util.state import list_jobs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@distcore.remote
def one() -> int:
    return 1


def test_register_job_retried_after_a_lost_reply_gives_one_job(cluster, tmp_path, monkeypatch):
    marker = str(tmp_path / "head-exited")
    monkeypatch.setenv(EXIT_AFTER_ENV, f"RegisterJob:{marker}")
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    errors: list = []
    restarter = restart_head_when_it_exits(cluster, marker, errors)

    cluster.connect(namespace="once")  # RegisterJob: applied, the head exits, the retry reaches the new head
    restarter.join(60)
    assert not errors, errors
    assert os.path.exists(marker), "the head was not armed: the test proves nothing"

    job_id = distcore.get_runtime_context().get_job_id()
    mine = [j for j in list_jobs() if (j.driver_info or {}).get("pid") == os.getpid()]
    assert [j.job_id for j in mine] == [job_id], mine  # one job for this driver, not one per try
    assert distcore.get(one.remote(), timeout=30) == 1


def test_kv_put_without_overwrite_retried_after_a_lost_reply_says_added(cluster, tmp_path, monkeypatch):
    marker = str(tmp_path / "head-exited")
    monkeypatch.setenv(EXIT_AFTER_ENV, f"KvPut:{marker}")
    cluster.add_node(num_cpus=1)
    cluster.connect(namespace="once")
    core = worker_state.core_worker()
    errors: list = []
    restarter = restart_head_when_it_exits(cluster, marker, errors)

    # The first try adds the key; its reply is lost; the retry must not answer "already there".
    assert core.gcs_call("KvPut", p.KvPut("once", "key", b"first", overwrite=False)) is True
    restarter.join(60)
    assert not errors, errors
    assert os.path.exists(marker)
    assert core.gcs_call("KvGet", p.KvKey("once", "key")) == b"first"
    # A new logical write is a new request: it is applied (and refused: the key exists).
    assert core.gcs_call("KvPut", p.KvPut("once", "key", b"second", overwrite=False)) is False
    assert core.gcs_call("KvGet", p.KvKey("once", "key")) == b"first"
