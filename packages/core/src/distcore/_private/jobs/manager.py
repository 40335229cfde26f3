"""Submitted jobs: their records, and the supervisor that runs each driver.

The :class:`JobManager` keeps one JSON record per job in the control store's
key-value store (namespace ``job``) and one supervisor task per live job. A
supervisor:

1. holds the job's entrypoint resources (a lease on the head's node manager)
   when it asked for any, waiting while they are busy;
2. sets up its ``runtime_env`` (the uploaded ``working_dir`` and
   ``py_modules`` are extracted like a worker's, under
   ``<session_dir>/runtime_resources``);
3. runs the entrypoint with ``/bin/sh -c`` as a child of the head, in the
   working dir, with the head's interpreter first on ``PATH`` (``python``
   is the cluster's Python), ``DISTCORE_ADDRESS``, ``DISTCORE_AUTH_TOKEN`` and
   ``DISTCORE_JOB_SUBMISSION_ID`` set so ``distcore.init()`` joins this
   cluster; stdout and stderr go to ``<session_dir>/logs/job-driver-<id>.log``;
4. records the exit code and the final status.

``stop`` sends SIGTERM to the driver's process tree and SIGKILL after
``stop_grace_s``. Status changes go through the pure :mod:`state` machine.

Example::

    manager = JobManager(MemoryKv(), session_dir=d, gcs_address="127.0.0.1:6379", token=None)
    await manager.start()
    sid = await manager.submit(parse_submit_request({"entrypoint": "echo hi"}))
    await manager.wait(sid)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil

from distcore._private import runtime_env as renv
from distcore._private.jobs import state
from distcore._private.jobs.common import (
    JOB_RUNTIME_ENV_ENV,
    KV_NAMESPACE,
    SUBMISSION_ID_ENV,
    JobInfo,
    SubmitRequest,
    driver_log_name,
)

logger = logging.getLogger(__name__)

PKG_NAMESPACE = "pkg"
"""Key-value namespace of uploaded packages (shared with runtime_env and workers)."""
DEFAULT_STOP_GRACE_S = float(os.environ.get("DISTCORE_JOB_STOP_WAIT_TIME_S", "3"))
SHUTDOWN_GRACE_S = 2.0
_LOG_TAIL_LINES = 20
_READ_CHUNK = 1 << 20


class JobExistsError(ValueError):
    """A submission id that is already taken."""


class Kv(Protocol):
    """The key-value store the manager keeps records and reads packages in."""

    async def get(self, namespace: str, key: str) -> bytes | None: ...

    async def put(self, namespace: str, key: str, value: bytes) -> None: ...

    async def delete(self, namespace: str, key: str) -> None: ...

    async def keys(self, namespace: str) -> list[str]: ...


class MemoryKv:
    """A :class:`Kv` in a dict (tests, and a head without a control store)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}

    async def get(self, namespace: str, key: str) -> bytes | None:
        return self.data.get((namespace, key))

    async def put(self, namespace: str, key: str, value: bytes) -> None:
        self.data[(namespace, key)] = value

    async def delete(self, namespace: str, key: str) -> None:
        self.data.pop((namespace, key), None)

    async def keys(self, namespace: str) -> list[str]:
        return [k for ns, k in self.data if ns == namespace]


class ResourceLeaser(Protocol):
    """Holds a driver's entrypoint resources on the head while it runs."""

    async def acquire(self, lease_id: str, resources: dict[str, float]) -> list[int]:
        """Wait until ``resources`` are held; return the GPU ids assigned.

        Raises ``ValueError`` when they can never fit on the head.
        """
        ...

    async def release(self, lease_id: str) -> None: ...


@dataclass
class _Supervisor:
    info: JobInfo
    task: asyncio.Task | None = None
    proc: asyncio.subprocess.Process | None = None
    prepare: asyncio.Task | None = None  # waiting for resources, setting the env up
    stopping: bool = False
    shutting_down: bool = False
    tree: list[psutil.Process] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


