"""The cluster fixtures every package's tests share (a pytest plugin).

A package's ``tests/conftest.py`` loads it and names its shared cluster shape::

    import pytest

    pytest_plugins = ["distcore._private.testing.pytest_plugin"]

    @pytest.fixture(scope="session")
    def shared_cluster_shape():
        return {"num_cpus": 4, "object_store_memory": 300 * 1024 * 1024}

Fixtures:

- ``shared_cluster`` / ``cluster`` (per test): the shared shape, started if no
  cluster of that shape runs (a test before may have stopped it or started
  another), else reused. A conftest may override ``cluster`` with a wider scope.
- ``start_cluster`` (per test): ``start_cluster(num_cpus=1, ...)`` starts a
  dedicated cluster of any shape; it is stopped after the test.
- ``cluster_manager`` (session): the one :class:`ClusterManager` of this test
  process (``at_exit(hook)`` runs a hook before the last stop).
- at the end of the session the cluster stops and :func:`assert_no_leaks`
  checks that no process or shared-memory segment of any session it started
  remains.

One manager serves every package of a run, so a root ``pytest`` that runs
several packages' tests one after the other switches shapes cleanly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from distcore._private.testing import ClusterManager, assert_no_leaks

MANAGER = ClusterManager()

# The shape when a conftest names none: 2 CPUs, like the small machines users run on.
DEFAULT_SHAPE: dict[str, Any] = {"num_cpus": 2}


@pytest.fixture(scope="session")
def shared_cluster_shape() -> dict[str, Any]:
    """The ``distcore.init`` arguments of the shared cluster; override it in a conftest."""
    return dict(DEFAULT_SHAPE)


@pytest.fixture(scope="session")
def cluster_manager() -> ClusterManager:
    """The test process's cluster manager."""
    return MANAGER


@pytest.fixture
def shared_cluster(shared_cluster_shape: dict[str, Any]) -> dict[str, Any]:
    """The shared cluster (do not change its shape), re-checked before each test."""
    return MANAGER.ensure(**shared_cluster_shape)


@pytest.fixture
def cluster(shared_cluster_shape: dict[str, Any]) -> dict[str, Any]:
    """The shared cluster under the name most packages use."""
    return MANAGER.ensure(**shared_cluster_shape)


@pytest.fixture
def start_cluster() -> Iterator[Callable[..., dict[str, Any]]]:
    """Start a dedicated cluster: ``start_cluster(num_cpus=1, ...)``; stopped after the test."""

    def start(**kwargs: Any) -> dict[str, Any]:
        return MANAGER.ensure(**kwargs)

    yield start
    MANAGER.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_at_exit() -> Iterator[None]:
    yield
    MANAGER.close()
    assert_no_leaks(MANAGER.sessions)
