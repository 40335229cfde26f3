"""Fixtures for train's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """4 CPUs (twice the machine's cores) so 4-worker gangs fit; leave it shared."""
    return {"num_cpus": 4, "object_store_memory": 300 * 1024 * 1024}
