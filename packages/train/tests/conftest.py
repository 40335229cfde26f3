"""Fixtures for train's tests: one shared local cluster (4 CPUs) and leak checks."""

from __future__ import annotations

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

# 4 CPUs (twice the machine's cores) so 4-worker gangs fit; leave it shared.
SHARED = {"num_cpus": 4, "object_store_memory": 300 * 1024 * 1024}

_manager = ClusterManager()


@pytest.fixture
def cluster():
    """The shared 4-CPU cluster."""
    return _manager.ensure(**SHARED)


@pytest.fixture
def start_cluster():
    """A dedicated cluster of another shape: ``start_cluster(num_cpus=2)``; stopped afterwards."""

    def start(**kwargs):
        return _manager.ensure(**kwargs)

    yield start
    _manager.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    _manager.stop()
    assert_no_leaks(_manager.sessions)
