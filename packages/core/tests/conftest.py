"""Fixtures for core's tests: the shared cluster fixtures (distcore._private.testing.pytest_plugin)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

pytest_plugins = ["distcore._private.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def shared_cluster_shape():
    """4 CPUs (more than the machine's 2 cores on purpose: tests then exercise queueing and
    concurrency), 2 fake GPUs and a custom resource."""
    return {"num_cpus": 4, "num_gpus": 2, "resources": {"custom": 4}, "object_store_memory": 400 * 1024 * 1024}


@pytest.fixture
def session() -> Iterator[str]:
    """A unique object-store session name for store/segment unit tests; the test must leave none
    of its shared-memory segments behind."""
    from distcore._private.object_store import shm

    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    leftover = shm.list_session_segments(name)
    shm.cleanup_session(name)
    assert leftover == [], f"test left segments behind: {leftover}"