class JobManager:
    """Submits, supervises, stops, lists and deletes jobs; persists their records.

    Args:
        kv: where records (namespace ``job``) and packages (``pkg``) live.
        session_dir: the cluster's session directory (logs, package cache).
        gcs_address: the control store address drivers connect to.
        token: the cluster token drivers authenticate with (None: auth off).
        leaser: reserves entrypoint resources; without it, jobs asking for
            resources are refused.
        node_id: the head's node id, reported as ``driver_node_id``.
        core_job: ``core_job(submission_id)`` -> the driver's core job as a
            dict (``id``, ``pid``, ...) once it connected, for the records.
        on_driver_exit: awaited with the submission id when a driver exits.
    """

    def __init__(
        self,
        kv: Kv,
        *,
        session_dir: str,
        gcs_address: str,
        token: str | None,
        leaser: ResourceLeaser | None = None,
        node_id: str | None = None,
        core_job: Callable[[str], dict[str, Any] | None] | None = None,
        on_driver_exit: Callable[[str], Awaitable[None]] | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
    ) -> None:
        self.kv = kv
        self.session_dir = session_dir
        self.gcs_address = gcs_address
        self.token = token
        self.leaser = leaser
        self.node_id = node_id
        self._core_job = core_job
        self._on_driver_exit = on_driver_exit
        self.stop_grace_s = stop_grace_s
        self._jobs: dict[str, JobInfo] = {}
        self._supervisors: dict[str, _Supervisor] = {}
        self._closing = False
        os.makedirs(os.path.join(session_dir, "logs"), exist_ok=True)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the records; jobs a previous head left unfinished become FAILED."""
        for key in await self.kv.keys(KV_NAMESPACE):
            raw = await self.kv.get(KV_NAMESPACE, key)
            if raw is None:
                continue
            try:
                info = JobInfo.from_dict(json.loads(raw))
            except (ValueError, TypeError) as exc:
                logger.warning("skipping unreadable job record %r: %s", key, exc)
                continue
            if not info.status.is_terminal():
                pid = f" (pid {info.driver_pid})" if info.driver_pid else ""
                info = state.transition(info, state.Failed(
                    f"the head restarted while the job was {info.status.value}; its driver{pid} was not supervised "
                    "any more and its outcome is unknown", state.LOST_ERROR, _now_ms(),
                ))
                await self._persist(info)
            self._jobs[info.submission_id] = info

    async def close(self) -> None:
        """Stop every live driver (the head is shutting down) and wait for the supervisors."""
        self._closing = True
        sups = [s for s in self._supervisors.values() if s.task is not None]
        for sup in sups:
            sup.shutting_down = True
            self._request_stop(sup, min(self.stop_grace_s, SHUTDOWN_GRACE_S))
        if sups:
            await asyncio.wait([s.task for s in sups if s.task], timeout=SHUTDOWN_GRACE_S + 3)

    # ------------------------------------------------------------ queries

    def log_path(self, submission_id: str) -> str:
        return os.path.join(self.session_dir, "logs", driver_log_name(submission_id))

    def _resolve(self, job_id: str) -> str | None:
        """A submission id from a submission id or a driver's core job id."""
        if job_id in self._jobs:
            return job_id
        for sid in self._jobs:
            if (self._view(sid).job_id or None) == job_id:
                return sid
        return None

    def _view(self, sid: str) -> JobInfo:
        info = self._jobs[sid]
        core = self._core_job(sid) if self._core_job else None
        if core:
            info = JobInfo.from_dict({**info.to_dict(), "job_id": core.get("id"), "driver_info": core})
        return info

    def get(self, job_id: str) -> JobInfo | None:
        """The record of a job by submission id (or its driver's core job id); None if unknown."""
        sid = self._resolve(job_id)
        return self._view(sid) if sid is not None else None

    def list(self) -> list[JobInfo]:
        """Every job, oldest first."""
        return sorted((self._view(s) for s in self._jobs), key=lambda i: (i.start_time or 0, i.submission_id))

    def read_logs(self, job_id: str) -> str:
        """The driver's whole log so far.

        Raises:
            KeyError: no such job.
        """
        sid = self._require(job_id)
        try:
            with open(self.log_path(sid), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    async def follow_logs(self, job_id: str, poll_s: float = 0.1) -> AsyncIterator[bytes]:
        """The log as it grows, until the job is finished and all of it was sent.

        Raises:
            KeyError: no such job.
        """
        sid = self._require(job_id)
        path, offset = self.log_path(sid), 0
        while True:
            info = self._jobs.get(sid)
            finished = info is None or info.status.is_terminal() or self._closing
            data = _read_from(path, offset)
            if data:
                offset += len(data)
                yield data
                continue
            if finished:
                return
            await asyncio.sleep(poll_s)

    async def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Wait until the job is terminal; return its record."""
        sid = self._require(job_id)
        sup = self._supervisors.get(sid)
        if sup is not None and sup.task is not None:
            await asyncio.wait_for(asyncio.shield(sup.task), timeout)
        return self._view(sid)

    def _require(self, job_id: str) -> str:
        sid = self._resolve(job_id)
        if sid is None:
            raise KeyError(f"no job with submission id (or job id) {job_id!r}")
        return sid

    # ------------------------------------------------------------ commands

    async def submit(self, req: SubmitRequest) -> str:
        """Record the job as PENDING and start its supervisor; return the submission id.

        Raises:
            JobExistsError: the submission id is taken.
            ValueError: the runtime_env or the resources cannot be used.
        """
        sid = req.submission_id
        if self._closing:
            raise RuntimeError("the head is shutting down; submit the job again once it is back")
        if sid in self._jobs or await self.kv.get(KV_NAMESPACE, sid) is not None:
            raise JobExistsError(f"a job with submission_id {sid!r} already exists; pick another submission_id")
        runtime_env = await self._check_runtime_env(req.runtime_env)
        resources = req.resources()
        if resources and self.leaser is None:
            raise ValueError(f"this head cannot reserve entrypoint resources {resources}; submit without them")
        if sid in self._jobs:  # lost a race while checking packages
            raise JobExistsError(f"a job with submission_id {sid!r} already exists; pick another submission_id")
        info = JobInfo(
            submission_id=sid, entrypoint=req.entrypoint, start_time=_now_ms(), metadata=dict(req.metadata),
            runtime_env=runtime_env, entrypoint_num_cpus=req.entrypoint_num_cpus,
            entrypoint_num_gpus=req.entrypoint_num_gpus, entrypoint_memory=req.entrypoint_memory,
            entrypoint_resources=req.entrypoint_resources, driver_node_id=self.node_id,
            message=f"Job is waiting for its entrypoint resources {resources}." if resources else "Job is starting.",
        )
        self._jobs[sid] = info
        sup = _Supervisor(info)
        self._supervisors[sid] = sup
        await self._persist(info)
        sup.task = asyncio.ensure_future(self._supervise(sup, resources))
        return sid

    async def stop(self, job_id: str) -> bool:
        """Ask the job's driver to stop; False if the job was already finished.

        Raises:
            KeyError: no such job.
        """
        sid = self._require(job_id)
        sup = self._supervisors.get(sid)
        if sup is None or self._jobs[sid].status.is_terminal():
            return False
        self._request_stop(sup, self.stop_grace_s)
        return True

    async def delete(self, job_id: str) -> bool:
        """Forget a finished job: its record and its log.

        Raises:
            KeyError: no such job.
            ValueError: the job is still pending or running.
        """
        sid = self._require(job_id)
        info = self._jobs[sid]
        if not state.can_delete(info):
            raise ValueError(f"job {sid!r} is {info.status.value}; stop it (and let it finish) before deleting it")
        del self._jobs[sid]
        self._supervisors.pop(sid, None)
        await self.kv.delete(KV_NAMESPACE, sid)
        try:
            os.unlink(self.log_path(sid))
        except FileNotFoundError:
            pass
        return True

    # ------------------------------------------------------------ internals

    async def _persist(self, info: JobInfo) -> None:
        await self.kv.put(KV_NAMESPACE, info.submission_id, json.dumps(info.to_dict()).encode())

    async def _apply(self, sup: _Supervisor, event: state.Event) -> None:
        sup.info = state.transition(sup.info, event)
        if sup.info.submission_id in self._jobs:  # not deleted meanwhile
            self._jobs[sup.info.submission_id] = sup.info
            await self._persist(sup.info)

    async def _check_runtime_env(self, runtime_env: dict[str, Any]) -> dict[str, Any]:
        if not runtime_env:
            return {}
        local = [v for k in ("working_dir", "py_modules") for v in _as_list(runtime_env.get(k))
                 if isinstance(v, str) and not v.startswith(renv.URI_SCHEME)]
        if local:
            raise ValueError(
                f"runtime_env refers to {local[0]!r}, a path on the client: upload it first and pass its "
                f"{renv.URI_SCHEME} URI (JobSubmissionClient and `distcore job submit --working-dir` do that)"
            )
        try:
            env = renv.validate(runtime_env)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"runtime_env is invalid: {exc}") from None
        env.pop("excludes", None)
        for uri in _uris(env):
            if await self.kv.get(PKG_NAMESPACE, uri) is None:
                raise ValueError(f"package {uri} was not uploaded: PUT it to /api/packages/ first")
        return env

    def _request_stop(self, sup: _Supervisor, grace: float) -> None:
        sup.stopping = True
        if sup.proc is None:
            if sup.prepare is not None and not sup.prepare.done():
                sup.prepare.cancel()
            return  # not started: the supervisor stops it before (or as soon as) it runs
        asyncio.ensure_future(self._terminate(sup, grace))

    async def _terminate(self, sup: _Supervisor, grace: float) -> None:
        proc = sup.proc
        assert proc is not None
        sup.tree = _process_tree(proc.pid, sup.tree)
        _signal_all(sup.tree, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except TimeoutError:
            logger.info("job %s did not exit %.1f s after SIGTERM; killing it", sup.info.submission_id, grace)
        sup.tree = _process_tree(proc.pid, sup.tree)
        _signal_all(sup.tree, signal.SIGKILL)

    async def _supervise(self, sup: _Supervisor, resources: dict[str, float]) -> None:
        sid = sup.info.submission_id
        lease_id = f"job-{sid}"
        try:
            if not sup.stopping:
                # Waiting for resources and setting the env up: a stop cancels this part.
                sup.prepare = asyncio.ensure_future(self._prepare(sup, resources, lease_id))
                try:
                    prepared = await sup.prepare
                except asyncio.CancelledError:
                    if not sup.prepare.cancelled():
                        raise
                    prepared = None
            if sup.stopping and not sup.info.status.is_terminal():
                if sup.shutting_down:
                    await self._apply(sup, state.Failed("the cluster's head shut down before the job started",
                                                        state.LOST_ERROR, _now_ms()))
                else:
                    await self._apply(sup, state.StoppedBeforeStart(_now_ms()))
                return
            if sup.stopping or prepared is None:
                return  # stopped or failed before it started; recorded
            await self._run_driver(sup, *prepared)
        except Exception as exc:  # noqa: BLE001 - a supervisor bug must still end the job
            logger.exception("supervisor of job %s failed", sid)
            if not sup.info.status.is_terminal():
                await self._apply(sup, state.Failed(f"the job's supervisor failed: {exc!r}", state.LOST_ERROR, _now_ms()))
        finally:
            if resources and self.leaser is not None:
                try:
                    await self.leaser.release(lease_id)
                except Exception:  # noqa: BLE001
                    logger.exception("could not release the resources of job %s", sid)
            if sup.proc is not None and self._on_driver_exit is not None:
                try:
                    await self._on_driver_exit(sid)
                except Exception:  # noqa: BLE001
                    logger.exception("could not mark the core job of %s finished", sid)

    async def _prepare(
        self, sup: _Supervisor, resources: dict[str, float], lease_id: str
    ) -> tuple[renv.RuntimeEnvContext, list[int]] | None:
        """Hold the resources and set the env up; None (and the job FAILED) if either cannot be."""
        gpu_ids: list[int] = []
        if resources:
            assert self.leaser is not None
            try:
                gpu_ids = await self.leaser.acquire(lease_id, resources)
            except ValueError as exc:
                await self._apply(sup, state.Failed(
                    f"the head can never provide the entrypoint resources {resources}: {exc}",
                    state.RESOURCES_ERROR, _now_ms()))
                return None
        try:
            ctx = await self._setup_env(sup.info.runtime_env)
        except Exception as exc:  # noqa: BLE001 - becomes the job's message
            await self._apply(sup, state.Failed(f"runtime_env setup failed: {exc}", state.SETUP_ERROR, _now_ms()))
            return None
        return ctx, gpu_ids

    async def _setup_env(self, runtime_env: dict[str, Any]) -> renv.RuntimeEnvContext:
        if not runtime_env:
            return renv.RuntimeEnvContext()
        blobs: dict[str, bytes] = {}
        for uri in _uris(runtime_env):
            blob = await self.kv.get(PKG_NAMESPACE, uri)
            if blob is None:
                raise FileNotFoundError(f"package {uri} is not in the cluster's store any more")
            blobs[uri] = blob
        cache = os.path.join(self.session_dir, "runtime_resources")
        return await asyncio.to_thread(renv.setup, runtime_env, blobs.__getitem__, cache)

    def _driver_env(self, info: JobInfo, ctx: renv.RuntimeEnvContext, gpu_ids: list[int]) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("RAY_ADDRESS", JOB_RUNTIME_ENV_ENV, "DISTCORE_AUTH_TOKEN"):
            env.pop(name, None)
        env["DISTCORE_ADDRESS"] = self.gcs_address
        if self.token:
            env["DISTCORE_AUTH_TOKEN"] = self.token
        env[SUBMISSION_ID_ENV] = info.submission_id
        env.setdefault("PYTHONUNBUFFERED", "1")
        # `python` in the entrypoint is the interpreter the cluster runs (an unactivated venv included).
        bin_dir = os.path.dirname(sys.executable)
        if bin_dir and bin_dir not in env.get("PATH", "").split(os.pathsep):
            env["PATH"] = os.pathsep.join([bin_dir] + ([env["PATH"]] if env.get("PATH") else []))
        if info.runtime_env:
            env[JOB_RUNTIME_ENV_ENV] = json.dumps(info.runtime_env)
        paths = ([ctx.working_dir] if ctx.working_dir else []) + ctx.py_paths
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if info.entrypoint_num_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
        env.update(ctx.expanded_env_vars(env))
        return env

    async def _run_driver(self, sup: _Supervisor, ctx: renv.RuntimeEnvContext, gpu_ids: list[int]) -> None:
        info = sup.info
        path = self.log_path(info.submission_id)
        try:
            with open(path, "ab") as log:
                proc = await asyncio.create_subprocess_shell(
                    info.entrypoint, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                    cwd=ctx.working_dir or None, env=self._driver_env(info, ctx, gpu_ids),
                )
        except OSError as exc:
            await self._apply(sup, state.Failed(f"could not start the entrypoint: {exc}", state.START_ERROR, _now_ms()))
            return
        sup.proc = proc
        await self._apply(sup, state.Started(proc.pid, _now_ms()))
        logger.info("job %s started: pid %d, %r", info.submission_id, proc.pid, info.entrypoint)
        if sup.stopping:  # a stop arrived while it was spawning
            asyncio.ensure_future(self._terminate(sup, self.stop_grace_s))
        code = await asyncio.shield(proc.wait())
        if sup.stopping:
            _signal_all(sup.tree, signal.SIGKILL)  # stragglers of a stopped tree
        if sup.shutting_down:
            await self._apply(sup, state.Failed(
                f"the cluster's head shut down while the job ran; its driver was stopped (exit code {code})",
                state.LOST_ERROR, _now_ms(), exit_code=code))
            return
        tail = _log_tail(path) if code != 0 and not sup.stopping else ""
        await self._apply(sup, state.Exited(code, _now_ms(), stopping=sup.stopping, log_tail=tail))
        logger.info("job %s is %s (exit code %d)", info.submission_id, sup.info.status.value, code)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _uris(env: dict[str, Any]) -> list[str]:
    items = _as_list(env.get("working_dir")) + _as_list(env.get("py_modules"))
    return [u for u in items if isinstance(u, str) and u.startswith(renv.URI_SCHEME)]


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(_READ_CHUNK)
    except FileNotFoundError:
        return b""


def _log_tail(path: str, limit: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _process_tree(pid: int, known: list[psutil.Process]) -> list[psutil.Process]:
    """The process and its descendants, plus those seen before (they may have been re-parented)."""
    found = list(known)
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            if proc not in found:
                found.append(proc)
    except psutil.Error:
        pass
    return found


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the pid was not reused
        except psutil.Error:
            pass
