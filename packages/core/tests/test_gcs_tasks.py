"""The control store's task table (pure: events in, records out), the state
filters and the node manager's log reading, without a cluster."""

from __future__ import annotations

import pytest

from distcore._private import protocol as p
from distcore._private.core_worker.task_events import TaskEvent
from distcore._private.gcs.tasks import TaskQuery, TaskTable
from distcore._private.node_manager.introspection import ReadLog, list_logs, read_log
from distcore._private.state_filters import check_filters, matches, parse_filter


def ev(task_id: str, state: str, t: float, *, attempt: int = 0, by_owner: bool = False, name: str = "f",
       worker: str = "w1", kind: int = p.NORMAL_TASK, error: str = "", error_type: str = "") -> TaskEvent:
    node = "owner-node" if by_owner else f"node-of-{worker}"
    return TaskEvent(task_id, name, "00000001", kind, None, node, "owner" if by_owner else worker, 7, t, t, state,
                     error, attempt, by_owner, error_type)


def test_events_merge_in_any_order():
    table = TaskTable()
    # The worker's events arrive before the owner's submission.
    table.add_events([ev("t1", "RUNNING", 2.0), ev("t1", "FINISHED", 3.0)])
    table.add_events([ev("t1", "PENDING_NODE_ASSIGNMENT", 1.0, by_owner=True)])
    rec = table.get("t1")
    assert rec.state == "FINISHED" and rec.node_id == "node-of-w1" and rec.worker_id == "w1"
    assert (rec.creation_time_ms, rec.start_time_ms, rec.end_time_ms) == (1000, 3000, 3000)
    # Listed in time order, whatever order they arrived in.
    assert [e["state"] for e in rec.events] == ["PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED"]


def test_a_retry_moves_the_task_to_its_new_attempt_and_worker():
    table = TaskTable()
    table.add_events([ev("t", "PENDING_NODE_ASSIGNMENT", 1.0, by_owner=True), ev("t", "RUNNING", 2.0, worker="w1")])
    table.add_events([ev("t", "RUNNING", 3.0, attempt=1, worker="w2"), ev("t", "FINISHED", 4.0, attempt=1, worker="w2")])
    table.add_events([ev("t", "FAILED", 2.5, worker="w1")])  # a late event of attempt 0 changes nothing
    rec = table.get("t")
    assert (rec.state, rec.attempt_number, rec.worker_id, rec.error_type) == ("FINISHED", 1, "w2", None)


def test_owner_failure_keeps_where_it_ran_and_the_workers_error_wins():
    table = TaskTable()
    table.add_events([ev("t", "RUNNING", 1.0), ev("t", "FAILED", 2.0, by_owner=True, error="worker died",
                                                     error_type="WORKER_DIED")])
    rec = table.get("t")
    assert (rec.state, rec.error_type, rec.node_id) == ("FAILED", "WORKER_DIED", "node-of-w1")
    table.add_events([ev("u", "FAILED", 2.0, by_owner=True, error_type="TASK_CANCELLED"),
                      ev("u", "FAILED", 2.1, error="ValueError: x", error_type="TASK_EXECUTION_EXCEPTION")])
    assert table.get("u").error_type == "TASK_EXECUTION_EXCEPTION"
    assert table.get("u").error_message == "ValueError: x"


def test_timeline_gets_worker_executions_only():
    table = TaskTable()
    table.add_events([ev("t", "PENDING_ARGS_AVAIL", 1.0, by_owner=True), ev("t", "RUNNING", 2.0),
                      ev("t", "FINISHED", 3.0), ev("u", "FAILED", 3.0, by_owner=True)])
    assert [(e.task_id, e.state) for e in table.execution_events()] == [("t", "FINISHED")]
    assert table.execution_events("other-job") == []


def test_table_is_bounded_oldest_evicted():
    table = TaskTable(max_tasks=3)
    table.add_events([ev(f"t{i}", "RUNNING", float(i)) for i in range(5)])
    listed = table.list(TaskQuery(limit=100))
    assert [r.task_id for r in listed.tasks] == ["t2", "t3", "t4"] and listed.num_evicted == 2


def test_list_filters_limits_and_counts():
    table = TaskTable()
    table.add_events([ev(f"a{i}", "FINISHED", 1.0, name="a") for i in range(4)] + [ev("b0", "FAILED", 1.0, name="b")])
    listed = table.list(TaskQuery([("name", "=", "a")], limit=2))
    assert len(listed.tasks) == 2 and listed.total == 4 and listed.tasks[0].events == []
    assert table.list(TaskQuery([("state", "!=", "finished")])).total == 1
    assert table.list(TaskQuery([("worker_pid", "=", "7")])).total == 5
    with pytest.raises(ValueError, match="not a filter key for tasks; valid keys: .*worker_pid"):
        table.list(TaskQuery([("events", "=", "x")]))
    summary = table.summarize(TaskQuery())
    assert summary["summary"]["a"]["state_counts"] == {"FINISHED": 4} and summary["total_tasks"] == 5


