"""``distcore job submit | status | logs | stop | delete | list``: the jobs API from the shell.

Example::

    distcore job submit --working-dir . -- python script.py --epochs 3
    distcore job submit --no-wait --submission-id nightly -- python etl.py
    distcore job status nightly
    distcore job logs nightly --follow
    distcore job stop nightly
    distcore job list

The address defaults to ``DISTCORE_DASHBOARD_ADDRESS`` or the cluster this
machine started (``distcore start --head``); the token to
``DISTCORE_AUTH_TOKEN`` or that cluster's token file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from distcore.scripts.cli import DISTCORE

if TYPE_CHECKING:
    from distcore.job_submission import JobInfo, JobSubmissionClient

_STOP_WAIT_S = 30.0


def _client(args: argparse.Namespace) -> JobSubmissionClient:
    from distcore.job_submission import JobSubmissionClient

    return JobSubmissionClient(args.address)


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def _entrypoint(words: list[str]) -> str:
    """One word is a shell command as written; several are quoted back into one."""
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise ValueError("give the entrypoint after `--`, e.g. `distcore job submit -- python script.py`")
    return words[0] if len(words) == 1 else shlex.join(words)


async def _print_tail(client: JobSubmissionClient, job_id: str) -> None:
    async for text in client.tail_job_logs(job_id):
        sys.stdout.write(text)
        sys.stdout.flush()


def _follow(client: JobSubmissionClient, job_id: str) -> None:
    try:
        asyncio.run(_print_tail(client, job_id))
    except KeyboardInterrupt:
        print(f"\nStopped following the logs; job {job_id!r} goes on (`distcore job stop {job_id}` stops it).",
              file=sys.stderr)
        raise SystemExit(130) from None


def _final_status(client: JobSubmissionClient, job_id: str, timeout: float = 10.0) -> JobInfo:
    deadline = time.monotonic() + timeout
    info = client.get_job_info(job_id)
    while not info.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.1)
        info = client.get_job_info(job_id)
    return info


def _report(info: JobInfo) -> int:
    from distcore.job_submission import JobStatus

    sid = info.submission_id
    if info.status is JobStatus.SUCCEEDED:
        print(f"Job {sid!r} succeeded")
        return 0
    if info.status is JobStatus.STOPPED:
        print(f"Job {sid!r} was stopped")
        return 1
    if info.status is JobStatus.FAILED:
        print(f"Job {sid!r} failed (exit code {info.driver_exit_code}): {info.message}")
        return 1
    print(f"Job {sid!r} is still {info.status}: {info.message}")
    return 1


# ------------------------------------------------------------------ subcommands


def _submit(args: argparse.Namespace) -> int:
    entrypoint = _entrypoint(args.entrypoint)
    runtime_env = _json_object(args.runtime_env_json, "--runtime-env-json") or {}
    if args.working_dir is not None:
        runtime_env["working_dir"] = args.working_dir
    client = _client(args)
    sid = client.submit_job(
        entrypoint=entrypoint, runtime_env=runtime_env or None, submission_id=args.submission_id,
        metadata=_json_object(args.metadata_json, "--metadata-json"),
        entrypoint_num_cpus=args.entrypoint_num_cpus, entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_memory=args.entrypoint_memory,
        entrypoint_resources=_json_object(args.entrypoint_resources, "--entrypoint-resources"),
    )
    print(f"Job {sid!r} submitted successfully")
    if args.no_wait:
        print(f"  status:  distcore job status {sid}")
        print(f"  logs:    distcore job logs {sid} --follow")
        print(f"  stop:    distcore job stop {sid}")
        return 0
    print("Tailing logs until the job exits (disable with --no-wait):", flush=True)
    _follow(client, sid)
    return _report(_final_status(client, sid))


def _status(args: argparse.Namespace) -> int:
    info = _client(args).get_job_info(args.job_id)
    print(f"Status for job {info.submission_id!r}: {info.status}")
    if info.message:
        print(f"Status message: {info.message}")
    if info.driver_exit_code is not None:
        print(f"Exit code: {info.driver_exit_code}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.follow:
        _follow(client, args.job_id)
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def _stop(args: argparse.Namespace) -> int:
    client = _client(args)
    if not client.stop_job(args.job_id):
        print(f"Job {args.job_id!r} had already finished: {client.get_job_status(args.job_id)}")
        return 0
    print(f"Stopping job {args.job_id!r}")
    if args.no_wait:
        return 0
    info = _final_status(client, args.job_id, _STOP_WAIT_S)
    print(f"Job {args.job_id!r} is {info.status}")
    return 0 if info.status.is_terminal() else 1


def _delete(args: argparse.Namespace) -> int:
    _client(args).delete_job(args.job_id)
    print(f"Job {args.job_id!r} deleted")
    return 0


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _list(args: argparse.Namespace) -> int:
    jobs = _client(args).list_jobs()
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    rows = [("SUBMISSION_ID", "STATUS", "JOB_ID", "EXIT", "STARTED", "ENTRYPOINT")]
    for j in jobs:
        exit_code = "-" if j.driver_exit_code is None else str(j.driver_exit_code)
        rows.append((j.submission_id, str(j.status), j.job_id or "-", exit_code, _when(j.start_time), j.entrypoint))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if not jobs:
        print("(no jobs)")
    return 0


# ------------------------------------------------------------------ wiring


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="the head's jobs API, http://HOST:PORT (default: DISTCORE_DASHBOARD_ADDRESS or this "
                        "machine's cluster)")


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="job_command", metavar="JOB_COMMAND", title="job commands")
    s = sub.add_parser("submit", help="run a command as a job on the head; follow its logs unless --no-wait")
    _add_address(s)
    s.add_argument("--working-dir", default=None, help="directory to upload; the entrypoint runs inside it")
    s.add_argument("--runtime-env-json", default=None, help='runtime_env as JSON, e.g. \'{"env_vars": {"A": "1"}}\'')
    s.add_argument("--submission-id", default=None, help="name of the job (default: a generated dcsubmit_... id)")
    s.add_argument("--metadata-json", default=None, help="string-to-string metadata as JSON")
    s.add_argument("--entrypoint-num-cpus", type=float, default=None, help="CPUs held while the driver runs")
    s.add_argument("--entrypoint-num-gpus", type=float, default=None, help="GPUs held while the driver runs")
    s.add_argument("--entrypoint-memory", type=int, default=None, help="bytes of memory held while it runs")
    s.add_argument("--entrypoint-resources", default=None, help="custom resources held, as JSON")
    s.add_argument("--no-wait", action="store_true", help="return once submitted instead of following the logs")
    s.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    s.set_defaults(job_run=_submit)
    for name, run, help_text in (("status", _status, "show a job's status, message and exit code"),
                                 ("logs", _logs, "print a job's logs"),
                                 ("stop", _stop, "stop a job (SIGTERM, then SIGKILL)"),
                                 ("delete", _delete, "forget a finished job and its logs")):
        c = sub.add_parser(name, help=help_text)
        _add_address(c)
        c.add_argument("job_id", help="submission id (or the driver's job id)")
        c.set_defaults(job_run=run)
        if name == "logs":
            c.add_argument("-f", "--follow", action="store_true", help="keep printing until the job finishes")
        if name == "stop":
            c.add_argument("--no-wait", action="store_true", help="return without waiting for the job to stop")
    ls = sub.add_parser("list", help="list every job of the cluster")
    _add_address(ls)
    ls.add_argument("--json", action="store_true", help="print the full records as JSON")
    ls.set_defaults(job_run=_list)
    p.set_defaults(job_help=p.print_help)


def _run(args: argparse.Namespace) -> int:
    from distcore.exceptions import AuthenticationError

    run: Callable[[argparse.Namespace], int] | None = getattr(args, "job_run", None)
    if run is None:
        args.job_help()
        return 2
    try:
        return run(args)
    except (ConnectionError, AuthenticationError, RuntimeError, ValueError, TypeError) as exc:
        print(f"distcore job {args.job_command}: {exc}", file=sys.stderr)
        return 1


DISTCORE.add("job", "submit and manage jobs through the head's jobs API", _run, _configure)
