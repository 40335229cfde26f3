"""map_batches' batch_size default follows Ray Data 2.x: whole blocks unless a size is asked for."""

from __future__ import annotations

import pytest

import distcore.data as dd

pytestmark = pytest.mark.usefixtures("shared_cluster")


def _sizes(ds) -> list[int]:
    return sorted(r["n"] for r in ds.take_all())


def test_default_and_auto_pass_whole_blocks() -> None:
    ds = dd.range(5000, override_num_blocks=2)
    assert _sizes(ds.map_batches(lambda b: {"n": [len(b["id"])]})) == [2500, 2500]
    assert _sizes(ds.map_batches(lambda b: {"n": [len(b["id"])]}, batch_size="auto")) == [2500, 2500]


def test_legacy_default_and_explicit_sizes() -> None:
    ds = dd.range(5000, override_num_blocks=2)
    assert _sizes(ds.map_batches(lambda b: {"n": [len(b["id"])]}, batch_size="default")) == \
        sorted([1024, 1024, 452, 1024, 1024, 452])
    assert _sizes(ds.map_batches(lambda b: {"n": [len(b["id"])]}, batch_size=2000)) == [500, 500, 2000, 2000]
    with pytest.raises(ValueError, match="batch_size"):
        ds.map_batches(lambda b: b, batch_size="big")
