"""Fixtures for core's tests: a shared cluster, fresh clusters, leak checks."""

from __future__ import annotations

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

# The shared shape: 4 CPUs (more than the machine's 2 cores on purpose: tests
# then exercise queueing and concurrency), 2 fake GPUs and a custom resource.
SHARED = {"num_cpus": 4, "num_gpus": 2, "resources": {"custom": 4}, "object_store_memory": 400 * 1024 * 1024}

_manager = ClusterManager()


@pytest.fixture
def shared_cluster():
    """A cluster shared with other tests; do not change its shape."""
    return _manager.ensure(**SHARED)


@pytest.fixture
def start_cluster():
    """Start a dedicated cluster: ``start_cluster(num_cpus=1, ...)``."""

    def start(**kwargs):
        return _manager.ensure(**kwargs)

    yield start
    _manager.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    _manager.stop()
    assert_no_leaks(_manager.sessions)
