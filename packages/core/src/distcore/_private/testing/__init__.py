"""Helpers for tests that run real clusters (used by every package's tests).

``ClusterManager`` keeps at most one cluster per test process: tests that can
share one ask for the shared shape, tests that need their own get a fresh one,
and teardown checks that nothing leaked (processes, shared-memory segments).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

import distcore


class ClusterManager:
    """At most one local cluster for this test process, restarted when a test asks for another shape."""

    def __init__(self) -> None:
        self.current: dict[str, Any] | None = None
        self.sessions: set[str] = set()
        self._exit_hooks: list[Callable[[], Any]] = []

    def at_exit(self, hook: Callable[[], Any]) -> None:
        """Run ``hook()`` in :meth:`close`, before the cluster stops (e.g. ``serve.shutdown``); once each."""
        if hook not in self._exit_hooks:
            self._exit_hooks.append(hook)

    def close(self) -> None:
        """Run the exit hooks (newest first; an error in one is ignored) and stop the cluster."""
        while self._exit_hooks:
            hook = self._exit_hooks.pop()
            if distcore.is_initialized():
                try:
                    hook()
                except Exception:  # noqa: BLE001 - teardown goes on; the leak check reports what stays
                    pass
        self.stop()

    def ensure(self, **kwargs: Any) -> dict[str, Any]:
        """A running cluster started with exactly ``kwargs`` (reused if it is)."""
        if self.current == kwargs and distcore.is_initialized():
            return distcore.init(ignore_reinit_error=True)
        self.stop()
        ctx = distcore.init(**kwargs)
        self.current = dict(kwargs)
        self.sessions.add(os.path.basename(ctx["session_dir"]).removeprefix("session_"))
        return ctx

    def stop(self) -> None:
        if distcore.is_initialized():
            distcore.shutdown()
        self.current = None


def child_processes() -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(os.getpid()).children(recursive=True) if c.is_running()]
    except psutil.Error:
        return []


def session_segments(sessions: set[str] | None = None) -> list[str]:
    """Shared-memory segments of ``sessions`` (all of distcore's when None)."""
    try:
        names = [n for n in os.listdir("/dev/shm") if n.startswith("dc_")]
    except OSError:
        return []
    if sessions is None:
        return names
    return [n for n in names if any(n.startswith(f"dc_{s}-") for s in sessions)]


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05, message: str = "") -> None:
    """Poll ``predicate`` until it is true; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout} s")


def _live_children() -> list[psutil.Process]:
    out = []
    for c in child_processes():
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.Error:
            pass
    return out


def assert_no_leaks(sessions: set[str] | None = None, timeout: float = 10.0) -> None:
    """No child processes and no shared-memory segments of ``sessions`` remain."""
    wait_for(lambda: not _live_children(), timeout,
             message=f"leaked processes: {[c.pid for c in _live_children()]}")
    wait_for(lambda: not session_segments(sessions), timeout,
             message=f"leaked segments: {session_segments(sessions)}")


def object_store_stats() -> dict[str, Any]:
    """The object store counters of the driver's node (``used``, ``num_objects``, ``spilled_bytes``...)."""
    from distcore._private import worker_state

    core = worker_state.core_worker()
    if core is None:
        raise RuntimeError("object_store_stats() needs a connected driver: call distcore.init() first")
    return dict(core.run(core.node().call("NodeManager", "GetNodeStats", None), timeout=30).object_store)


class StorePeak:
    """``with StorePeak() as peak: ...``: ``peak.peak`` is the most object-store bytes in use above
    where they were on entry, sampled every 10 ms on a thread while the block runs."""

    def __init__(self) -> None:
        import threading

        self.base, self.peak = object_store_stats()["used"], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, object_store_stats()["used"] - self.base)
            time.sleep(0.01)

    def __enter__(self) -> StorePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def mapped_file_of(address: int) -> str | None:
    """The file backing this process's memory mapping at ``address``, or None (anonymous memory).

    Proves zero-copy reads: an array read from the object store lives in a
    mapping of its ``/dev/shm`` segment, not in a private copy.
    """
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return parts[5].strip() if len(parts) > 5 and parts[5].strip() else None
    return None


def available(*names: str) -> dict[str, float]:
    """The cluster's available quantity of each of ``names`` (0 when absent)."""
    avail = distcore.available_resources()
    return {n: avail.get(n, 0.0) for n in names}


def wait_available(expected: dict[str, float], timeout: float = 15.0) -> None:
    """Wait until the available resources named in ``expected`` equal it."""
    wait_for(
        lambda: available(*expected) == expected, timeout,
        message=f"available resources did not become {expected}: {distcore.available_resources()}",
    )


def restart_head_when_it_exits(cluster: Any, marker: str, errors: list, timeout: float = 40.0) -> threading.Thread:
    """In a thread: wait until ``cluster``'s head, armed to exit after a write, has written
    ``marker`` and exited, then restart it on the same address; a failure lands in ``errors``."""
    head = cluster.head._process

    def run() -> None:
        try:
            deadline = time.monotonic() + timeout
            while not (os.path.exists(marker) and head.proc.poll() is not None):
                if time.monotonic() > deadline:
                    raise AssertionError("the armed head never exited after its write")
                time.sleep(0.05)
            cluster.restart_head(allow_graceful=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="restart-head", daemon=True)
    thread.start()
    return thread
