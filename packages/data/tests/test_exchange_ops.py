"""All-to-all exchanges on lists of ``distcore.put(table)`` refs, compared with pandas results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distcore
from distcore.data._internal.exchange import (
    AggregateFn,
    Count,
    Max,
    Mean,
    Min,
    Std,
    Sum,
    groupby_aggregate,
    hash_partition,
    join,
    map_groups,
    random_shuffle,
    repartition,
    sort,
    unique,
    zip,
)


@pytest.fixture(scope="module", autouse=True)
def _cluster(cluster):
    yield cluster


def put_blocks(df: pd.DataFrame, n: int) -> list:
    edges = np.linspace(0, len(df), n + 1).astype(int)
    return [distcore.put(pa.Table.from_pandas(df.iloc[a:b], preserve_index=False)) for a, b in zip_(edges)]


def zip_(edges):
    return list(__builtins__["zip"](edges[:-1], edges[1:])) if isinstance(__builtins__, dict) else \
        list(__builtins__.zip(edges[:-1], edges[1:]))


def fetch(result) -> pd.DataFrame:
    tables = distcore.get([r for r, _ in result], timeout=60)
    for table, (_, meta) in __import__("builtins").zip(tables, result):
        assert meta.num_rows == table.num_rows
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 3000
    return pd.DataFrame({
        "k": rng.integers(0, 37, n),
        "s": rng.choice(["a", "b", "c", None], n),
        "x": rng.normal(size=n) * 100,
        "y": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(-50, 50, n)), dtype="Int64"),
    })


def test_hash_partition_puts_equal_keys_together(frame):
    out = hash_partition(put_blocks(frame, 5), ["k", "s"], 4)
    assert len(out) == 4
    blocks = [t.to_pandas() for t in distcore.get([r for r, _ in out], timeout=60)]
    assert sum(len(b) for b in blocks) == len(frame)
    seen = {}
    for i, b in enumerate(blocks):
        for key in set(map(tuple, b[["k", "s"]].astype(object).where(b[["k", "s"]].notna(), None).values)):
            assert seen.setdefault(key, i) == i


def test_repartition_keeps_order_and_balances(frame):
    refs = put_blocks(frame, 3)
    out = repartition(refs, 7)
    assert [m.num_rows for _, m in out] == [len(frame) * (j + 1) // 7 - len(frame) * j // 7 for j in range(7)]
    pd.testing.assert_frame_equal(fetch(out), frame)
    shuffled = fetch(repartition(refs, 2, shuffle=True, seed=1))
    assert len(shuffled) == len(frame) and not shuffled["x"].equals(frame["x"])


def test_random_shuffle_is_a_seeded_permutation(frame):
    refs = put_blocks(frame, 4)
    a, b = fetch(random_shuffle(refs, seed=7)), fetch(random_shuffle(refs, seed=7))
    pd.testing.assert_frame_equal(a, b)
    assert not a["x"].equals(frame["x"])
    pd.testing.assert_frame_equal(a.sort_values("x").reset_index(drop=True),
                                  frame.sort_values("x").reset_index(drop=True))


@pytest.mark.parametrize("keys,desc", [("x", False), (["k", "x"], [True, False]), (["s", "y"], False)])
def test_sort_matches_pandas(frame, keys, desc):
    out = sort(put_blocks(frame, 4), keys, desc, num_blocks=3)
    got = fetch(out)
    klist = [keys] if isinstance(keys, str) else keys
    dlist = [desc] * len(klist) if isinstance(desc, bool) else desc
    expected = frame.sort_values(klist, ascending=[not d for d in dlist], na_position="last", kind="stable")
    pd.testing.assert_frame_equal(got[klist].reset_index(drop=True), expected[klist].reset_index(drop=True))


def test_sort_tiny_and_empty_blocks():
    refs = [distcore.put(pa.table({"v": pa.array([], pa.int64())})), distcore.put(pa.table({"v": [3, 1]})),
            distcore.put(pa.table({"v": [2]}))]
    got = fetch(sort(refs, "v", num_blocks=10))
    assert got["v"].tolist() == [1, 2, 3]
    assert sort([], "v") == []


def test_groupby_builtin_aggs_match_pandas(frame):
    refs = put_blocks(frame, 6)
    aggs = [Count(), Sum("x"), Min("y"), Max("s"), Mean("x"), Std("x"), Count("y"), Mean("y")]
    got = fetch(groupby_aggregate(refs, "k", aggs, num_blocks=3)).sort_values("k").reset_index(drop=True)
    g = frame.groupby("k")
    expected = pd.DataFrame({
        "k": sorted(frame["k"].unique()),
        "count()": g.size().values, "sum(x)": g["x"].sum().values, "min(y)": g["y"].min().values,
        "max(s)": g["s"].max().values, "mean(x)": g["x"].mean().values, "std(x)": g["x"].std().values,
        "count(y)": g["y"].count().values, "mean(y)": g["y"].mean().values,
    })
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)


def test_groupby_null_and_string_keys_and_global(frame):
    refs = put_blocks(frame, 3)
    got = fetch(groupby_aggregate(refs, ["s"], [Count(), Sum("y")]))
    expected = frame.groupby("s", dropna=False).agg(**{"count()": ("x", "size"), "sum(y)": ("y", "sum")})
    assert len(got) == 4 and got["s"].isna().sum() == 1  # nulls form one group
    rows = {(None if pd.isna(r["s"]) else r["s"]): (r["count()"], r["sum(y)"]) for r in got.to_dict("records")}
    for key, row in expected.iterrows():
        assert rows[None if pd.isna(key) else key] == (row["count()"], row["sum(y)"])
    total = fetch(groupby_aggregate(refs, None, [Sum("x"), Std("y"), Count()]))
    assert total["sum(x)"][0] == pytest.approx(frame["x"].sum())
    assert total["std(y)"][0] == pytest.approx(frame["y"].astype(float).std())
    assert total["count()"][0] == len(frame)


def test_groupby_ignore_nulls_false_and_all_null():
    refs = [distcore.put(pa.table({"k": [1, 1, 2], "v": pa.array([1, None, None], pa.int64())}))]
    out = groupby_aggregate(refs, "k", [Sum("v", ignore_nulls=False, alias_name="strict"), Sum("v")])
    got = distcore.get(out[0][0], timeout=60)
    assert got.to_pydict() == {"k": [1, 2], "strict": [None, None], "sum(v)": [1, None]}


def test_user_aggregate_fn(frame):
    refs = put_blocks(frame, 5)
    sumsq = AggregateFn(init=lambda key: 0.0, merge=lambda a, b: a + b, name="sumsq",
                        accumulate_block=lambda acc, block: acc + float((block["x"].to_numpy() ** 2).sum()))
    keys_seen = AggregateFn(init=lambda key: [key], merge=lambda a, b: a, name="key", finalize=lambda a: a[0],
                            accumulate_row=lambda acc, row: acc)
    got = fetch(groupby_aggregate(refs, "k", [sumsq, keys_seen, Count()])).sort_values("k")
    expected = frame.assign(x2=frame["x"] ** 2).groupby("k")["x2"].sum()
    np.testing.assert_allclose(got["sumsq"].values, expected.values, rtol=1e-9)
    assert (got["key"].values == got["k"].values).all()


def test_groupby_bad_input(frame):
    refs = put_blocks(frame, 2)
    with pytest.raises(Exception, match="nope"):
        fetch(groupby_aggregate(refs, "nope", [Count()]))
    with pytest.raises(TypeError, match="AggregateFn"):
        groupby_aggregate(refs, "k", ["sum"])
    with pytest.raises(ValueError, match="alias_name"):
        groupby_aggregate(refs, "k", [Sum("x"), Sum("x")])
    with pytest.raises(ValueError, match="exactly one"):
        AggregateFn(init=lambda k: 0, merge=lambda a, b: a, name="n")


@pytest.mark.parametrize("fmt", ["pandas", "numpy", "pyarrow"])
def test_map_groups(frame, fmt):
    def top(batch):
        if fmt == "pandas":
            return batch.nlargest(2, "x")[["k", "x"]]
        if fmt == "numpy":
            order = np.argsort(-batch["x"])[:2]
            return {"k": batch["k"][order], "x": batch["x"][order]}
        return batch.select(["k", "x"]).sort_by([("x", "descending")]).slice(0, 2)

    got = fetch(map_groups(put_blocks(frame, 4), "k", top, batch_format=fmt, num_blocks=3))
    expected = frame.sort_values("x", ascending=False).groupby("k").head(2)
    key = ["k", "x"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  expected[key].sort_values(key).reset_index(drop=True))
    with pytest.raises(ValueError, match="batch_format"):
        map_groups([], "k", top, batch_format="arrow")


def test_unique(frame):
    got = fetch(unique(put_blocks(frame, 3), "s"))
    assert sorted(got["s"].dropna()) == ["a", "b", "c"] and got["s"].isna().sum() == 1


@pytest.mark.parametrize("how", ["inner", "left", "right", "outer"])
def test_join_matches_pandas(how):
    left = pd.DataFrame({"id": [1, 2, 3, 4, None], "a": ["w", "x", "y", "z", "n"]})
    right = pd.DataFrame({"key": [2, 3, 3, 5, None], "b": [20.0, 30.0, 31.0, 50.0, 0.0]})
    left["id"] = left["id"].astype("Int64")
    right["key"] = right["key"].astype("Int64")
    out = join(put_blocks(left, 2), put_blocks(right, 3), "id", how, right_keys="key", num_blocks=3)
    got = fetch(out)
    pd_how = {"outer": "outer"}.get(how, how)
    # SQL semantics: null keys never match (pandas would match them), so drop them before pandas merges
    lk, rk = left.dropna(subset=["id"]), right.dropna(subset=["key"])
    expected = lk.merge(rk, left_on="id", right_on="key", how=pd_how)
    if how in ("left", "outer"):
        expected = pd.concat([expected, left[left["id"].isna()]])
    if how in ("right", "outer"):
        expected = pd.concat([expected, right[right["key"].isna()]])
    if how in ("right", "outer"):
        expected["id"] = expected["id"].fillna(expected["key"])
    expected = expected.drop(columns=["key"])
    cols = ["id", "a", "b"]
    norm = lambda df: df[cols].astype(object).where(df[cols].notna(), None).sort_values(  # noqa: E731
        cols, key=lambda c: c.astype(str)).reset_index(drop=True)
    pd.testing.assert_frame_equal(norm(got), norm(expected), check_dtype=False)


def test_join_bad_input():
    refs = [distcore.put(pa.table({"id": [1]}))]
    with pytest.raises(ValueError, match="join type"):
        join(refs, refs, "id", "cross")
    with pytest.raises(Exception, match="missing"):
        fetch(join(refs, refs, "missing"))


def test_zip_aligns_rows_across_block_boundaries(frame):
    left = put_blocks(frame[["k", "x"]], 3)
    right = put_blocks(frame[["x", "s"]].rename(columns={"s": "t"}), 5)
    got = fetch(zip(left, right))
    assert list(got.columns) == ["k", "x", "x_1", "t"]
    np.testing.assert_array_equal(got["x"].values, got["x_1"].values)
    with pytest.raises(ValueError, match="same number of rows"):
        zip(left, put_blocks(frame.iloc[:10], 1))

