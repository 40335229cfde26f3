"""Fixtures for distcore-data tests: one shared 2-CPU cluster, fresh clusters on demand, leak checks."""

from __future__ import annotations

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

# The shared shape: 2 CPUs like the small machines users run on.
SHARED = {"num_cpus": 2, "object_store_memory": 512 * 1024 * 1024}

_manager = ClusterManager()


@pytest.fixture(scope="module")
def cluster():
    """The shared cluster for a whole module (do not change its shape)."""
    return _manager.ensure(**SHARED)


@pytest.fixture
def shared_cluster():
    """The shared cluster, re-checked before each test (restarted if a test stopped it)."""
    return _manager.ensure(**SHARED)


@pytest.fixture
def start_cluster():
    """Start a dedicated cluster: ``start_cluster(num_cpus=1, ...)``; the shared one comes back after."""

    def start(**kwargs):
        return _manager.ensure(**kwargs)

    yield start
    _manager.stop()


@pytest.fixture(autouse=True)
def _fresh_data_context():
    """Each test starts with default DataContext settings."""
    from distcore.data.context import DataContext

    saved = DataContext.get_current()
    DataContext._set_current(DataContext())
    yield
    DataContext._set_current(saved)


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    _manager.stop()
    assert_no_leaks(_manager.sessions)
