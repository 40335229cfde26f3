"""Fixtures for tune's tests: one shared local cluster, leak checks at exit."""

from __future__ import annotations

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

SHARED = {"num_cpus": 2, "object_store_memory": 600 * 1024 * 1024}

_manager = ClusterManager()


@pytest.fixture
def cluster():
    """The shared 2-CPU cluster (trials pack it)."""
    return _manager.ensure(**SHARED)


@pytest.fixture
def start_cluster():
    def start(**kwargs):
        return _manager.ensure(**kwargs)

    yield start


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    _manager.stop()
    assert_no_leaks(_manager.sessions)
