"""Fixtures for core's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """4 CPUs (more than the machine's 2 cores on purpose: tests then exercise queueing and
    concurrency), 2 fake GPUs and a custom resource."""
    return {"num_cpus": 4, "num_gpus": 2, "resources": {"custom": 4}, "object_store_memory": 400 * 1024 * 1024}
