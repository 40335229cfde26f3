"""Submit and manage jobs on a distcore cluster (mirrors ``ray.job_submission``).

A *job* is a shell command (the *entrypoint*, e.g. ``python train.py``) that
the head runs as a driver of the cluster: its ``distcore.init()`` connects to
that cluster. The head keeps each job's status, exit code and log.

Example::

    from distcore.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient("http://127.0.0.1:8265")
    job_id = client.submit_job(
        entrypoint="python script.py",
        runtime_env={"working_dir": "./", "env_vars": {"MODE": "fast"}},
    )
    print(client.get_job_status(job_id))      # JobStatus.PENDING / RUNNING / ...
    print(client.get_job_logs(job_id))

The client talks HTTP with the standard library only; the head needs
``pip install "distcore[default]"`` to serve the API.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

from distcore._private import node as _node
from distcore._private import runtime_env as _renv
from distcore._private.jobs.common import (
    DASHBOARD_ADDRESS_FILE,
    DEFAULT_DASHBOARD_PORT,
    JobDetails,
    JobInfo,
    JobStatus,
)
from distcore.exceptions import AuthenticationError

__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient"]

_ADDRESS_ENV = "DISTCORE_DASHBOARD_ADDRESS"


def _local_dashboard() -> tuple[str | None, str]:
    """The dashboard address of this machine's latest cluster (or None), and the file read."""
    path = os.path.join(_node.temp_root(), "session_latest", DASHBOARD_ADDRESS_FILE)
    try:
        with open(path) as f:
            return f.read().strip() or None, path
    except OSError:
        return None, path


def resolve_address(address: str | None = None) -> str:
    """The jobs API's ``http://host:port`` from an address, the environment or this machine's cluster.

    ``address`` may be ``http(s)://host:port``, ``host:port`` or ``"auto"``.
    Without one: ``DISTCORE_DASHBOARD_ADDRESS``, then the cluster that
    ``distcore start --head`` (or ``init(include_dashboard=True)``) started
    last on this machine.

    Raises:
        ConnectionError: no address given and no local cluster serves the API.
    """
    if not address or address == "auto":
        address = None if address == "auto" else os.environ.get(_ADDRESS_ENV)
        if not address:
            found, path = _local_dashboard()
            if found is None:
                raise ConnectionError(
                    "found no distcore jobs API address: pass address='http://<head>:"
                    f"{DEFAULT_DASHBOARD_PORT}' (or --address), set {_ADDRESS_ENV}, or start a cluster on "
                    f"this machine with `distcore start --head` (no {path})"
                )
            address = found
    if "://" not in address:
        address = f"http://{address}"
    parts = urllib.parse.urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"jobs API address {address!r} must look like http://HOST:PORT")
    return address.rstrip("/")


def _local_token(address: str) -> str | None:
    """The token file of this machine's latest cluster, if ``address`` is its jobs API."""
    found, path = _local_dashboard()
    if found is None or found.rstrip("/") != address:
        return None
    try:
        with open(os.path.join(os.path.dirname(path), "token")) as f:
            return f.read().strip() or None
    except OSError:
        return None


