"""Fixtures for the cross-package integration tests: real multi-process clusters."""

from __future__ import annotations

import pytest

from distcore._private.testing import assert_no_leaks


@pytest.fixture
def isolated_tmp(tmp_path, monkeypatch):
    """Sessions, node records and tokens of this test live under tmp_path."""
    monkeypatch.setenv("DISTCORE_TMPDIR", str(tmp_path / "distcore"))
    monkeypatch.delenv("DISTCORE_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("DISTCORE_ADDRESS", raising=False)
    return tmp_path


@pytest.fixture
def cluster(isolated_tmp):
    """A ``Cluster`` torn down (and checked for leaks) after the test."""
    from distcore.cluster_utils import Cluster

    c = Cluster(node_dead_timeout_s=5.0)
    yield c
    c.shutdown()
    assert_no_leaks({c._session_name})
