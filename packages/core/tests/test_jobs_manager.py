"""The jobs API's insides without a cluster: the state machine, request
validation, and the manager running real driver subprocesses against an
in-memory key-value store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys

import psutil
import pytest

from distcore._private import runtime_env as renv
from distcore._private.jobs import state
from distcore._private.jobs.common import (
    KV_NAMESPACE,
    JobInfo,
    JobStatus,
    driver_log_name,
    parse_submit_request,
)
from distcore._private.jobs.manager import PKG_NAMESPACE, JobExistsError, JobManager, MemoryKv

# ------------------------------------------------------------------ the state machine


def pending() -> JobInfo:
    return JobInfo("j1", "python x.py", start_time=1)


def test_happy_path_keeps_pid_exit_code_and_end_time():
    info = state.transition(pending(), state.Started(pid=42, time_ms=2))
    assert info.status is JobStatus.RUNNING and info.driver_pid == 42
    done = state.transition(info, state.Exited(exit_code=0, time_ms=3))
    assert done.status is JobStatus.SUCCEEDED
    assert (done.driver_exit_code, done.end_time, done.start_time) == (0, 3, 1)
    assert done.message == "Job finished successfully." and done.error_type is None


def test_nonzero_exit_fails_with_code_and_log_tail():
    running = state.transition(pending(), state.Started(1, 2))
    done = state.transition(running, state.Exited(3, 4, log_tail="Traceback: boom"))
    assert done.status is JobStatus.FAILED and done.driver_exit_code == 3
    assert "exit code 3" in done.message and "boom" in done.message
    assert done.error_type == state.ENTRYPOINT_ERROR


def test_exit_after_a_stop_request_is_stopped_whatever_the_code():
    running = state.transition(pending(), state.Started(1, 2))
    done = state.transition(running, state.Exited(-15, 4, stopping=True))
    assert done.status is JobStatus.STOPPED and done.driver_exit_code == -15


def test_stop_before_start_and_failures():
    assert state.transition(pending(), state.StoppedBeforeStart(5)).status is JobStatus.STOPPED
    failed = state.transition(pending(), state.Failed("no env", state.SETUP_ERROR, 5))
    assert (failed.status, failed.message, failed.error_type) == (JobStatus.FAILED, "no env", state.SETUP_ERROR)
    running = state.transition(pending(), state.Started(1, 2))
    lost = state.transition(running, state.Failed("head gone", state.LOST_ERROR, 6, exit_code=-15))
    assert lost.status is JobStatus.FAILED and lost.driver_exit_code == -15


@pytest.mark.parametrize("final", [
    state.Exited(0, 3), state.Exited(1, 3), state.Exited(-9, 3, stopping=True),
])
@pytest.mark.parametrize("event", [
    state.Started(1, 9), state.Exited(0, 9), state.StoppedBeforeStart(9), state.Failed("x", "y", 9),
])
def test_terminal_records_never_change(final, event):
    done = state.transition(state.transition(pending(), state.Started(1, 2)), final)
    with pytest.raises(state.InvalidTransition, match="cannot change it"):
        state.transition(done, event)
    assert state.can_delete(done)


@pytest.mark.parametrize("status, event", [
    (JobStatus.PENDING, state.Exited(0, 1)),
    (JobStatus.RUNNING, state.Started(1, 1)),
    (JobStatus.RUNNING, state.StoppedBeforeStart(1)),
])
def test_events_out_of_order_are_refused(status, event):
    info = dataclasses.replace(pending(), status=status)
    with pytest.raises(state.InvalidTransition, match="applies only to"):
        state.transition(info, event)
    assert not state.can_delete(info)


def test_transition_leaves_its_input_alone():
    info = pending()
    state.transition(info, state.Started(1, 2))
    assert info.status is JobStatus.PENDING and info.driver_pid is None


# ------------------------------------------------------------------ requests and records


def test_submit_request_defaults_and_aliases():
    req = parse_submit_request({"entrypoint": "echo hi"})
    assert req.submission_id.startswith("dcsubmit_") and req.runtime_env == {} and req.resources() == {}
    assert parse_submit_request({"entrypoint": "x", "job_id": "old-name"}).submission_id == "old-name"
    req = parse_submit_request({"entrypoint": "x", "entrypoint_num_cpus": 1, "entrypoint_num_gpus": 0.5,
                                "entrypoint_resources": {"accel": 2}})
    assert req.resources() == {"accel": 2, "CPU": 1.0, "GPU": 0.5}


@pytest.mark.parametrize("body, message", [
    ([], "must be a JSON object"),
    ({}, "entrypoint must be a non-empty"),
    ({"entrypoint": "  "}, "entrypoint must be a non-empty"),
    ({"entrypoint": "x", "bogus": 1}, "unknown field"),
    ({"entrypoint": "x", "submission_id": "../../etc/passwd"}, "submission_id '../../etc/passwd' is invalid"),
    ({"entrypoint": "x", "submission_id": "a/b"}, "is invalid"),
    ({"entrypoint": "x", "submission_id": "a", "job_id": "b"}, "not both"),
    ({"entrypoint": "x", "metadata": {"a": 1}}, "metadata must be"),
    ({"entrypoint": "x", "runtime_env": "wd"}, "runtime_env must be a JSON object"),
    ({"entrypoint": "x", "entrypoint_num_cpus": -1}, "entrypoint_num_cpus must be a number >= 0"),
    ({"entrypoint": "x", "entrypoint_num_gpus": True}, "entrypoint_num_gpus must be"),
    ({"entrypoint": "x", "entrypoint_memory": 1.5}, "entrypoint_memory must be an integer"),
    ({"entrypoint": "x", "entrypoint_resources": {"CPU": 1}}, "use entrypoint_num_cpus"),
])
def test_bad_submit_requests_are_explained(body, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_submit_request(body)


def test_job_info_round_trips_through_json_and_ignores_unknown_keys():
    info = JobInfo("j", "echo", status=JobStatus.FAILED, driver_exit_code=2, metadata={"a": "b"})
    data = json.loads(json.dumps(info.to_dict()))
    assert data["status"] == "FAILED"
    assert JobInfo.from_dict({**data, "field_of_a_newer_server": 1}) == info
    assert driver_log_name("abc") == "job-driver-abc.log"
    with pytest.raises(ValueError):
        driver_log_name("../x")


# ------------------------------------------------------------------ the manager


class FakeLeaser:
    def __init__(self, block: bool = False, refuse: str | None = None) -> None:
        self.block, self.refuse = block, refuse
        self.acquired: list[tuple[str, dict]] = []
        self.released: list[str] = []

    async def acquire(self, lease_id, resources):
        self.acquired.append((lease_id, resources))
        if self.refuse:
            raise ValueError(self.refuse)
        if self.block:
            await asyncio.Event().wait()
        return [0]

    async def release(self, lease_id):
        self.released.append(lease_id)


def make_manager(tmp_path, **kwargs) -> tuple[JobManager, MemoryKv]:
    kv = kwargs.pop("kv", None) or MemoryKv()
    manager = JobManager(kv, session_dir=str(tmp_path), gcs_address="127.0.0.1:7777", token="tok", **kwargs)
    return manager, kv


def run(coro_fn, tmp_path, **kwargs):
    """Run ``coro_fn(manager, kv)`` with a started manager, closing it after."""

    async def main():
        manager, kv = make_manager(tmp_path, **kwargs)
        await manager.start()
        try:
            return await coro_fn(manager, kv)
        finally:
            await manager.close()

    return asyncio.run(main())


def submit(manager, entrypoint, **body):
    return manager.submit(parse_submit_request({"entrypoint": entrypoint, **body}))


def test_a_job_runs_to_success_with_its_output_logged_and_persisted(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "echo hello; echo oops >&2", submission_id="ok")
        info = await manager.wait(sid, timeout=20)
        stored = JobInfo.from_dict(json.loads(kv.data[(KV_NAMESPACE, sid)]))
        return info, stored, manager.read_logs(sid)

    info, stored, logs = run(go, tmp_path)
    assert info.status is JobStatus.SUCCEEDED and info.driver_exit_code == 0
    assert info.driver_pid and info.start_time and info.end_time >= info.start_time
    assert stored == info
    assert logs == "hello\noops\n"
    assert (tmp_path / "logs" / "job-driver-ok.log").exists()


def test_a_failing_job_keeps_its_exit_code(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "echo about to fail; exit 3")
        return await manager.wait(sid, timeout=20)

    info = run(go, tmp_path)
    assert info.status is JobStatus.FAILED and info.driver_exit_code == 3
    assert "exit code 3" in info.message and "about to fail" in info.message


def test_the_driver_gets_the_cluster_address_token_id_and_env_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTCORE_AUTH_TOKEN", "the-head-env-value")
    script = ("echo addr=$DISTCORE_ADDRESS tok=$DISTCORE_AUTH_TOKEN sid=$DISTCORE_JOB_SUBMISSION_ID "
              "mode=$MODE; command -v python")

    async def go(manager, kv):
        sid = await submit(manager, script, submission_id="envy", runtime_env={"env_vars": {"MODE": "fast"}})
        await manager.wait(sid, timeout=20)
        return manager.read_logs(sid)

    logs = run(go, tmp_path)
    assert "addr=127.0.0.1:7777 tok=tok sid=envy mode=fast" in logs
    assert os.path.dirname(sys.executable) in logs  # `python` is the cluster's interpreter


def test_the_entrypoint_runs_in_its_uploaded_working_dir(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.txt").write_text("from the package\n")
    uri, blob = renv.package_dir(str(src))

    async def go(manager, kv):
        await kv.put(PKG_NAMESPACE, uri, blob)
        sid = await submit(manager, "cat data.txt; echo path=$PYTHONPATH", runtime_env={"working_dir": uri})
        info = await manager.wait(sid, timeout=20)
        env = json.loads(kv.data[(KV_NAMESPACE, sid)])["runtime_env"]
        return info, manager.read_logs(sid), env

    info, logs, env = run(go, tmp_path / "session")
    assert info.status is JobStatus.SUCCEEDED, info.message
    assert "from the package" in logs and "runtime_resources" in logs
    assert env == {"working_dir": uri}


def test_runtime_envs_that_cannot_work_are_refused_at_submit(tmp_path):
    async def go(manager, kv):
        errors = []
        for env in ({"working_dir": str(tmp_path)}, {"working_dir": "dcpkg://" + "0" * 64 + ".zip"},
                    {"pip": ["requests"]}):
            with pytest.raises(ValueError) as exc:
                await submit(manager, "true", runtime_env=env)
            errors.append(str(exc.value))
        return errors, manager.list()

    errors, jobs = run(go, tmp_path)
    assert "a path on the client: upload it first" in errors[0]
    assert "was not uploaded" in errors[1]
    assert "'pip' is not supported" in errors[2]
    assert jobs == []


def test_submission_ids_are_unique(tmp_path):
    async def go(manager, kv):
        await submit(manager, "true", submission_id="same")
        with pytest.raises(JobExistsError, match="already exists"):
            await submit(manager, "true", submission_id="same")
        await manager.wait("same", timeout=20)

    run(go, tmp_path)


def test_stop_terminates_the_driver_tree(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "sleep 60 & sleep 60; wait")
        while manager.get(sid).status is not JobStatus.RUNNING:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        tree = [psutil.Process(manager.get(sid).driver_pid)]
        tree += tree[0].children(recursive=True)
        assert await manager.stop(sid)
        info = await manager.wait(sid, timeout=20)
        assert not await manager.stop(sid)  # already finished
        return info, tree

    info, tree = run(go, tmp_path)
    assert info.status is JobStatus.STOPPED and info.message == "Job was intentionally stopped."
    assert len(tree) >= 2
    psutil.wait_procs(tree, timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)


def test_a_driver_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"

    async def go(manager, kv):
        sid = await submit(manager, f"exec {sys.executable} -c \"{code}\"")
        while "ready" not in manager.read_logs(sid):
            await asyncio.sleep(0.02)
        await manager.stop(sid)
        return await manager.wait(sid, timeout=20)

    info = run(go, tmp_path, stop_grace_s=0.3)
    assert info.status is JobStatus.STOPPED and info.driver_exit_code == -9


def test_entrypoint_resources_are_held_while_the_driver_runs(tmp_path):
    leaser = FakeLeaser()

    async def go(manager, kv):
        sid = await submit(manager, "echo gpus=$CUDA_VISIBLE_DEVICES", entrypoint_num_cpus=1, entrypoint_num_gpus=1)
        info = await manager.wait(sid, timeout=20)
        return info, manager.read_logs(sid)

    info, logs = run(go, tmp_path, leaser=leaser)
    assert info.status is JobStatus.SUCCEEDED and "gpus=0" in logs
    assert leaser.acquired == [(f"job-{info.submission_id}", {"CPU": 1.0, "GPU": 1.0})]
    assert leaser.released == [f"job-{info.submission_id}"]


def test_a_job_waiting_for_resources_can_be_stopped_before_it_starts(tmp_path):
    leaser = FakeLeaser(block=True)

    async def go(manager, kv):
        sid = await submit(manager, "echo never", entrypoint_num_cpus=2)
        await asyncio.sleep(0.1)
        assert manager.get(sid).status is JobStatus.PENDING
        assert "waiting for its entrypoint resources" in manager.get(sid).message
        assert await manager.stop(sid)
        return await manager.wait(sid, timeout=5), manager.read_logs(sid)

    info, logs = run(go, tmp_path, leaser=leaser)
    assert info.status is JobStatus.STOPPED and info.driver_pid is None and logs == ""
    assert leaser.released == [f"job-{info.submission_id}"]


def test_resources_that_never_fit_fail_the_job(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "true", entrypoint_num_cpus=64)
        return await manager.wait(sid, timeout=5)

    info = run(go, tmp_path, leaser=FakeLeaser(refuse="{CPU: 64} never fits this node"))
    assert info.status is JobStatus.FAILED and info.error_type == state.RESOURCES_ERROR
    assert "never fits" in info.message


def test_resources_without_a_leaser_are_refused(tmp_path):
    async def go(manager, kv):
        with pytest.raises(ValueError, match="cannot reserve entrypoint resources"):
            await submit(manager, "true", entrypoint_num_cpus=1)

    run(go, tmp_path)


def test_delete_only_finished_jobs_and_forget_their_logs(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "sleep 30")
        with pytest.raises(ValueError, match="stop it"):
            await manager.delete(sid)
        await manager.stop(sid)
        await manager.wait(sid, timeout=20)
        log = manager.log_path(sid)
        assert await manager.delete(sid)
        with pytest.raises(KeyError):
            await manager.delete(sid)
        with pytest.raises(KeyError):
            manager.read_logs(sid)
        return kv.data, log

    data, log = run(go, tmp_path)
    assert not any(ns == KV_NAMESPACE for ns, _ in data) and not os.path.exists(log)


def test_follow_logs_streams_until_the_job_ends(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "for i in 1 2 3; do echo line$i; sleep 0.1; done")
        return b"".join([chunk async for chunk in manager.follow_logs(sid)]), manager.get(sid).status

    data, status = run(go, tmp_path)
    assert data == b"line1\nline2\nline3\n" and status is JobStatus.SUCCEEDED


def test_records_show_the_drivers_core_job_and_resolve_by_it(tmp_path):
    def core_job(sid):
        return {"id": "0000000a", "pid": 7} if sid == "linked" else None

    async def go(manager, kv):
        await submit(manager, "true", submission_id="linked")
        await manager.wait("linked", timeout=20)
        return manager.get("0000000a"), manager.list()

    info, jobs = run(go, tmp_path, core_job=core_job)
    assert info.submission_id == "linked" and info.job_id == "0000000a" and info.driver_info["pid"] == 7
    assert [j.job_id for j in jobs] == ["0000000a"]


def test_a_restarted_head_fails_the_jobs_it_no_longer_supervises(tmp_path):
    kv = MemoryKv()
    running = JobInfo("orphan", "sleep 1", status=JobStatus.RUNNING, driver_pid=123, start_time=1)
    done = JobInfo("old", "true", status=JobStatus.SUCCEEDED, driver_exit_code=0, start_time=1)
    for info in (running, done):
        kv.data[(KV_NAMESPACE, info.submission_id)] = json.dumps(info.to_dict()).encode()

    async def go(manager, kv):
        return manager.get("orphan"), manager.get("old")

    orphan, old = run(go, tmp_path, kv=kv)
    assert orphan.status is JobStatus.FAILED and orphan.error_type == state.LOST_ERROR
    assert "head restarted" in orphan.message and "pid 123" in orphan.message
    assert json.loads(kv.data[(KV_NAMESPACE, "orphan")])["status"] == "FAILED"
    assert old == done


def test_closing_the_manager_stops_live_drivers(tmp_path):
    async def go(manager, kv):
        sid = await submit(manager, "sleep 60")
        while manager.get(sid).status is not JobStatus.RUNNING:
            await asyncio.sleep(0.02)
        pid = manager.get(sid).driver_pid
        await manager.close()
        with pytest.raises(RuntimeError, match="shutting down"):
            await submit(manager, "true")
        return manager.get(sid), pid

    info, pid = run(go, tmp_path)
    assert info.status is JobStatus.FAILED and info.error_type == state.LOST_ERROR
    assert "head shut down" in info.message
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# ------------------------------------------------------------------ the public client module


def test_client_module_surface_and_its_standard_library_only_http():
    import distcore.job_submission as js

    assert sorted(js.__all__) == ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient"]
    assert js.JobDetails is js.JobInfo and js.JobStatus.FAILED.is_terminal()
    code = ("import sys, distcore.job_submission, distcore.scripts.job_commands; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("given, expected", [
    ("127.0.0.1:8265", "http://127.0.0.1:8265"),
    ("http://head:9000/", "http://head:9000"),
    ("https://head.example", "https://head.example"),
])
def test_client_addresses_are_normalized(given, expected):
    from distcore.job_submission import resolve_address

    assert resolve_address(given) == expected


def test_client_without_an_address_says_where_it_looked(tmp_path, monkeypatch):
    from distcore.job_submission import resolve_address

    monkeypatch.setenv("DISTCORE_TMPDIR", str(tmp_path))
    monkeypatch.delenv("DISTCORE_DASHBOARD_ADDRESS", raising=False)
    with pytest.raises(ConnectionError, match="distcore start --head"):
        resolve_address(None)
    monkeypatch.setenv("DISTCORE_DASHBOARD_ADDRESS", "10.0.0.1:8265")
    assert resolve_address(None) == "http://10.0.0.1:8265"
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        resolve_address("ftp://x")
