"""Fixtures for rllib's tests: one small local cluster shared by the tests that need actors."""

from __future__ import annotations

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

_manager = ClusterManager()


@pytest.fixture
def cluster():
    """A 4-CPU local cluster (more CPUs than cores on purpose: runners + learners fit)."""
    return _manager.ensure(num_cpus=4, object_store_memory=200 * 1024 * 1024)


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit():
    yield
    _manager.stop()
    assert_no_leaks(_manager.sessions)
