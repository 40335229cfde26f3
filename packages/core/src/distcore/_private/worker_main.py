"""Entry point of a worker process (started by a node manager).

Configuration comes from environment variables set by the worker pool. The
worker starts its core worker, registers with its node manager and then runs
tasks on the main thread until told to exit or its node manager goes away.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import signal
import sys
import threading
import time

from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.core_worker.core_worker import CoreWorker
from distcore._private.core_worker.executor import Executor


class _PrefixedStream(io.TextIOBase):
    """Prefix each line written with ``(name pid=N)``, as the driver shows it."""

    def __init__(self, raw, name_of) -> None:
        self._raw = raw
        self._name_of = name_of
        self._pid = os.getpid()
        self._at_line_start = True
        self._lock = threading.Lock()
        self._buffer: _PrefixedBytes | None = None

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            prefix = f"({self._name_of() or 'worker'} pid={self._pid}) "
            out = []
            for piece in text.splitlines(keepends=True):
                if self._at_line_start:
                    out.append(prefix)
                out.append(piece)
                self._at_line_start = piece.endswith("\n")
            self._raw.write("".join(out))
            self._raw.flush()
        return len(text)

    def flush(self) -> None:
        self._raw.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return getattr(self._raw, "errors", None) or "strict"

    @property
    def buffer(self) -> _PrefixedBytes:  # type: ignore[override]
        """Bytes written here are decoded and prefixed like text (``sys.stdout.buffer.write``)."""
        if self._buffer is None:
            self._buffer = _PrefixedBytes(self)
        return self._buffer

    def fileno(self) -> int:
        return self._raw.fileno()


class _PrefixedBytes(io.BufferedIOBase):
    """The binary side of a :class:`_PrefixedStream`."""

    def __init__(self, text: _PrefixedStream) -> None:
        self._text = text
        self._decoder = codecs.getincrementaldecoder(text.encoding)("replace")

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        self._text.write(self._decoder.decode(data))
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._text.flush()

    def fileno(self) -> int:
        return self._text.fileno()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _exit_after_flush(core: CoreWorker) -> None:
    """SIGTERM (an idle worker retired, a graceful kill): ship the buffered task events, then exit.

    Without this the last second of task ends recorded here would be lost and
    their rows would stay RUNNING in the state API.
    """

    def run() -> None:
        try:
            core.run(core.task_events.flush(timeout=4.0), timeout=10.0)
        finally:
            os._exit(0)

    threading.Thread(target=run, name="distcore-exit", daemon=True).start()


def main() -> None:
    env = os.environ
    core = CoreWorker(
        is_driver=False,
        gcs_address=env["DISTCORE_GCS_ADDRESS"],
        node_address=env["DISTCORE_NODE_ADDRESS"],
        node_id=env["DISTCORE_NODE_ID"],
        token=env.get("DISTCORE_AUTH_TOKEN"),
        worker_id=env["DISTCORE_WORKER_ID"],
        session_name=env.get("DISTCORE_SESSION_NAME", ""),
        session_dir=env.get("DISTCORE_SESSION_DIR", ""),
        # Listen on, and advertise, the node's own address: other hosts push tasks here.
        ip=env["DISTCORE_NODE_ADDRESS"].rsplit(":", 1)[0],
    )
    core.start()
    executor = Executor(core)
    core.executor = executor
    worker_state.set_core_worker(core)
    sys.stdout = _PrefixedStream(sys.stdout, lambda: executor.current_name)
    sys.stderr = _PrefixedStream(sys.stderr, lambda: executor.current_name)
    runtime_env = env.get("DISTCORE_RUNTIME_ENV")
    setup_error = None
    if runtime_env:
        env_dict = json.loads(runtime_env)
        setup_error = _apply_runtime_env(core, env_dict)
        # Tasks and actors created here inherit this environment (the job's
        # merged with the task's), as in Ray.
        core.job_runtime_env = env_dict
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: _exit_after_flush(core))
    if setup_error is not None:
        print(setup_error, file=sys.stderr)
        os._exit(3)
    core.run(core.node().call(
        "NodeManager", "RegisterWorker",
        p.RegisterWorker(core.worker_id, os.getpid(), core.address, env.get("DISTCORE_ENV_KEY", "")),
    ))
    executor.run_forever()
    os._exit(0)


def _apply_runtime_env(core: CoreWorker, runtime_env: dict) -> str | None:
    from distcore._private import runtime_env as renv

    def fetch(uri: str) -> bytes:
        blob = core.run(core.gcs().call("Gcs", "KvGet", p.KvKey("pkg", uri)))
        if blob is None:
            raise FileNotFoundError(f"package {uri} is not in the cluster's store")
        return blob

    try:
        cache = os.path.join(core.session_dir or "/tmp", "runtime_resources")
        renv.setup(runtime_env, fetch, cache).apply()
    except Exception as exc:  # noqa: BLE001
        return f"runtime_env setup failed: {exc}"
    return None


if __name__ == "__main__":
    main()
