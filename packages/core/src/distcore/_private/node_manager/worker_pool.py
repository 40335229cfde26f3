"""The worker pool: start worker processes, hand out idle ones, notice deaths.

Workers are keyed by (job id, runtime-env key). Prestarted workers have no
job yet and are bound to the first job they serve, so a worker's output goes
to that job's driver only.

The pool keeps ``warm_target`` such unbound workers idle or starting (the
prestart count: the node's CPUs by default). When one dies, a replacement
starts at once (:meth:`WorkerPool.top_up`); when one is claimed (a lease, an
actor), ``TOP_UP_DELAY_S`` later, so that the replacement's start (a fork and
exec on this loop, then a burst of CPU) does not delay the claimed worker's
first task. The next actor or task then finds a process already running
instead of waiting a second or two for one to start.

A worker's exit is noticed through a pidfd on the event loop (no periodic
wake-ups on an idle node, the death handled at once); where the kernel has no
pidfd_open, a 20 Hz poll does it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from distcore._private import protocol as p
from distcore._private.ids import new_worker_id
from distcore._private.rpc import ClientPool, RpcError

logger = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 60.0
# A claimed warm worker is replaced this much later (see the module's doc): the actor or task it
# was claimed for starts 6-10 ms sooner (one-node cluster, 2 vCPUs, create + first call 19 -> 13 ms)
TOP_UP_DELAY_S = 0.05
EXITED_LOG_GRACE_S = 5.0
"""How long an exited worker's log is still streamed to its driver."""


@dataclass
class WorkerProc:
    worker_id: str
    proc: subprocess.Popen
    env_key: str
    job_id: str = ""
    address: p.Address | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    lease_id: str | None = None
    actor_id: str | None = None
    log_path: str = ""
    start_time: float = field(default_factory=time.time)
    killed_reason: str = ""
    pidfd: int | None = None  # readable once the process exits (Linux 5.3+), see WorkerPool._watch_exit

    @property
    def pid(self) -> int:
        return self.proc.pid


