"""Head restart, the pure parts: retrying control-store calls, idempotent registration, recovery prep."""

from __future__ import annotations

import asyncio

import pytest

from distcore._private import protocol as p
from distcore._private.core_worker import gcs_client
from distcore._private.core_worker.gcs_client import GcsClient, HeadUnreachableError
from distcore._private.gcs import recovery
from distcore._private.gcs.nodes import NodeTable
from distcore._private.gcs.storage import Storage
from distcore._private.rpc import RpcUnavailable


class _Flaky:
    """An RpcClient stand-in that is unreachable for the first ``down`` calls."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.calls = 0

    async def call(self, service, method, request=None, timeout=None):
        self.calls += 1
        if self.calls <= self.down:
            raise RpcUnavailable("connection refused")
        return (method, request)


def test_gcs_client_retries_until_the_head_answers():
    flaky = _Flaky(down=3)
    client = GcsClient("127.0.0.1:1", lambda: flaky)
    assert asyncio.run(client.call("Gcs", "ListNodes", 7)) == ("ListNodes", 7)
    assert flaky.calls == 4


def test_gcs_client_gives_a_clear_error_after_the_window(monkeypatch):
    monkeypatch.setattr(gcs_client, "HEAD_RECONNECT_TIMEOUT_S", 0.3)
    client = GcsClient("127.0.0.1:1", lambda: _Flaky(down=10**6))
    with pytest.raises(ConnectionError, match="head .* at 127.0.0.1:1 is unreachable") as info:
        asyncio.run(client.call("Gcs", "ListNodes"))
    assert isinstance(info.value, HeadUnreachableError) and isinstance(info.value, RpcUnavailable)


def test_gcs_client_does_not_wait_for_a_goodbye():
    flaky = _Flaky(down=1)
    with pytest.raises(RpcUnavailable):
        asyncio.run(GcsClient("a:1", lambda: flaky).call("Gcs", "JobFinished", "01"))
    assert flaky.calls == 1


def _info(node_id: str, **kw) -> p.NodeInfo:
    return p.NodeInfo(node_id=node_id, address="127.0.0.1:1", ip="127.0.0.1", resources={"CPU": 2.0}, **kw)


def test_register_is_idempotent_for_a_known_node_and_refuses_a_dead_one():
    async def main() -> None:
        nodes = NodeTable(Storage(None), 5.0)
        nodes.register(_info("n1"))
        nodes.heartbeat(p.Heartbeat("n1", {"CPU": 1.0}))
        nodes.register(_info("n1"))  # again, e.g. after a head restart: availability is kept
        assert nodes.nodes["n1"].state == "ALIVE" and nodes.available["n1"] == {"CPU": 1.0}
        await nodes.mark_dead("n1", "gone")
        with pytest.raises(ValueError, match="declared dead"):
            nodes.register(_info("n1"))

    asyncio.run(main())


def test_reloaded_nodes_stay_alive_and_the_view_version_moves_on(tmp_path, monkeypatch):
    monkeypatch.setattr(recovery, "RECONCILE_TRIES", 1)
    db = str(tmp_path / "gcs.sqlite")

    async def first() -> int:
        storage = Storage(db)
        nodes = NodeTable(storage, 5.0)
        nodes.register(_info("head", is_head=True))
        nodes.register(_info("w1"))
        storage.close()
        return nodes.version

    async def second(before: int) -> None:
        from distcore._private.gcs.server import GcsService

        gcs = GcsService(db, None, 5.0)
        assert recovery.has_state(gcs)
        assert {n: i.state for n, i in gcs.nodes.nodes.items()} == {"head": "ALIVE", "w1": "ALIVE"}
        recovery.prepare(gcs)
        assert gcs.nodes.version > before
        await recovery.recover(gcs)
        assert gcs.nodes.nodes["head"].state == "DEAD"  # the old head's node manager died with it
        assert gcs.nodes.nodes["w1"].state == "ALIVE"  # unconfirmed until heartbeats or the dead timeout
        await gcs.close()

    asyncio.run(second(asyncio.run(first())))


# ---------------------------------------------------------------- retried writes (gcs/idempotency.py)


def test_gcs_client_sends_a_write_with_one_request_id_for_all_its_tries():
    from distcore._private.gcs.idempotency import OnceCall

    flaky = _Flaky(down=2)
    client = GcsClient("127.0.0.1:1", lambda: flaky)
    method, request = asyncio.run(client.call("Gcs", "KvPut", p.KvPut("n", "k", b"v")))
    assert method == "Once" and isinstance(request, OnceCall) and request.method == "KvPut"
    assert flaky.calls == 3
    # Reads go as they are.
    assert asyncio.run(GcsClient("x", lambda: _Flaky(0)).call("Gcs", "KvGet", p.KvKey("n", "k")))[0] == "KvGet"


def test_reply_cache_applies_a_write_once_and_remembers_it_across_a_restart(tmp_path):
    from distcore._private.gcs.idempotency import OnceCall, ReplyCache

    db = str(tmp_path / "gcs.sqlite")
    applied: list[str] = []

    async def handler(req: str) -> str:
        await asyncio.sleep(0.01)
        applied.append(req)
        return f"job-{len(applied)}"

    async def scenario(cache: ReplyCache) -> list[str]:
        first = OnceCall("r1", "RegisterJob", "a")
        # The retry arrives while the first try still runs: both get the one reply.
        both = await asyncio.gather(cache.run(first, handler), cache.run(first, handler))
        again = await cache.run(first, handler)
        other = await cache.run(OnceCall("r2", "RegisterJob", "b"), handler)
        return [*both, again, other]

    storage = Storage(db)
    assert asyncio.run(scenario(ReplyCache(storage))) == ["job-1", "job-1", "job-1", "job-2"]
    storage.close()
    storage = Storage(db)  # a restarted head
    assert asyncio.run(ReplyCache(storage).run(OnceCall("r1", "RegisterJob", "a"), handler)) == "job-1"
    assert applied == ["a", "b"]
    storage.close()


def test_reply_cache_is_bounded_and_does_not_record_failures(tmp_path):
    from distcore._private.gcs.idempotency import TABLE, OnceCall, ReplyCache

    storage = Storage(str(tmp_path / "gcs.sqlite"))
    cache = ReplyCache(storage, max_replies=3)
    calls = 0

    async def handler(req: int) -> int:
        nonlocal calls
        calls += 1
        if req < 0:
            raise ValueError("bad")
        return req

    async def scenario() -> None:
        for i in range(5):
            assert await cache.run(OnceCall(f"r{i}", "KvPut", i), handler) == i
        for _ in range(2):
            with pytest.raises(ValueError):
                await cache.run(OnceCall("bad", "KvPut", -1), handler)

    asyncio.run(scenario())
    assert len(cache) == 3 and sorted(storage.load(TABLE)) == ["r2", "r3", "r4"]
    assert calls == 7  # the failed write ran each time it was sent
    storage.close()


# ---------------------------------------------------------------- task rows: reconciled, persisted (gcs/tasks.py)


def _ev(task_id: str, state: str, t: float, *, by_owner: bool = False, worker: str = "w1", node: str = "n1",
        attempt: int = 0, job: str = "00000001"):
    from distcore._private.core_worker.task_events import TaskEvent

    return TaskEvent(task_id, "f", job, p.NORMAL_TASK, None, node, worker, 7, t, t, state, "", attempt, by_owner)


def test_unfinished_rows_of_a_dead_worker_node_or_job_fail_with_the_cause():
    from distcore._private.gcs.tasks import TaskTable

    table = TaskTable()
    table.add_events([
        _ev("ran-in-w1", "PENDING_NODE_ASSIGNMENT", 1, by_owner=True, worker="driver", node="n0"),
        _ev("ran-in-w1", "RUNNING", 2, worker="w1", node="n1"),
        _ev("child-of-w1", "PENDING_NODE_ASSIGNMENT", 3, by_owner=True, worker="w1", node="n1"),
        _ev("done-in-w1", "RUNNING", 2, worker="w1"), _ev("done-in-w1", "FINISHED", 3, worker="w1"),
        _ev("on-n2", "RUNNING", 2, worker="w2", node="n2"),
        _ev("other-job", "PENDING_NODE_ASSIGNMENT", 1, by_owner=True, worker="d2", node="n0", job="00000002"),
    ])
    changed = table.fail_unfinished("WORKER_DIED", "w1 died", worker_id="w1")
    assert sorted(r.task_id for r in changed) == ["child-of-w1", "ran-in-w1"]
    assert (table.get("ran-in-w1").state, table.get("ran-in-w1").error_type) == ("FAILED", "WORKER_DIED")
    assert table.get("done-in-w1").state == "FINISHED"
    assert [r.task_id for r in table.fail_unfinished("NODE_DIED", "n2 died", node_id="n2")] == ["on-n2"]
    assert [r.task_id for r in table.fail_unfinished("WORKER_DIED", "gone", job_id="00000002")] == ["other-job"]
    assert table.fail_unfinished("WORKER_DIED", "again", job_id="00000001") == []
    # A late end report of the worker itself still wins over the reconciled verdict.
    table.add_events([_ev("on-n2", "FINISHED", 9, worker="w2", node="n2")])
    assert (table.get("on-n2").state, table.get("on-n2").error_type) == ("FINISHED", None)


def test_ended_task_rows_come_back_after_a_restart_bounded(tmp_path):
    from distcore._private.gcs.tasks import TaskTable

    storage = Storage(str(tmp_path / "gcs.sqlite"))
    table = TaskTable()
    ended = table.add_events([x for i in range(5) for x in (_ev(f"t{i}", "RUNNING", i), _ev(f"t{i}", "FINISHED", i))])
    ended += table.add_events([_ev("running", "RUNNING", 9)])
    assert sorted(r.task_id for r in ended) == [f"t{i}" for i in range(5)]
    storage.put_many("tasks", [(r.task_id, r) for r in ended])
    assert storage.trim("tasks", 3) == 2
    storage.close()

    storage = Storage(str(tmp_path / "gcs.sqlite"))
    again = TaskTable(max_tasks=10)
    again.add_events([_ev("new", "RUNNING", 20)])
    again.restore([row for _, row in storage.load_ordered("tasks")])
    assert list(again.records) == ["t2", "t3", "t4", "new"]
    assert again.get("t3").state == "FINISHED"
    storage.close()


def test_the_owners_end_waits_for_the_workers_report_then_stands_in_for_a_lost_one():
    from distcore._private.gcs.tasks import TaskTable

    table = TaskTable()
    owner = dict(by_owner=True, worker="driver", node="n0")
    table.add_events([_ev("a", "PENDING_NODE_ASSIGNMENT", 1, **owner), _ev("b", "PENDING_NODE_ASSIGNMENT", 1, **owner),
                      _ev("c", "PENDING_NODE_ASSIGNMENT", 1, **owner)], now=100.0)
    # The owner's reply-based ends arrive first.
    table.add_events([_ev("a", "FINISHED", 3, **owner), _ev("b", "FINISHED", 3, **owner),
                      _ev("c", "FINISHED", 3, **owner)], now=100.0)
    assert {t: table.get(t).state for t in "abc"} == dict.fromkeys("abc", "PENDING_NODE_ASSIGNMENT")
    # a: the worker's own report comes: it wins, with where the task ran.
    table.add_events([_ev("a", "RUNNING", 2, worker="w1"), _ev("a", "FINISHED", 3, worker="w1")], now=101.0)
    assert (table.get("a").state, table.get("a").worker_id) == ("FINISHED", "w1")
    # b: its worker was killed before it reported: the owner's end stands in, not a failure.
    table.add_events([_ev("b", "RUNNING", 2, worker="w2")], now=101.0)
    assert [r.task_id for r in table.fail_unfinished("WORKER_DIED", "w2 died", worker_id="w2")] == ["b"]
    assert (table.get("b").state, table.get("b").error_type) == ("FINISHED", None)
    # c: nothing more is heard: the owner's end is applied after the grace period.
    assert table.sweep(now=102.0) == []
    assert [r.task_id for r in table.sweep(now=100.0 + table.owner_end_grace_s)] == ["c"]
    assert table.get("c").state == "FINISHED"
