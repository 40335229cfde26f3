"""Fixtures for tune's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """2 CPUs: trials pack it."""
    return {"num_cpus": 2, "object_store_memory": 600 * 1024 * 1024}