class JobSubmissionClient:
    """A client of a cluster's jobs HTTP API.

    Args:
        address: ``http://host:port`` of the head's jobs API (default:
            ``DISTCORE_DASHBOARD_ADDRESS`` or this machine's cluster).
        headers: extra HTTP headers sent with every request.
        auth_token: the cluster token; default ``DISTCORE_AUTH_TOKEN``, else
            the local cluster's token file when ``address`` is that cluster.
        timeout: seconds each request may take (not the log tail).
        verify: check at once that the API answers (as Ray's client does).

    Raises:
        ConnectionError: the API cannot be reached.
        AuthenticationError: it refused the token.

    Example::

        client = JobSubmissionClient()          # the cluster this machine started
        for info in client.list_jobs():
            print(info.submission_id, info.status, info.driver_exit_code)
    """

    def __init__(
        self,
        address: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        auth_token: str | None = None,
        timeout: float = 60.0,
        verify: bool = True,
    ) -> None:
        self._address = resolve_address(address)
        self._timeout = timeout
        self._headers = dict(headers or {})
        if not any(k.lower() == "authorization" for k in self._headers):
            token = (auth_token or os.environ.get("DISTCORE_AUTH_TOKEN") or _node.known_token(self._address)
                     or _local_token(self._address))
            if token:
                self._headers["Authorization"] = f"Bearer {token}"
        # Cluster addresses are reached directly, never through a proxy (the token must not travel there).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if verify:
            self.get_version()

    @property
    def address(self) -> str:
        """The jobs API this client talks to."""
        return self._address

    # ------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, *, payload: Any = None, data: bytes | None = None,
                 ok_404: bool = False) -> Any:
        headers = dict(self._headers)
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        req = urllib.request.Request(self._address + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            if ok_404 and exc.code == 404:
                exc.close()
                return None
            try:
                raw = exc.read()
            finally:
                exc.close()
            raise self._error(exc.code, raw, method, path) from None
        except urllib.error.URLError as exc:
            raise ConnectionError(
                f"could not reach the distcore jobs API at {self._address}: {exc.reason}. Is the head running "
                f"with its jobs API (`distcore start --head`, port {DEFAULT_DASHBOARD_PORT} by default; it needs "
                f"`pip install \"distcore[default]\"` on the head)?"
            ) from None
        return json.loads(body) if body else None

    def _error(self, code: int, raw: bytes, method: str, path: str) -> Exception:
        try:
            message = json.loads(raw).get("error") or raw.decode()
        except (ValueError, AttributeError):
            message = raw.decode("utf-8", "replace")
        if code == 401:
            return AuthenticationError(f"the jobs API at {self._address} refused {method} {path}: {message}")
        return RuntimeError(f"Request failed with status code {code}: {message}")

    def _upload(self, uri: str, data: bytes) -> None:
        self._request("PUT", "/api/packages/" + uri.replace("://", "/", 1), data=data)

    def _exists(self, uri: str) -> bool:
        return self._request("GET", "/api/packages/" + uri.replace("://", "/", 1), ok_404=True) is not None

    @staticmethod
    def _job_path(job_id: str, suffix: str = "") -> str:
        if not isinstance(job_id, str) or not job_id:
            raise ValueError(f"job id must be a non-empty string, got {job_id!r}")
        return f"/api/jobs/{urllib.parse.quote(job_id, safe='')}{suffix}"

    # ------------------------------------------------------------ API

    def get_version(self) -> str:
        """The REST API version the server speaks (raises if it cannot be reached)."""
        return str(self._request("GET", "/api/version")["version"])

    def submit_job(
        self,
        *,
        entrypoint: str,
        job_id: str | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        submission_id: str | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: Mapping[str, float] | None = None,
    ) -> str:
        """Run ``entrypoint`` (a shell command) as a driver on the head; return its submission id.

        A local ``working_dir`` (and ``py_modules``) in ``runtime_env`` is
        zipped and uploaded first (skipped when the head already has the
        same content); the entrypoint runs inside it. ``env_vars`` are set
        for the driver and its tasks. ``entrypoint_num_cpus`` /
        ``entrypoint_num_gpus`` / ``entrypoint_resources`` are held on the
        head while the driver runs (default: none).

        Raises:
            RuntimeError: the server refused the job (the message says why).

        Example::

            sid = client.submit_job(entrypoint="python train.py --epochs 3",
                                    runtime_env={"working_dir": "."}, submission_id="train-1")
        """
        env = dict(runtime_env or {})
        if env:
            env = _renv.upload_packages(env, self._upload, self._exists)
        body: dict[str, Any] = {"entrypoint": entrypoint, "runtime_env": env, "metadata": dict(metadata or {})}
        for key, value in (("submission_id", submission_id), ("job_id", job_id),
                           ("entrypoint_num_cpus", entrypoint_num_cpus), ("entrypoint_num_gpus", entrypoint_num_gpus),
                           ("entrypoint_memory", entrypoint_memory)):
            if value is not None:
                body[key] = value
        if entrypoint_resources is not None:
            body["entrypoint_resources"] = dict(entrypoint_resources)
        return str(self._request("POST", "/api/jobs/", payload=body)["submission_id"])

    def get_job_info(self, job_id: str) -> JobInfo:
        """The job's full record (status, message, exit code, times in ms, driver)."""
        return JobInfo.from_dict(self._request("GET", self._job_path(job_id)))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's current :class:`JobStatus`."""
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobInfo]:
        """Every job the head knows, oldest first."""
        return [JobInfo.from_dict(d) for d in self._request("GET", "/api/jobs/")]

    def get_job_logs(self, job_id: str) -> str:
        """Everything the job's driver printed so far (stdout and stderr)."""
        return str(self._request("GET", self._job_path(job_id, "/logs"))["logs"])

    def stop_job(self, job_id: str) -> bool:
        """Stop the job (SIGTERM, then SIGKILL); False if it had already finished."""
        return bool(self._request("POST", self._job_path(job_id, "/stop"))["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Forget a finished job and its log (a running job must be stopped first)."""
        return bool(self._request("DELETE", self._job_path(job_id))["deleted"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as it is written, until the job finishes.

        Example::

            async for lines in client.tail_job_logs(job_id):
                print(lines, end="")
        """
        parts = urllib.parse.urlsplit(self._address)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        try:
            reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=secure or None)
        except OSError as exc:
            raise ConnectionError(f"could not reach the distcore jobs API at {self._address}: {exc}") from None
        try:
            path = self._job_path(job_id, "/logs/tail")
            head = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/plain", "Connection: close"]
            head += [f"{k}: {v}" for k, v in self._headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            status_line = (await reader.readline()).decode("latin-1").split()
            if len(status_line) < 2 or not status_line[1].isdigit():
                raise ConnectionError(f"the jobs API at {self._address} sent a malformed response")
            code = int(status_line[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            chunks = _read_chunked(reader) if headers.get("transfer-encoding") == "chunked" else _read_all(reader)
            if code != 200:
                raise self._error(code, b"".join([c async for c in chunks]), "GET", path)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            async for chunk in chunks:
                text = decoder.decode(chunk)
                if text:
                    yield text
            rest = decoder.decode(b"", final=True)
            if rest:
                yield rest
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass


async def _read_chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        line = await reader.readline()
        if not line:
            return
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


async def _read_all(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data
