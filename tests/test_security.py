"""Every RPC needs the cluster token: calls without it, or with a wrong one,
are refused before any handler runs, and nothing is executed."""

from __future__ import annotations

import asyncio
import os

import pytest

import distcore
from distcore._private import protocol as p
from distcore._private.rpc import RpcClient
from distcore.exceptions import AuthenticationError

pytestmark = pytest.mark.integration


def call(address: str, token: str | None, service: str, method: str, request=None):
    async def go():
        client = RpcClient(address, token)
        try:
            return await client.call(service, method, request, timeout=10)
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.fixture
def secured(cluster):
    cluster.add_node(num_cpus=1)
    cluster.connect()
    return cluster


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_control_store_refuses_calls_without_the_token(secured, token):
    with pytest.raises(AuthenticationError, match="missing or wrong cluster token"):
        call(secured.address, token, "Gcs", "KvPut", p.KvPut("x", "k", b"v"))
    with pytest.raises(AuthenticationError):
        call(secured.address, token, "Gcs", "RegisterJob", p.JobInfo(job_id=""))
    # The refused write did not happen.
    assert call(secured.address, secured.auth_token, "Gcs", "KvGet", p.KvKey("x", "k")) is None


def test_health_check_needs_no_token(secured):
    assert call(secured.address, None, "Health", "Check") == "ok"


def test_task_submission_and_object_fetch_are_refused(secured, tmp_path):
    marker = tmp_path / "ran"

    @distcore.remote
    def touch(path: str) -> str:
        open(path, "w").close()
        return "ran"

    ref = distcore.put(b"x" * 300_000)  # large: lives in the node's store
    assert distcore.get(touch.remote(str(tmp_path / "warmup"))) == "ran"  # a registered worker exists
    stats = call(secured.address, secured.auth_token, "NodeManager", "GetNodeStats")
    worker = next(w for w in stats.workers if w["address"])
    # Leasing a worker, fetching the object, and pushing a task straight to a worker.
    lease = p.LeaseRequest("l1", {"CPU": 1}, None, "", "00000001", None)
    with pytest.raises(AuthenticationError):
        call(secured.address, None, "NodeManager", "RequestWorkerLease", lease)
    with pytest.raises(AuthenticationError):
        call(secured.address, "bad", "NodeManager", "ReadObject", ref.hex())
    spec_owner = p.Address("127.0.0.1", 1, "x", "y")
    spec = p.TaskSpec("t" * 24, "00000001", p.NORMAL_TASK, "touch", "nope", [], {}, 1, [], spec_owner, {})
    target = worker["address"]
    with pytest.raises(AuthenticationError):
        call(target, None, "CoreWorker", "PushTask", p.PushTask(spec))
    assert not marker.exists()
    # With the token, the same cluster works.
    assert distcore.get(touch.remote(str(marker))) == "ran"
    assert marker.exists()


def test_token_file_is_private(secured):
    path = os.path.join(secured.session_dir, "token")
    assert os.stat(path).st_mode & 0o777 == 0o600
