"""All-to-all operations through the Dataset API end to end, compared with pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distcore
import distcore.data as dd
from distcore.data._internal.exchange import Count, Sum, groupby_aggregate, sort


@pytest.fixture(scope="module", autouse=True)
def _cluster(cluster):
    yield cluster


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 2000
    return pd.DataFrame({"k": rng.integers(0, 20, n), "g": rng.choice(["u", "v"], n), "x": rng.normal(size=n)})


def test_sort_groupby_unique(frame):
    ds = dd.from_pandas(frame, override_num_blocks=6)
    got = ds.sort(["k", "x"], descending=[True, False]).to_pandas()
    expected = frame.sort_values(["k", "x"], ascending=[False, True]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)
    agg = ds.groupby("k").sum("x").to_pandas().sort_values("k").reset_index(drop=True)
    np.testing.assert_allclose(agg["sum(x)"], frame.groupby("k")["x"].sum().values)
    assert ds.groupby(["k", "g"]).count().count() == frame.groupby(["k", "g"]).ngroups
    assert sorted(ds.unique("g")) == ["u", "v"]
    assert ds.sum("x") == pytest.approx(frame["x"].sum())
    assert ds.std("x") == pytest.approx(frame["x"].std())


def test_join_zip_shuffle_repartition(frame):
    left = dd.from_pandas(frame.assign(i=np.arange(len(frame))), override_num_blocks=4)
    right = dd.from_pandas(pd.DataFrame({"i": np.arange(0, len(frame), 2), "y": np.arange(0, len(frame), 2) * 10}))
    joined = left.join(right, on="i", how="inner").to_pandas().sort_values("i")
    assert (joined["y"] == joined["i"] * 10).all() and len(joined) == len(frame) // 2
    zipped = dd.range(len(frame), override_num_blocks=3).zip(dd.from_pandas(frame, override_num_blocks=5))
    assert zipped.to_pandas()["id"].tolist() == list(range(len(frame)))
    shuffled = dd.from_pandas(frame).random_shuffle(seed=1).to_pandas()
    assert sorted(shuffled["x"]) == sorted(frame["x"]) and not shuffled["x"].equals(frame["x"])
    rep = dd.from_pandas(frame).repartition(7)
    assert rep.num_blocks() == 7 and rep.to_pandas()["x"].tolist() == frame["x"].tolist()


def test_many_tiny_blocks_and_one_huge_block():
    tiny = [distcore.put(pa.table({"v": [i % 5], "w": [float(i)]})) for i in range(150)]
    got = distcore.get([r for r, _ in sort(tiny, "w", descending=True)], timeout=60)
    values = [x for t in got for x in t.column("w").to_pylist()]
    assert values == sorted((float(i) for i in range(150)), reverse=True)
    out = groupby_aggregate(tiny, "v", [Count(), Sum("w")])
    assert len(out) < 150  # small blocks share map tasks and partitions
    table = pa.concat_tables(distcore.get([r for r, _ in out], timeout=60)).sort_by("v")
    assert table.column("count()").to_pylist() == [30] * 5
    one = dd.range(200_000, override_num_blocks=1).map_batches(lambda b: {"k": b["id"] % 3, "id": b["id"]})
    counts = one.groupby("k").count().to_pandas().sort_values("k")
    assert counts["count()"].tolist() == [66667, 66667, 66666]