def test_get_by_unique_prefix():
    table = TaskTable()
    table.add_events([ev("abcd1111", "RUNNING", 1.0), ev("abcd2222", "RUNNING", 1.0)])
    assert table.get("abcd1").task_id == "abcd1111"
    assert table.get("ffff") is None
    with pytest.raises(ValueError, match="ambiguous"):
        table.get("abcd")


def test_filter_parsing_and_matching():
    assert parse_filter("state=RUNNING") == ("state", "=", "RUNNING")
    assert parse_filter("name!=a=b") == ("name", "!=", "a=b")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_filter("state")
    with pytest.raises(ValueError, match="predicate"):
        check_filters([("state", "~", "x")], ["state"], "nodes")
    assert matches({"pid": 42, "ok": True, "x": None}, [("pid", "=", "42"), ("ok", "=", "true"), ("x", "=", "none")])
    # Ids made only of digits still compare as text, never as (rounded) numbers.
    assert not matches({"id": "123456789012345678901234"}, [("id", "=", "123456789012345678901235")])


def test_read_log_tail_offset_and_safety(tmp_path):
    log = tmp_path / "worker-abc.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(10)) + b"partial")
    chunk = read_log(str(tmp_path), ReadLog("worker-abc.log", tail_lines=2))
    assert chunk.data == b"line 9\npartial" and chunk.next_offset == chunk.size
    follow = read_log(str(tmp_path), ReadLog("worker-abc.log", offset=0))
    assert follow.data.endswith(b"line 9\n") and follow.next_offset == follow.size - len(b"partial")
    for bad in ("../secret", "/etc/passwd", ".."):
        with pytest.raises(ValueError, match="not a log file name"):
            read_log(str(tmp_path), ReadLog(bad))
    with pytest.raises(FileNotFoundError, match="no log file"):
        read_log(str(tmp_path), ReadLog("worker-missing.log"))


def test_list_logs_keeps_this_nodes_files(tmp_path):
    for name in ("head-aaaaaaaaaaaa.log", "node-bbbbbbbbbbbb.log", "worker-mine.log", "worker-other.log", "jobs.log"):
        (tmp_path / name).write_text("x")
    names = [f.filename for f in list_logs(str(tmp_path), "aaaaaaaaaaaa" + "0" * 16, {"worker-mine.log"})]
    assert names == ["head-aaaaaaaaaaaa.log", "jobs.log", "worker-mine.log"]


def test_a_workers_end_alone_stands_for_its_running_step():
    from distcore._private.core_worker.task_events import _fold_running

    # The worker folds a RUNNING event into the end of the same attempt in one batch...
    running, finished = ev("t", "RUNNING", 2.0), ev("t", "FINISHED", 3.0)
    finished.start = 2.0  # a worker's end spans the execution
    still = ev("u", "RUNNING", 2.5)
    batch = [tuple(getattr(e, f) for f in e.__slots__) for e in (running, still, finished)]
    folded = _fold_running(batch)
    assert [(e[0], e[10]) for e in folded] == [("u", "RUNNING"), ("t", "FINISHED")]
    # ... and the table still shows the task's RUNNING step, at the end's start time.
    table = TaskTable()
    table.add_events([ev("t", "PENDING_NODE_ASSIGNMENT", 1.0, by_owner=True)])
    table.add_events(folded)
    rec = table.get("t")
    assert [(e["state"], e["created_ms"]) for e in rec.events] == [
        ("PENDING_NODE_ASSIGNMENT", 1000), ("RUNNING", 2000), ("FINISHED", 3000)]
    assert (rec.state, rec.start_time_ms, rec.end_time_ms, rec.worker_id) == ("FINISHED", 2000, 3000, "w1")
    assert table.get("u").state == "RUNNING"


def test_persisted_rows_are_tuples_and_restore_as_records():
    from distcore._private.gcs.tasks import record_from_row, record_to_row

    table = TaskTable()
    ended = table.add_events([ev("t", "RUNNING", 2.0), ev("t", "FAILED", 3.0, error="ValueError: x")])
    row = record_to_row(ended[0])
    assert type(row) is tuple and record_from_row(row) == ended[0]
    again = TaskTable()
    again.restore([row, ended[0]])  # old heads wrote records: both load
    assert again.get("t").error_message == "ValueError: x"
