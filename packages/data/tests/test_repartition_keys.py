"""Dataset.repartition by key (a hash exchange under the memory budget) and by target rows per block."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distcore
import distcore.data as dd
from distcore._private.testing import StorePeak

pytestmark = pytest.mark.usefixtures("shared_cluster")
MiB = 1024 * 1024


def _keyed(batch):  # 300_000 keys, 32 bytes a row (as in test_exchange_budget.py, which pytest cannot import)
    ids = batch["id"]
    return {"k": ids % 300_000, "v": (ids * 7 % 1000).astype(np.float64),
            "pad": np.ones((len(ids), 2), dtype=np.float64)}




def _blocks(ds: dd.Dataset) -> list[pd.DataFrame]:
    """Each output block of ``ds`` as a DataFrame, in block order."""
    mat = ds.materialize()
    frames = [distcore.get(ref, timeout=60).to_pandas() for ref in mat.to_arrow_refs()]
    assert len(frames) == mat.num_blocks()
    return frames


def _key_tuples(frame: pd.DataFrame, keys: list[str]) -> set:
    # NaN != NaN: map missing values to one marker so null keys compare equal
    return {tuple("<null>" if pd.isna(v) else v for v in row) for row in frame[keys].itertuples(index=False)}


def _assert_whole_groups(frames: list[pd.DataFrame], keys: list[str]) -> None:
    seen: dict = {}
    for i, frame in enumerate(frames):
        for key in _key_tuples(frame, keys):
            assert key not in seen, f"key {key} is in blocks {seen[key]} and {i}"
            seen[key] = i


def _same_rows(frames: list[pd.DataFrame], expected: pd.DataFrame) -> None:
    got = pd.concat([f for f in frames if len(f)], ignore_index=True)
    cols = list(expected.columns)
    pd.testing.assert_frame_equal(got[cols].sort_values(cols).reset_index(drop=True),
                                  expected.sort_values(cols).reset_index(drop=True), check_dtype=False)


def test_keyed_repartition_keeps_groups_whole_and_rows_equal() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"k": rng.integers(0, 40, 2000), "v": np.arange(2000)})
    ds = dd.from_pandas(frame).repartition(7, keys="k")
    frames = _blocks(ds)
    assert len(frames) == 7  # exactly num_blocks, like Ray's hash shuffle (empty partitions are kept)
    _assert_whole_groups(frames, ["k"])
    _same_rows(frames, frame)
    assert sum(len(f) > 0 for f in frames) >= 5  # 40 keys spread over the partitions


def test_more_blocks_than_keys_gives_empty_blocks() -> None:
    frame = pd.DataFrame({"k": [1, 2, 1, 2, 1], "v": range(5)})
    frames = _blocks(dd.from_pandas(frame).repartition(6, keys=["k"]))
    assert len(frames) == 6
    assert sum(len(f) > 0 for f in frames) <= 2
    _assert_whole_groups(frames, ["k"])
    _same_rows(frames, frame)


def test_multi_column_and_null_keys_with_sort() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    a = [None if i % 17 == 0 else f"a{v}" for i, v in enumerate(rng.integers(0, 6, n))]
    b = [None if i % 23 == 0 else int(v) for i, v in enumerate(rng.integers(0, 5, n))]
    table = pa.table({"a": pa.array(a, pa.string()), "b": pa.array(b, pa.int64()), "v": np.arange(n)})
    ds = dd.from_arrow(table).repartition(5).repartition(4, keys=["a", "b"], sort=True)
    frames = _blocks(ds)
    assert len(frames) == 4
    _assert_whole_groups(frames, ["a", "b"])
    _same_rows(frames, table.to_pandas())
    for f in frames:  # each block sorted by (a, b) ascending, nulls last, like pyarrow/pandas
        expected = f.sort_values(["a", "b"], na_position="last", kind="stable")[["a", "b"]]
        assert len(f) and f[["a", "b"]].astype(str).equals(expected.reset_index(drop=True).astype(str))
    null_rows = sum(int(f["a"].isna().sum()) for f in frames)
    assert null_rows == sum(v is None for v in a)


def test_keys_without_num_blocks_and_unchanged_modes() -> None:
    frame = pd.DataFrame({"k": np.arange(500) % 9, "v": np.arange(500)})
    frames = _blocks(dd.from_pandas(frame).repartition(keys="k"))  # the exchange sizes the partitions
    assert len(frames) >= 1
    _assert_whole_groups(frames, ["k"])
    _same_rows(frames, frame)
    mat = dd.range(100, override_num_blocks=3).repartition(7).materialize()
    assert mat.num_blocks() == 7 and [r["id"] for r in mat.take_all()] == list(range(100))
    shuffled = dd.range(100, override_num_blocks=3).repartition(4, shuffle=True).materialize()
    assert shuffled.num_blocks() == 4 and sorted(r["id"] for r in shuffled.take_all()) == list(range(100))


def test_target_num_rows_per_block() -> None:
    frames = _blocks(dd.range(100, override_num_blocks=2).repartition(target_num_rows_per_block=30))
    assert [len(f) for f in frames] == [25, 25, 25, 25]
    assert pd.concat(frames)["id"].tolist() == list(range(100))


def test_bad_arguments_raise_named_errors() -> None:
    ds = dd.range(10)
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        ds.repartition(0, keys="id")
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        ds.repartition(-2)
    with pytest.raises(TypeError, match="keys must be a column name"):
        ds.repartition(2, keys=3)
    with pytest.raises(TypeError, match="keys must be a column name"):
        ds.repartition(2, keys=["id", 1])
    with pytest.raises(ValueError, match="empty list"):
        ds.repartition(2, keys=[])
    with pytest.raises(ValueError, match="sort=True needs keys"):
        ds.repartition(2, sort=True)
    with pytest.raises(ValueError, match="shuffle=True cannot be combined with keys"):
        ds.repartition(2, keys="id", shuffle=True)
    with pytest.raises(ValueError, match="target_num_rows_per_block cannot be combined"):
        ds.repartition(2, target_num_rows_per_block=5)
    with pytest.raises(ValueError, match="target_num_rows_per_block cannot be combined"):
        ds.repartition(target_num_rows_per_block=5, keys="id")
    with pytest.raises(ValueError, match="target_num_rows_per_block >= 1"):
        ds.repartition(target_num_rows_per_block=0)
    with pytest.raises(ValueError, match="needs num_blocks, keys or target_num_rows_per_block"):
        ds.repartition()
    with pytest.raises(KeyError, match="nope"):  # the unknown column is named (raised by the map task)
        ds.repartition(2, keys=["id", "nope"]).materialize()


def test_keyed_repartition_over_several_budgets_stays_under_the_budget(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DISTCORE_DATA_SPILL_DIR", str(tmp_path / "spill"))
    budget = 6 * MiB
    rows, blocks, num_blocks = 600_000, 8, 24
    dd.DataContext.get_current().memory_budget = budget
    ds = dd.range(rows, override_num_blocks=blocks).map_batches(_keyed, batch_size=None)
    out = ds.repartition(num_blocks, keys="k")
    seen: dict[int, int] = {}
    count, total_v, nblocks = 0, 0.0, 0
    with StorePeak() as peak:
        for i, batch in enumerate(out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1)):
            nblocks += 1
            for k in np.unique(batch["k"]):
                assert seen.setdefault(int(k), i) == i, f"key {k} in two blocks"
            count += len(batch["k"])
            total_v += float(batch["v"].sum())
    assert rows * 8 * 4 >= 3 * budget  # k, v and two pad values per row: 18 MiB, 3x the budget
    ids = np.arange(rows)
    assert count == rows and len(seen) == min(rows, 300_000)
    assert total_v == float((ids * 7 % 1000).sum())
    assert nblocks <= num_blocks
    # the stated bound, as for groupby: the budget plus 25%
    assert 0 < peak.peak <= 1.25 * budget, f"peak store usage {peak.peak / MiB:.1f} MiB, budget {budget / MiB:.0f}"
    print(f"keyed repartition: peak store usage {peak.peak / MiB:.1f} MiB of a {budget / MiB:.0f} MiB budget")
    assert "Spilled to disk" in out.stats()
    assert os.listdir(tmp_path / "spill") == []
