"""The lineage table (pure bookkeeping) and the control store's node health probe, without a cluster."""

from __future__ import annotations

import asyncio
import time

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.core_worker.lineage import LineageTable
from distcore._private.core_worker.reconstruction import is_put_object
from distcore._private.gcs.node_health import NodeHealthChecker, probe_refused
from distcore._private.gcs.nodes import NodeTable
from distcore._private.gcs.storage import Storage

OWNER = p.Address("127.0.0.1", 1, "w" * 28, "n" * 28)


def spec(name: str, *args: str, inline: bytes = b"") -> p.TaskSpec:
    task_id = ids.new_task_id()
    task_args = [p.TaskArg(object_id=a, owner=OWNER) for a in args]
    if inline:
        task_args.append(p.TaskArg(value=p.SerializedValue(inline)))
    return p.TaskSpec(
        task_id=task_id, job_id="01", kind=p.NORMAL_TASK, name=name, function_id="f", args=task_args, kwargs={},
        num_returns=1, return_ids=[ids.object_id_for_return(task_id, 1)], owner=OWNER, resources={}, max_retries=3,
    )


def record(table: LineageTable, s: p.TaskSpec) -> str:
    arg_ids = [a.object_id for a in s.args if a.object_id]
    table.record(s, arg_ids, arg_ids, set(s.return_ids))
    return s.return_ids[0]


def test_spec_is_kept_while_its_return_is_referenced():
    table = LineageTable()
    a = spec("a")
    rid = record(table, a)
    assert table.producer(rid).spec is a
    table.released(rid)
    assert table.producer(rid) is None and len(table) == 0


def test_return_released_before_recording_keeps_nothing():
    table = LineageTable()
    a = spec("a")
    table.record(a, [], [], live=set())
    assert len(table) == 0


def test_a_kept_task_pins_the_lineage_of_its_arguments():
    table = LineageTable()
    a = spec("a")
    ra = record(table, a)
    b = spec("b", ra)
    rb = record(table, b)
    c = spec("c", rb)
    rc = record(table, c)
    table.released(ra)
    table.released(rb)  # a and b are freed, but c still needs them to be recomputed
    assert table.producer(ra).spec is a and table.producer(rb).spec is b
    table.released(rc)  # the whole chain goes with the last return
    assert len(table) == 0 and table.by_return == {}


def test_oldest_specs_are_evicted_with_a_reason():
    table = LineageTable(max_entries=2)
    first = spec("first")
    r1 = record(table, first)
    record(table, spec("second"))
    record(table, spec("third"))
    assert table.producer(r1) is None
    assert "evicted" in (table.reason(r1) or "")
    assert len(table) == 2


def test_bytes_bound_counts_inline_arguments():
    table = LineageTable(max_bytes=10_000)
    r1 = record(table, spec("big", inline=b"x" * 6_000))
    r2 = record(table, spec("big", inline=b"x" * 6_000))
    assert table.producer(r1) is None and table.producer(r2) is not None
    assert table.bytes < 10_000


def test_reasons_for_returns_without_lineage():
    table = LineageTable()
    rid = ids.object_id_for_return(ids.new_task_id(), 1)
    table.note_unreconstructable([rid], "it was returned by the actor task A.f")
    assert table.reason(rid) == "it was returned by the actor task A.f"


def test_put_ids_are_told_from_return_ids():
    task_id = ids.new_task_id()
    assert is_put_object(ids.new_put_object_id(task_id))
    assert not is_put_object(ids.object_id_for_return(task_id, 1))


# ---------------------------------------------------------------- node health


def _table_with_node(dead_timeout_s: float = 30.0) -> tuple[NodeTable, str]:
    nodes = NodeTable(Storage(None), dead_timeout_s)
    node_id = "ab" * 14
    nodes.register(p.NodeInfo(node_id=node_id, address="127.0.0.1:1", ip="127.0.0.1", resources={"CPU": 1.0}))
    return nodes, node_id


def test_late_node_that_refuses_connections_is_declared_dead():
    async def main():
        nodes, node_id = _table_with_node()
        probed = []

        async def refused(address: str) -> bool:
            probed.append(address)
            return True

        checker = NodeHealthChecker(nodes, 30.0, probe=refused)
        assert checker.late_nodes(time.monotonic()) == []  # heartbeats on time: nothing to probe
        nodes.last_seen[node_id] -= 5
        assert checker.late_nodes(time.monotonic()) == [node_id]
        await checker._check(node_id)
        assert len(probed) == 2
        assert nodes.nodes[node_id].state == "DEAD"
        assert "connection refused" in nodes.nodes[node_id].death_reason

    asyncio.run(main())


def test_late_node_that_answers_stays_alive():
    async def main():
        nodes, node_id = _table_with_node()

        async def answers(address: str) -> bool:
            return False

        checker = NodeHealthChecker(nodes, 30.0, probe=answers)
        nodes.last_seen[node_id] -= 5
        await checker._check(node_id)
        assert nodes.nodes[node_id].state == "ALIVE"

    asyncio.run(main())


def test_probe_of_a_closed_port_is_refused():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert asyncio.run(probe_refused(f"127.0.0.1:{port}", timeout=5)) is True
