"""Fixtures for serve's tests: one cluster and one Serve instance shared by the whole session."""

from __future__ import annotations

import socket

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

# A 2-CPU laptop: replicas' default CPU share must let several deployments fit.
SHAPE = {"num_cpus": 2, "resources": {"serve_test": 1}}

_manager = ClusterManager()
_state: dict = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve_instance():
    """A running Serve (controller + proxy); yields the proxy's base URL."""
    from distcore import serve

    _manager.ensure(**SHAPE)
    if "url" not in _state:
        port = free_port()
        serve.start(http_options={"port": port})
        _state["url"] = f"http://127.0.0.1:{port}"
        _state["port"] = port
    yield _state["url"]


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    import distcore
    from distcore import serve

    if distcore.is_initialized():
        try:
            serve.shutdown()
        except Exception:
            pass
    _manager.stop()
    assert_no_leaks(_manager.sessions)
