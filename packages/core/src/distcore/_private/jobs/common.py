"""What the jobs server and its clients share: statuses, job records, requests.

Standard library only: :mod:`distcore.job_submission` (the client) imports
this module without pulling in the server's dependencies.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DASHBOARD_PORT = 8265
"""Port of the head's jobs HTTP server (Ray's dashboard port)."""
JOBS_API_VERSION = "1"
"""Version of the REST API; bumped when a path or a field changes meaning."""
DASHBOARD_ADDRESS_FILE = "dashboard_address"
"""File in the session directory holding the server's ``http://host:port``."""
KV_NAMESPACE = "job"
"""Control-store key-value namespace of the job records (one JSON per job)."""
CLUSTER_KV_NAMESPACE = "cluster"
DASHBOARD_ADDRESS_KEY = "dashboard_address"
"""Key (in :data:`CLUSTER_KV_NAMESPACE`) of the server's address."""
SUBMISSION_ID_ENV = "DISTCORE_JOB_SUBMISSION_ID"
"""Set in a submitted driver's environment; the driver records it on its core job."""
JOB_RUNTIME_ENV_ENV = "DISTCORE_JOB_RUNTIME_ENV"
"""JSON ``runtime_env`` of a submitted job; ``init()`` uses it as the job's environment."""

_SUBMISSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_SUBMIT_FIELDS = (
    "entrypoint", "submission_id", "job_id", "runtime_env", "metadata", "entrypoint_num_cpus",
    "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources",
)


class JobStatus(enum.StrEnum):
    """The status of a submitted job (Ray's names and meanings).

    ``PENDING`` until its driver process starts, ``RUNNING`` while it runs,
    then one of the terminal ``STOPPED`` (by ``stop_job``), ``SUCCEEDED``
    (exit code 0) or ``FAILED`` (any other exit code, or it could not start).

    Example::

        if client.get_job_status(job_id).is_terminal():
            print(client.get_job_logs(job_id))
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        """True once the status can no longer change."""
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclass
class JobInfo:
    """One submitted job, as the REST API returns it (Ray's ``JobDetails`` fields).

    Times are Unix timestamps in milliseconds, as in Ray. ``job_id`` is the
    core job id of the driver once its ``distcore.init()`` connected (the id
    ``distcore list jobs`` shows); ``submission_id`` names the submission.

    Example::

        info = client.get_job_info("my-job")
        print(info.status, info.driver_exit_code, info.message)
    """

    submission_id: str
    entrypoint: str
    status: JobStatus = JobStatus.PENDING
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_exit_code: int | None = None
    driver_pid: int | None = None
    driver_node_id: str | None = None
    job_id: str | None = None
    driver_info: dict[str, Any] | None = None
    type: str = "SUBMISSION"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the status as its name)."""
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobInfo:
        """The inverse of :meth:`to_dict`; unknown keys (a newer server's) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = JobStatus(kwargs.get("status", "PENDING"))
        return cls(**kwargs)


JobDetails = JobInfo
"""Ray's name for the full job record."""


@dataclass
class SubmitRequest:
    """A validated ``POST /api/jobs/`` body."""

    entrypoint: str
    submission_id: str
    runtime_env: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None

    def resources(self) -> dict[str, float]:
        """The resources the driver holds while it runs (empty: none, the default)."""
        out = dict(self.entrypoint_resources or {})
        if self.entrypoint_num_cpus:
            out["CPU"] = float(self.entrypoint_num_cpus)
        if self.entrypoint_num_gpus:
            out["GPU"] = float(self.entrypoint_num_gpus)
        if self.entrypoint_memory:
            out["memory"] = float(self.entrypoint_memory)
        return {k: v for k, v in out.items() if v}


def new_submission_id() -> str:
    """A fresh submission id, ``dcsubmit_`` and 16 random characters."""
    return f"dcsubmit_{secrets.token_hex(8)}"


def check_submission_id(value: Any) -> str:
    """Return ``value`` if it can name a job (it names the job's log file too).

    Raises:
        ValueError: not 1 to 128 letters, digits, ``_``, ``.`` or ``-``
            (starting with a letter or digit).
    """
    if not isinstance(value, str) or not _SUBMISSION_ID_RE.match(value):
        raise ValueError(
            f"submission_id {value!r} is invalid: use 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def _number(name: str, value: Any, *, integer: bool = False) -> Any:
    if value is None:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < 0:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} >= 0, got {value!r}")
    return value


def parse_submit_request(body: Any) -> SubmitRequest:
    """Validate a submit body (a JSON object) into a :class:`SubmitRequest`.

    Raises:
        ValueError: naming the field that is wrong, its value and what is expected.
    """
    if not isinstance(body, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(_SUBMIT_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; valid fields: {', '.join(_SUBMIT_FIELDS)}")
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise ValueError(f"entrypoint must be a non-empty shell command string, got {entrypoint!r}")
    sid, legacy = body.get("submission_id"), body.get("job_id")
    if sid is not None and legacy is not None and sid != legacy:
        raise ValueError(f"give submission_id or its old name job_id, not both ({sid!r} != {legacy!r})")
    sid = sid if sid is not None else legacy
    sid = new_submission_id() if sid is None else check_submission_id(sid)
    runtime_env = body.get("runtime_env") or {}
    if not isinstance(runtime_env, dict):
        raise ValueError(f"runtime_env must be a JSON object, got {runtime_env!r}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"metadata must be an object of string keys to string values, got {metadata!r}")
    resources = body.get("entrypoint_resources")
    if resources is not None:
        if not isinstance(resources, dict):
            raise ValueError(f"entrypoint_resources must be an object of resource name to amount, got {resources!r}")
        for key, amount in resources.items():
            if key in ("CPU", "GPU", "memory"):
                raise ValueError(
                    f"entrypoint_resources must not hold {key!r}: use entrypoint_num_cpus, "
                    "entrypoint_num_gpus or entrypoint_memory"
                )
            _number(f"entrypoint_resources[{key!r}]", amount)
    return SubmitRequest(
        entrypoint=entrypoint, submission_id=sid, runtime_env=dict(runtime_env), metadata=dict(metadata),
        entrypoint_num_cpus=_number("entrypoint_num_cpus", body.get("entrypoint_num_cpus")),
        entrypoint_num_gpus=_number("entrypoint_num_gpus", body.get("entrypoint_num_gpus")),
        entrypoint_memory=_number("entrypoint_memory", body.get("entrypoint_memory"), integer=True),
        entrypoint_resources=dict(resources) if resources is not None else None,
    )


def driver_log_name(submission_id: str) -> str:
    """File name (under ``<session_dir>/logs``) of a job driver's stdout and stderr."""
    return f"job-driver-{check_submission_id(submission_id)}.log"