class WorkerPool:
    def __init__(
        self,
        *,
        node_id: str,
        node_address: str,
        gcs_address: str,
        session_dir: str,
        session_name: str,
        token: str | None,
        on_death: Callable[[WorkerProc, int | None], Awaitable[None]],
        soft_limit: int,
        warm_target: int = 0,
    ) -> None:
        self.node_id = node_id
        self.node_address = node_address
        self.gcs_address = gcs_address
        self.session_dir = session_dir
        self.session_name = session_name
        self.token = token
        self.on_death = on_death
        self.soft_limit = max(1, soft_limit)
        self.warm_target = max(0, warm_target)
        self._closed = False
        self.workers: dict[str, WorkerProc] = {}
        self.idle: list[WorkerProc] = []
        self.exited: deque[tuple[float, WorkerProc]] = deque(maxlen=1000)  # (when, worker), oldest first
        self._log_dir = os.path.join(session_dir, "logs")
        os.makedirs(self._log_dir, exist_ok=True)
        self._monitor: asyncio.Task | None = None
        self._clients = ClientPool(token)
        self._retiring = False

    def start_monitor(self) -> None:
        self._monitor = asyncio.ensure_future(self._watch())

    # ------------------------------------------------------------ processes

    def start_worker(self, env_key: str = "", runtime_env: dict | None = None, job_id: str = "") -> WorkerProc:
        worker_id = new_worker_id()
        log_path = os.path.join(self._log_dir, f"worker-{worker_id[:12]}.log")
        env = dict(os.environ)
        env.update(
            DISTCORE_NODE_ADDRESS=self.node_address,
            DISTCORE_GCS_ADDRESS=self.gcs_address,
            DISTCORE_NODE_ID=self.node_id,
            DISTCORE_WORKER_ID=worker_id,
            DISTCORE_SESSION_DIR=self.session_dir,
            DISTCORE_SESSION_NAME=self.session_name,
            DISTCORE_ENV_KEY=env_key,
            PYTHONUNBUFFERED="1",
        )
        if self.token:
            env["DISTCORE_AUTH_TOKEN"] = self.token
        if runtime_env:
            import json

            env["DISTCORE_RUNTIME_ENV"] = json.dumps(runtime_env)
        log = open(log_path, "ab", buffering=0)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "distcore._private.worker_main"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        worker = WorkerProc(worker_id, proc, env_key, job_id=job_id, log_path=log_path)
        self.workers[worker_id] = worker
        self._watch_exit(worker)
        return worker

    def _watch_exit(self, worker: WorkerProc) -> None:
        """Have the event loop call :meth:`_exited` when the process ends (else ``_watch`` polls it)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return
        try:
            loop = asyncio.get_running_loop()
            fd = pidfd_open(worker.proc.pid)
        except (RuntimeError, OSError):
            return
        worker.pidfd = fd
        loop.add_reader(fd, self._pidfd_ready, worker)

    def _forget_pidfd(self, worker: WorkerProc) -> None:
        fd, worker.pidfd = worker.pidfd, None
        if fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(fd)
            except RuntimeError:
                pass
            os.close(fd)

    def _pidfd_ready(self, worker: WorkerProc) -> None:
        self._forget_pidfd(worker)
        code = worker.proc.poll()
        if code is not None:  # (None: not reapable yet; _watch's once-a-second poll takes it)
            asyncio.ensure_future(self._exited(worker, code))

    def prestart(self, count: int) -> None:
        for _ in range(count):
            self.idle.append(self.start_worker())

    def top_up(self) -> int:
        """Start unbound workers until ``warm_target`` of them are idle or starting; return how many started.

        Bounded by the idle limit (``2 * soft_limit`` idle workers), past which
        idle workers are retired anyway.
        """
        if self._closed or self.warm_target <= 0:
            return 0
        unbound = sum(1 for w in self.idle if not w.job_id and not w.env_key)
        count = min(self.warm_target - unbound, self.soft_limit * 2 - len(self.idle))
        if count <= 0:
            return 0
        self.prestart(count)
        return count

    def on_registered(self, req: p.RegisterWorker) -> WorkerProc | None:
        worker = self.workers.get(req.worker_id)
        if worker is None:
            return None
        worker.address = req.address
        worker.registered.set()
        return worker

    async def pop(self, job_id: str, env_key: str, runtime_env: dict | None) -> WorkerProc:
        """An idle worker for this job and environment, starting one if needed."""
        worker = self._take_idle(job_id, env_key)
        if worker is None:
            worker = self.start_worker(env_key, runtime_env, job_id)
        unbound = not worker.job_id
        worker.job_id = job_id
        if unbound:
            # a warm worker for the next claim starts soon, not while this claim's worker is set to work
            asyncio.get_running_loop().call_later(TOP_UP_DELAY_S, self.top_up)
        try:
            await _wait_registered_or_exit(worker)
        except TimeoutError:
            self.kill(worker, "did not register in time")
            raise RuntimeError(
                f"worker {worker.worker_id[:8]} did not start within {WORKER_START_TIMEOUT_S:.0f} s; "
                f"see its log at {worker.log_path}"
            ) from None
        if worker.proc.poll() is not None:
            raise RuntimeError(
                f"worker {worker.worker_id[:8]} exited while starting: {_tail(worker.log_path)}"
            )
        return worker

    def _take_idle(self, job_id: str, env_key: str) -> WorkerProc | None:
        """An idle worker for ``env_key``: one of this job before an unbound one, and any that has
        registered before one still starting (the caller need not wait for a process start while
        a ready worker sits idle)."""
        for ready in (True, False):
            for want_job in (job_id, ""):
                for i, worker in enumerate(self.idle):
                    if (worker.env_key == env_key and worker.job_id == want_job and worker.proc.poll() is None
                            and (worker.registered.is_set() or not ready)):
                        return self.idle.pop(i)
        return None

    def push_idle(self, worker: WorkerProc) -> None:
        worker.lease_id = None
        if worker.proc.poll() is not None or worker.worker_id not in self.workers:
            return
        self.idle.append(worker)
        # Keep the pool bounded: retire the oldest idle workers past the limit.
        if len(self.idle) > self.soft_limit * 2 and not self._retiring:
            self._retiring = True
            asyncio.ensure_future(self._retire_excess())

    async def _retire_excess(self) -> None:
        """Kill idle workers past the limit, oldest first, but never one that
        owns objects still in use: killing it would lose them (Ray's rule too)."""
        try:
            for worker in list(self.idle):
                if len(self.idle) <= self.soft_limit * 2:
                    break
                owns = False
                if worker.address is not None:
                    try:
                        owns = await self._clients.get(worker.address.target).call(
                            "CoreWorker", "OwnsObjects", None, timeout=5)
                    except (RpcError, TimeoutError):
                        owns = False  # unreachable: nothing to protect
                if not owns and worker in self.idle:  # still idle: it took no task meanwhile
                    # SIGTERM: the worker ships its last task events before it exits (``worker_main``).
                    self.kill(worker, "idle pool above its limit", force=False)
        finally:
            self._retiring = False

    def kill(self, worker: WorkerProc, reason: str, force: bool = True) -> None:
        worker.killed_reason = worker.killed_reason or reason
        if worker in self.idle:
            self.idle.remove(worker)
        if worker.proc.poll() is None:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL if force else signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def job_workers(self, job_id: str) -> list[WorkerProc]:
        return [w for w in self.workers.values() if w.job_id == job_id]

    def log_sources(self, job_id: str) -> list[WorkerProc]:
        """Workers whose output goes to ``job_id``'s driver: the live ones, and
        ones that exited in the last few seconds, so a crashed worker's last
        lines still reach the driver."""
        cutoff = time.monotonic() - EXITED_LOG_GRACE_S
        while self.exited and self.exited[0][0] < cutoff:
            self.exited.popleft()
        return self.job_workers(job_id) + [w for _, w in self.exited if w.job_id == job_id]

    async def _watch(self) -> None:
        """Poll the workers that have no pidfd (20 Hz), and every worker once a second as a safety net."""
        rounds = 0
        while True:
            unwatched = any(w.pidfd is None for w in self.workers.values())
            await asyncio.sleep(0.05 if unwatched else 1.0)
            rounds += 1
            everyone = not unwatched or rounds % 20 == 0
            for worker in [w for w in self.workers.values() if everyone or w.pidfd is None]:
                code = worker.proc.poll()
                if code is not None:
                    self._forget_pidfd(worker)
                    await self._exited(worker, code)

    async def _exited(self, worker: WorkerProc, code: int | None) -> None:
        if self.workers.get(worker.worker_id) is not worker:
            return  # already handled
        del self.workers[worker.worker_id]
        self.exited.append((time.monotonic(), worker))
        if worker in self.idle:
            self.idle.remove(worker)
        try:
            await self.on_death(worker, code)
        except Exception:  # noqa: BLE001
            logger.exception("worker death handler failed")
        self.top_up()  # an idle worker that died is replaced

    def shutdown(self) -> None:
        self._closed = True
        if self._monitor:
            self._monitor.cancel()
        for worker in list(self.workers.values()):
            self._forget_pidfd(worker)
            self.kill(worker, "node shutting down")
        deadline = time.monotonic() + 2.0
        for worker in list(self.workers.values()):
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass


async def _wait_registered_or_exit(worker: WorkerProc) -> None:
    """Wait until the worker registers or exits (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WORKER_START_TIMEOUT_S
    while not worker.registered.is_set():
        if worker.proc.poll() is not None:
            return
        if loop.time() > deadline:
            raise TimeoutError
        try:
            await asyncio.wait_for(worker.registered.wait(), 0.05)
        except TimeoutError:
            pass


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace").strip() or "(no output)"
    except OSError:
        return "(no log)"
