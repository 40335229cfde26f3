"""All-to-all operations through the Dataset API, compared with pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import distcore.data as dd
from distcore.data.aggregate import AggregateFn, Count, Mean, Sum

pytestmark = pytest.mark.usefixtures("shared_cluster")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"k": rng.integers(0, 7, 300), "g": rng.choice(["a", "b"], 300),
                         "v": rng.normal(size=300).round(6), "i": np.arange(300)})


def test_sort_multi_key_and_descending(frame) -> None:
    ds = dd.from_pandas([frame.iloc[i * 60:(i + 1) * 60] for i in range(5)])
    out = ds.sort(["k", "i"], descending=[True, False]).to_pandas()
    exp = frame.sort_values(["k", "i"], ascending=[False, True]).reset_index(drop=True)
    pd.testing.assert_frame_equal(out, exp)
    assert dd.range(50, override_num_blocks=5).sort("id", descending=True).take(3) == [
        {"id": 49}, {"id": 48}, {"id": 47}]


def test_groupby_aggregations_match_pandas(frame) -> None:
    ds = dd.from_pandas(frame)
    got = ds.groupby("k").sum("v").to_pandas().sort_values("k").reset_index(drop=True)
    exp = frame.groupby("k", as_index=False)["v"].sum()
    np.testing.assert_allclose(got.iloc[:, 1], exp["v"])
    counts = ds.groupby("k").count().to_pandas().sort_values("k")
    assert counts.iloc[:, 1].tolist() == frame.groupby("k").size().tolist()
    for name, pd_name in (("min", "min"), ("max", "max"), ("mean", "mean"), ("std", "std")):
        g = getattr(ds.groupby("k"), name)("v").to_pandas().sort_values("k")
        np.testing.assert_allclose(g.iloc[:, 1], getattr(frame.groupby("k")["v"], pd_name)(), rtol=1e-9)
    multi = ds.groupby(["k", "g"]).aggregate(Count(), Mean("v")).to_pandas()
    assert len(multi) == len(frame.groupby(["k", "g"]))


def test_global_aggregates(frame) -> None:
    ds = dd.from_pandas(frame)
    assert ds.sum("i") == frame["i"].sum()
    assert ds.min("v") == pytest.approx(frame["v"].min())
    assert ds.max("v") == pytest.approx(frame["v"].max())
    assert ds.mean("v") == pytest.approx(frame["v"].mean())
    assert ds.std("v") == pytest.approx(frame["v"].std())


def test_custom_aggregate_fn(frame) -> None:
    agg = AggregateFn(init=lambda k: 0, accumulate_row=lambda a, r: a + 1, merge=lambda a, b: a + b, name="n")
    out = dd.from_pandas(frame).groupby("g").aggregate(agg, Sum("i")).to_pandas().sort_values("g")
    assert out["n"].tolist() == frame.groupby("g").size().tolist()


def test_map_groups(frame) -> None:
    out = dd.from_pandas(frame).groupby("k").map_groups(
        lambda df: pd.DataFrame({"k": [df["k"].iloc[0]], "n": [len(df)]}), batch_format="pandas").to_pandas()
    assert dict(zip(out["k"], out["n"], strict=True)) == frame.groupby("k").size().to_dict()


def test_unique_join_zip(frame) -> None:
    ds = dd.from_pandas(frame)
    assert sorted(ds.unique("g")) == ["a", "b"]
    left = dd.from_items([{"key": i, "l": i * 10} for i in range(6)])
    right = dd.from_items([{"key": i, "r": -i} for i in range(3, 9)])
    inner = left.join(right, on="key").to_pandas().sort_values("key")
    assert inner["key"].tolist() == [3, 4, 5] and inner["r"].tolist() == [-3, -4, -5]
    outer = left.join(right, on="key", how="outer").to_pandas()
    assert sorted(outer["key"].tolist()) == list(range(9))
    zipped = dd.range(5).zip(dd.range(5).map(lambda r: {"sq": r["id"] ** 2})).take_all()
    assert zipped == [{"id": i, "sq": i * i} for i in range(5)]
    with pytest.raises(ValueError, match="how"):
        left.join(right, on="key", how="sideways")


def test_repartition_and_random_shuffle() -> None:
    ds = dd.range(100, override_num_blocks=3).repartition(7)
    mat = ds.materialize()
    assert mat.num_blocks() == 7 and [r["id"] for r in mat.take_all()] == list(range(100))
    shuffled = [r["id"] for r in dd.range(100).random_shuffle(seed=1).take_all()]
    assert sorted(shuffled) == list(range(100)) and shuffled != list(range(100))
    assert [r["id"] for r in dd.range(100).random_shuffle(seed=1).take_all()] == shuffled
    assert dd.range(100).repartition(4).count() == 100


def test_all_to_all_on_empty_and_bad_keys() -> None:
    empty = dd.range(0)
    assert empty.sort("id").take_all() == []
    assert empty.random_shuffle().count() == 0
    with pytest.raises(ValueError, match="sort"):
        dd.range(3).sort(3)
    with pytest.raises(Exception, match="nope"):
        dd.range(3).groupby("nope").count().take_all()
