"""A process of the cluster (driver or worker, gRPC threads busy) can fork children that run.

gRPC's fork handlers restarted its pollers in a forked child, which then could abort before it ran
a line (SIGABRT, "epoll_wait error: Bad file descriptor"): a third of such starts did under load.
distcore turns those handlers off; these tests fork while calls are in flight.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

import distcore

pytestmark = pytest.mark.integration

_STARTS = 40


def _noop_preexec() -> None:
    os.umask(0o022)   # any preexec_fn makes subprocess fork() instead of vfork()


def _start_children(n: int) -> list[int]:
    """Start ``n`` short-lived Python children with a preexec_fn; their exit codes."""
    codes = []
    for _ in range(n):
        proc = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True,
                              preexec_fn=_noop_preexec, timeout=30)
        codes.append(proc.returncode if proc.stdout.strip() == "ok" else -1000 + proc.returncode)
    return codes


def test_the_driver_forks_children_while_its_calls_are_in_flight(shared_cluster) -> None:
    @distcore.remote
    def one() -> int:
        return 1

    stop = threading.Event()
    done = []

    def load() -> None:
        while not stop.is_set():
            done.append(sum(distcore.get([one.remote() for _ in range(20)], timeout=30)))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        codes = _start_children(_STARTS)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert done and set(done) == {20}
    assert codes == [0] * _STARTS


def test_a_worker_forks_children_while_it_serves_calls(shared_cluster) -> None:
    @distcore.remote(max_concurrency=2)
    class Forker:
        def start_children(self, n: int) -> list[int]:
            return _start_children(n)

        def ping(self) -> int:
            return 1

    actor = Forker.remote()
    distcore.get(actor.ping.remote(), timeout=60)
    codes_ref = actor.start_children.remote(_STARTS)
    pings = 0
    while not distcore.wait([codes_ref], timeout=0)[0]:
        pings += sum(distcore.get([actor.ping.remote() for _ in range(10)], timeout=30))
    assert pings > 0
    assert distcore.get(codes_ref, timeout=60) == [0] * _STARTS
    distcore.kill(actor)
