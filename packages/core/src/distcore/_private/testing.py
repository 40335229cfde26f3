"""Helpers for tests that run real clusters (used by every package's tests).

``ClusterManager`` keeps at most one cluster per test process: tests that can
share one ask for the shared shape, tests that need their own get a fresh one,
and teardown checks that nothing leaked (processes, shared-memory segments).
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

import distcore


class ClusterManager:
    def __init__(self) -> None:
        self.current: dict[str, Any] | None = None

    def ensure(self, **kwargs: Any) -> dict[str, Any]:
        """A running cluster started with exactly ``kwargs`` (reused if it is)."""
        if self.current == kwargs and distcore.is_initialized():
            return distcore.init(ignore_reinit_error=True)
        self.stop()
        ctx = distcore.init(**kwargs)
        self.current = dict(kwargs)
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


def session_segments() -> list[str]:
    try:
        return [n for n in os.listdir("/dev/shm") if n.startswith("dc_")]
    except OSError:
        return []


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05, message: str = "") -> None:
    """Poll ``predicate`` until it is true; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout} s")


def assert_no_leaks(timeout: float = 10.0) -> None:
    """No child processes and no shared-memory segments of ours remain."""
    wait_for(lambda: not [c for c in child_processes() if c.status() != psutil.STATUS_ZOMBIE], timeout,
             message=f"leaked processes: {[c.cmdline() for c in child_processes()]}")
    wait_for(lambda: not session_segments(), timeout, message=f"leaked segments: {session_segments()}")
