"""Fixtures for distcore-data tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin),
a module-scoped ``cluster`` and a fresh DataContext per test."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """2 CPUs like the small machines users run on."""
    return {"num_cpus": 2, "object_store_memory": 512 * 1024 * 1024}


@pytest.fixture(scope="module")
def cluster(cluster_manager, shared_cluster_shape):
    """The shared cluster for a whole module (do not change its shape)."""
    return cluster_manager.ensure(**shared_cluster_shape)


@pytest.fixture(autouse=True)
def _fresh_data_context():
    """Each test starts with default DataContext settings."""
    from distcore.data.context import DataContext

    saved = DataContext.get_current()
    DataContext._set_current(DataContext())
    yield
    DataContext._set_current(saved)
