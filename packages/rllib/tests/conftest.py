"""Fixtures for rllib's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """4 CPUs (more than the machine's cores on purpose: runners + learners fit)."""
    return {"num_cpus": 4, "object_store_memory": 200 * 1024 * 1024}
