"""Fixtures for serve's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)
and one Serve instance shared by the whole session."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter

import httpx
import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]

_state: dict = {}


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """A 2-CPU laptop: replicas' default CPU share must let several deployments fit."""
    return {"num_cpus": 2, "resources": {"serve_test": 1}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_instance(cluster_manager, shared_cluster_shape):
    """A running Serve (controller + proxy); yields the proxy's base URL."""
    from distcore import serve

    cluster_manager.ensure(**shared_cluster_shape)
    if "url" not in _state:
        port = free_port()
        serve.start(http_options={"port": port})
        _state["url"] = f"http://127.0.0.1:{port}"
        _state["port"] = port
    yield _state["url"]


@pytest.fixture(scope="session", autouse=True)
def _serve_down_at_exit(cluster_manager):
    """Serve shuts down before the cluster stops at the end of the session (and its leak check)."""
    from distcore import serve

    cluster_manager.at_exit(serve.shutdown)


@pytest.fixture
def serve_port(serve_instance) -> int:
    """The shared proxy's port (a test that restarts Serve must restart it on this port)."""
    return _state["port"]


class Load:
    """Runs ``concurrency`` clients hitting ``url`` on a background thread until ``stop()``."""

    def __init__(self, url: str, concurrency: int = 4, params: dict | None = None) -> None:
        self.url = url
        self.concurrency = concurrency
        self.params = params or {}
        self.codes: Counter[int] = Counter()
        self.errors: list[str] = []
        self.bodies: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                r = await client.get(self.url, params=self.params)
                self.codes[r.status_code] += 1
                if r.status_code == 200:
                    self.bodies[r.text] += 1
                else:
                    self.errors.append(f"{r.status_code}: {r.text[:300]}")
            except Exception as exc:  # a dropped connection counts as a failure
                self.codes[-1] += 1
                self.errors.append(repr(exc))

    async def _main(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.concurrency)))

    def stop(self) -> Counter[int]:
        self._stop.set()
        self._thread.join(60)
        return self.codes

    def total(self) -> int:
        return sum(self.codes.values())


@pytest.fixture
def load_generator():
    """``load_generator(url, concurrency)`` -> a started :class:`Load`; stopped at teardown."""
    started: list[Load] = []

    def make(url: str, concurrency: int = 4, params: dict | None = None) -> Load:
        load = Load(url, concurrency, params).start()
        started.append(load)
        return load

    yield make
    for load in started:
        load.stop()
