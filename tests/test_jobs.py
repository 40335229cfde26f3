"""The jobs API end to end: a head serving it, drivers submitted over HTTP,
from the CLI and from the Python client, and the token in front of it all."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import psutil
import pytest

pytest.importorskip("starlette", reason='the jobs API needs pip install "distcore[default]"')
pytest.importorskip("uvicorn", reason='the jobs API needs pip install "distcore[default]"')

from distcore._private.testing import assert_no_leaks, wait_for  # noqa: E402
from distcore.exceptions import AuthenticationError  # noqa: E402
from distcore.job_submission import JobStatus, JobSubmissionClient  # noqa: E402

pytestmark = pytest.mark.integration

DISTCORE = [sys.executable, "-m", "distcore.scripts.cli"]

SCRIPT = """\
import os
import distcore
import helper                      # a module shipped in the working dir

distcore.init()                    # DISTCORE_ADDRESS: joins the cluster that runs the job

@distcore.remote
def double(x):
    import helper                  # the task's worker has the working dir too
    return helper.twice(x)

print("result:", distcore.get(double.remote(helper.BASE), timeout=60), "mode:", os.environ.get("MODE"))
print("submission:", os.environ["DISTCORE_JOB_SUBMISSION_ID"])
"""


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "project"
    d.mkdir()
    (d / "helper.py").write_text("BASE = 21\n\ndef twice(x):\n    return 2 * x\n")
    (d / "script.py").write_text(SCRIPT)
    (d / "fail.py").write_text("import sys\nprint('failing on purpose', flush=True)\nsys.exit(7)\n")
    return d


@pytest.fixture
def head(isolated_tmp):
    """A head with the jobs API on a free port, checked for leaks after the test."""
    from distcore.cluster_utils import Cluster

    c = Cluster(node_dead_timeout_s=5.0, include_dashboard=True)
    c.add_node(num_cpus=2)
    yield c
    c.shutdown()
    assert_no_leaks({c._session_name})


def http(method: str, url: str, token: str | None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def core_jobs(cluster) -> list:
    from distcore._private.rpc import RpcClient

    async def go():
        client = RpcClient(cluster.address, cluster.auth_token)
        try:
            return await client.call("Gcs", "ListJobs", None, timeout=10)
        finally:
            await client.close()

    return asyncio.run(go())


def wait_status(client, sid, timeout=60.0):
    wait_for(lambda: client.get_job_status(sid).is_terminal(), timeout, interval=0.1,
             message=f"job {sid} did not finish: {client.get_job_info(sid)}")
    return client.get_job_info(sid)


# ------------------------------------------------------------------ the CLI


def test_cli_submits_a_working_dir_job_end_to_end(isolated_tmp, workdir):
    env = dict(os.environ)

    def cli(*args, timeout=120):
        return subprocess.run(DISTCORE + list(args), env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=workdir)

    out = cli("start", "--head", "--port", "0", "--dashboard-port", "0", "--num-cpus", "2")
    try:
        assert out.returncode == 0, out.stderr
        assert "jobs API:           http://127.0.0.1:" in out.stdout
        sub = cli("job", "submit", "--working-dir", ".", "--submission-id", "cli-ok",
                  "--runtime-env-json", '{"env_vars": {"MODE": "fast"}}', "--", "python", "script.py")
        assert sub.returncode == 0, sub.stdout + sub.stderr
        assert "Job 'cli-ok' submitted successfully" in sub.stdout
        assert "result: 42 mode: fast" in sub.stdout and "submission: cli-ok" in sub.stdout
        assert "Job 'cli-ok' succeeded" in sub.stdout

        status = cli("job", "status", "cli-ok")
        assert status.returncode == 0 and "SUCCEEDED" in status.stdout and "Exit code: 0" in status.stdout
        logs = cli("job", "logs", "cli-ok")
        assert "result: 42 mode: fast" in logs.stdout

        failed = cli("job", "submit", "--working-dir", ".", "--submission-id", "cli-fail", "--", "python", "fail.py")
        assert failed.returncode == 1
        assert "failing on purpose" in failed.stdout and "failed (exit code 7)" in failed.stdout

        bg = cli("job", "submit", "--no-wait", "--submission-id", "cli-sleep", "--",
                 "python", "-c", "import time; print('sleeping', flush=True); time.sleep(120)")
        assert bg.returncode == 0 and "distcore job logs cli-sleep --follow" in bg.stdout
        stop = cli("job", "stop", "cli-sleep")
        assert stop.returncode == 0 and "is STOPPED" in stop.stdout

        listed = cli("job", "list")
        assert listed.returncode == 0
        rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
        assert rows == {"cli-ok": "SUCCEEDED", "cli-fail": "FAILED", "cli-sleep": "STOPPED"}
        assert cli("job", "delete", "cli-fail").returncode == 0
        assert "cli-fail" not in cli("job", "list").stdout

        missing = cli("job", "status", "nope")
        assert missing.returncode == 1 and "404" in missing.stderr and "'nope'" in missing.stderr
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"])
                          if "time.sleep(120)" in " ".join(p.info["cmdline"] or [])], 10)


def test_a_busy_jobs_port_leaves_the_head_running_without_it(isolated_tmp):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = dict(os.environ)
        out = subprocess.run(DISTCORE + ["start", "--head", "--port", "0", "--dashboard-port", str(port)],
                             env=env, capture_output=True, text=True, timeout=60)
        try:
            assert out.returncode == 0, out.stderr
            assert f"WARNING: no jobs API: the jobs API cannot listen on 127.0.0.1:{port}" in out.stderr
            job = subprocess.run(DISTCORE + ["job", "list"], env=env, capture_output=True, text=True, timeout=60)
            assert job.returncode == 1 and "found no distcore jobs API address" in job.stderr
        finally:
            assert subprocess.run(DISTCORE + ["stop"], env=env, capture_output=True, timeout=60).returncode == 0


# ------------------------------------------------------------------ the Python client


def test_python_client_round_trip(head, workdir):
    client = JobSubmissionClient(head.dashboard_address)  # the token comes from the Cluster
    assert client.get_version() == "1"
    sid = client.submit_job(
        entrypoint="python script.py", submission_id="py-ok", metadata={"owner": "tests"},
        runtime_env={"working_dir": str(workdir), "env_vars": {"MODE": "slow"}},
    )
    assert sid == "py-ok"

    async def tail() -> str:
        return "".join([text async for text in client.tail_job_logs(sid)])

    streamed = asyncio.run(tail())
    assert "result: 42 mode: slow" in streamed
    info = wait_status(client, sid)
    assert info.status is JobStatus.SUCCEEDED and info.driver_exit_code == 0
    assert info.metadata == {"owner": "tests"} and info.runtime_env["working_dir"].startswith("dcpkg://")
    assert info.end_time >= info.start_time > 0
    assert client.get_job_logs(sid) == streamed

    # The driver registered its core job with the submission id: `distcore list jobs` shows both.
    (core,) = [j for j in core_jobs(head) if j.submission_id == "py-ok"]
    assert info.job_id == core.job_id and core.is_dead
    assert client.get_job_info(core.job_id).submission_id == "py-ok"

    assert [j.submission_id for j in client.list_jobs()] == ["py-ok"]

    async def tail_unknown() -> None:
        async for _ in client.tail_job_logs("nope"):
            pass

    with pytest.raises(RuntimeError, match="404.*'nope'"):
        asyncio.run(tail_unknown())
    assert client.delete_job(sid)
    assert client.list_jobs() == []
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_info(sid)


def test_a_failing_entrypoint_is_failed_with_its_exit_code(head, workdir):
    client = JobSubmissionClient(head.dashboard_address)
    sid = client.submit_job(entrypoint="python fail.py", runtime_env={"working_dir": str(workdir)})
    info = wait_status(client, sid)
    assert info.status is JobStatus.FAILED and info.driver_exit_code == 7
    assert "exit code 7" in info.message and "failing on purpose" in client.get_job_logs(sid)


def test_stop_ends_a_long_running_job_and_its_processes(head):
    client = JobSubmissionClient(head.dashboard_address)
    code = 'import time; print("working", flush=True); time.sleep(300)'
    sid = client.submit_job(entrypoint=f"python -c '{code}'")
    wait_for(lambda: "working" in client.get_job_logs(sid), 30)
    info = client.get_job_info(sid)
    assert info.status is JobStatus.RUNNING
    driver = psutil.Process(info.driver_pid)
    tree = [driver, *driver.children(recursive=True)]
    with pytest.raises(RuntimeError, match="stop it"):
        client.delete_job(sid)
    assert client.stop_job(sid)
    info = wait_status(client, sid, timeout=20)
    assert info.status is JobStatus.STOPPED and info.driver_exit_code is not None
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive
    assert not client.stop_job(sid)  # already finished
    assert client.delete_job(sid)


def test_entrypoint_resources_are_held_on_the_head(head):
    client = JobSubmissionClient(head.dashboard_address)
    ok = client.submit_job(entrypoint="echo held", entrypoint_num_cpus=1)
    assert wait_status(client, ok).status is JobStatus.SUCCEEDED
    never = client.submit_job(entrypoint="echo never", entrypoint_num_cpus=64)
    info = wait_status(client, never)
    assert info.status is JobStatus.FAILED and "entrypoint resources" in info.message
    assert client.get_job_logs(never) == ""


def test_bad_submissions_are_refused_with_the_reason(head, tmp_path):
    client = JobSubmissionClient(head.dashboard_address)
    with pytest.raises(RuntimeError, match="400.*submission_id 'a/b' is invalid"):
        client.submit_job(entrypoint="true", submission_id="a/b")
    with pytest.raises(ValueError, match="does not exist"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(tmp_path / "nope")})
    status, body = http("POST", head.dashboard_address + "/api/jobs/", head.auth_token,
                        {"entrypoint": "true", "runtime_env": {"working_dir": str(tmp_path)}})
    assert status == 400 and b"upload it first" in body
    client.submit_job(entrypoint="true", submission_id="dup")
    with pytest.raises(RuntimeError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id="dup")


# ------------------------------------------------------------------ security


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_requests_without_the_token_are_refused_and_run_nothing(head, tmp_path, token):
    base = head.dashboard_address
    marker = tmp_path / "ran"
    submit = {"entrypoint": f"touch {marker}", "submission_id": "intruder"}
    for method, path, body in [
        ("POST", "/api/jobs/", submit),
        ("GET", "/api/jobs/", None),
        ("GET", "/api/jobs/intruder", None),
        ("GET", "/api/jobs/intruder/logs", None),
        ("GET", "/api/jobs/intruder/logs/tail", None),
        ("POST", "/api/jobs/intruder/stop", None),
        ("DELETE", "/api/jobs/intruder", None),
        ("GET", "/api/version", None),
        ("PUT", "/api/packages/dcpkg/" + "0" * 64 + ".zip", {}),
        ("GET", "/no/such/route", None),
    ]:
        status, reply = http(method, base + path, token, body)
        assert status == 401, (method, path, status, reply)
        assert b"missing or wrong cluster token" in reply
    with pytest.raises(AuthenticationError, match="missing or wrong cluster token"):
        JobSubmissionClient(base, headers={"Authorization": f"Bearer {token}" if token else ""})
    # Nothing was created or run; the real token still works.
    status, reply = http("GET", base + "/api/jobs/", head.auth_token)
    assert status == 200 and json.loads(reply) == []
    assert not marker.exists()
    with open(os.path.join(head.session_dir, "logs", f"head-{head.head.node_id[:12]}.log")) as f:
        assert "refused an unauthenticated HTTP request POST /api/jobs/" in f.read()


def test_health_check_needs_no_token(head):
    status, body = http("GET", head.dashboard_address + "/-/healthz", None)
    assert (status, body) == (200, b"success")


# ------------------------------------------------------------------ discovery


def test_embedded_cluster_serves_jobs_on_request_and_clients_find_it(isolated_tmp):
    import distcore

    ctx = distcore.init(num_cpus=1, include_dashboard=True)
    try:
        with open(os.path.join(ctx["session_dir"], "dashboard_address")) as f:
            address = f.read().strip()
        client = JobSubmissionClient()  # address and token from this machine's latest session
        assert client.address == address
        sid = client.submit_job(entrypoint=textwrap.dedent("""\
            python -c 'import distcore; distcore.init(); print("cpus", distcore.cluster_resources()["CPU"])'"""))
        info = wait_status(client, sid)
        assert info.status is JobStatus.SUCCEEDED, client.get_job_logs(sid)
        assert "cpus 1.0" in client.get_job_logs(sid)
    finally:
        distcore.shutdown()
    assert not os.path.exists(os.path.join(ctx["session_dir"], "dashboard_address"))
