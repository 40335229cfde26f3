"""The vertical slice: creation -> map/map_batches/filter -> consumption, against pandas/numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import distcore.data as dd

pytestmark = pytest.mark.usefixtures("shared_cluster")


def test_range_count_take_and_schema() -> None:
    ds = dd.range(1000)
    assert ds.count() == 1000
    assert ds.take(3) == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert ds.schema().names == ["id"]
    assert ds.columns() == ["id"]


def test_map_batches_formats_match_numpy() -> None:
    ds = dd.range(500, override_num_blocks=5)
    out_np = ds.map_batches(lambda b: {"id": b["id"], "sq": b["id"] ** 2}, batch_format="numpy").to_pandas()
    out_pd = ds.map_batches(lambda df: df.assign(sq=df["id"] ** 2), batch_format="pandas").to_pandas()
    out_pa = ds.map_batches(lambda t: t.append_column("sq", pa.compute.multiply(t["id"], t["id"])),
                            batch_format="pyarrow").to_pandas()
    expected = pd.DataFrame({"id": np.arange(500), "sq": np.arange(500) ** 2})
    for out in (out_np, out_pd, out_pa):
        pd.testing.assert_frame_equal(out.reset_index(drop=True), expected, check_dtype=False)


def test_map_batches_batch_size_and_args() -> None:
    sizes = dd.range(100, override_num_blocks=3).map_batches(
        lambda b, k, add=0: {"n": np.array([len(b["id"]) * k + add])}, batch_size=10, fn_args=(1,),
        fn_kwargs={"add": 0}).to_pandas()["n"].tolist()
    assert sum(sizes) == 100
    assert max(sizes) <= 10


def test_map_flat_map_filter_against_python() -> None:
    items = [{"x": i, "y": str(i)} for i in range(50)]
    ds = dd.from_items(items)
    assert ds.map(lambda r: {"x": r["x"] * 2, "y": r["y"]}).take_all() == [
        {"x": i * 2, "y": str(i)} for i in range(50)]
    assert ds.flat_map(lambda r: [r, r]).count() == 100
    assert ds.filter(lambda r: r["x"] % 3 == 0).take_all() == [r for r in items if r["x"] % 3 == 0]


def test_filter_expr() -> None:
    import pyarrow.compute as pc

    ds = dd.range(100).filter(expr=pc.field("id") >= 90)
    assert [r["id"] for r in ds.take_all()] == list(range(90, 100))


def test_from_pandas_numpy_arrow_roundtrip() -> None:
    df = pd.DataFrame({"a": [1, 2, None], "b": ["x", None, "z"]})
    pd.testing.assert_frame_equal(dd.from_pandas(df).to_pandas(), df)
    arr = np.arange(12).reshape(3, 4)
    got = dd.from_numpy(arr).take_all()
    assert [r["data"].tolist() for r in got] == arr.tolist()
    table = pa.table({"k": [1, 2, 3]})
    assert dd.from_arrow(table).to_pandas()["k"].tolist() == [1, 2, 3]


def test_iter_batches_sizes_drop_last_and_formats() -> None:
    ds = dd.range(105, override_num_blocks=4)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=10)]
    assert sizes == [10] * 10 + [5]
    assert [len(b["id"]) for b in ds.iter_batches(batch_size=10, drop_last=True)] == [10] * 10
    batches = list(ds.iter_batches(batch_size=50, batch_format="pandas"))
    assert isinstance(batches[0], pd.DataFrame)
    assert pd.concat(batches)["id"].tolist() == list(range(105))
    assert sum(t.num_rows for t in ds.iter_batches(batch_size=None, batch_format="pyarrow")) == 105


def test_iter_batches_local_shuffle_keeps_rows() -> None:
    ds = dd.range(200, override_num_blocks=4)
    rows = np.concatenate([b["id"] for b in ds.iter_batches(batch_size=16, local_shuffle_buffer_size=50,
                                                            local_shuffle_seed=0)])
    assert sorted(rows.tolist()) == list(range(200))
    assert rows.tolist() != list(range(200))


def test_iter_rows_and_take_batch() -> None:
    ds = dd.range(20)
    assert [r["id"] for r in ds.iter_rows()] == list(range(20))
    batch = ds.take_batch(5)
    assert batch["id"].tolist() == [0, 1, 2, 3, 4]


def test_iter_torch_batches() -> None:
    import torch

    ds = dd.from_items([{"x": float(i), "y": i} for i in range(10)])
    batches = list(ds.iter_torch_batches(batch_size=4, dtypes={"x": torch.float32, "y": torch.int64}))
    assert [b["x"].shape[0] for b in batches] == [4, 4, 2]
    assert batches[0]["x"].dtype == torch.float32
    assert torch.cat([b["y"] for b in batches]).tolist() == list(range(10))
    collated = list(ds.iter_torch_batches(batch_size=5, collate_fn=lambda b: torch.as_tensor(b["y"]).sum()))
    assert [int(c) for c in collated] == [10, 35]


def test_empty_dataset() -> None:
    ds = dd.range(0)
    assert ds.count() == 0
    assert ds.take() == []
    assert list(ds.iter_batches()) == []
    assert ds.to_pandas().empty
    assert dd.range(10).filter(lambda r: False).count() == 0
    assert dd.from_items([]).count() == 0


def test_tensor_columns() -> None:
    ds = dd.range_tensor(8, shape=(2, 3))
    batch = ds.take_batch(8)
    assert batch["data"].shape == (8, 2, 3)
    out = ds.map_batches(lambda b: {"data": b["data"] * 2}).take_batch(8)
    np.testing.assert_array_equal(out["data"], batch["data"] * 2)
    imgs = dd.from_items([{"img": np.full((2, 2), i)} for i in range(4)])
    assert imgs.take_batch(4)["img"].shape == (4, 2, 2)


def test_columns_ops_against_pandas() -> None:
    df = pd.DataFrame({"a": range(10), "b": range(10, 20), "c": list("abcdefghij")})
    ds = dd.from_pandas(df)
    pd.testing.assert_frame_equal(ds.select_columns(["c", "a"]).to_pandas(), df[["c", "a"]])
    pd.testing.assert_frame_equal(ds.drop_columns(["b"]).to_pandas(), df.drop(columns=["b"]))
    pd.testing.assert_frame_equal(ds.rename_columns({"a": "A"}).to_pandas(), df.rename(columns={"a": "A"}))
    added = ds.add_column("d", lambda pdf: pdf["a"] + pdf["b"]).to_pandas()
    assert added["d"].tolist() == (df["a"] + df["b"]).tolist()


def test_limit_union_random_sample() -> None:
    assert dd.range(100).limit(7).count() == 7
    assert [r["id"] for r in dd.range(100).map(lambda r: r).limit(3).take_all()] == [0, 1, 2]
    u = dd.range(3).union(dd.range(2))
    assert [r["id"] for r in u.take_all()] == [0, 1, 2, 0, 1]
    sample = dd.range(2000).random_sample(0.5, seed=1).count()
    assert 800 < sample < 1200
    assert dd.range(10).random_sample(0.0).count() == 0


def test_materialize_and_refs() -> None:
    mat = dd.range(100, override_num_blocks=4).map_batches(lambda b: b).materialize()
    assert mat.count() == 100
    assert mat.num_blocks() == 4
    assert mat.size_bytes() == 800
    import distcore

    tables = distcore.get(mat.to_arrow_refs())
    assert sum(t.num_rows for t in tables) == 100
    arrays = distcore.get(mat.to_numpy_refs(column="id"))
    assert np.concatenate(arrays).tolist() == list(range(100))


def test_stats_names_operators() -> None:
    ds = dd.range(100).map_batches(lambda b: b)
    assert "not been executed" in ds.stats()
    ds.take_all()
    text = ds.stats()
    assert "MapBatches(<lambda>)" in text and "Output rows: 100" in text and "CPU time" in text


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="batch_format"):
        dd.range(3).map_batches(lambda b: b, batch_format="polars")
    with pytest.raises(ValueError, match="batch_size"):
        dd.range(3).map_batches(lambda b: b, batch_size=0)
    with pytest.raises(TypeError, match="callable"):
        dd.range(3).map(42)
    with pytest.raises(KeyError, match="nope"):
        dd.range(3).select_columns(["nope"]).take_all()
    with pytest.raises(ValueError, match="limit"):
        dd.range(3).limit(-1)
    with pytest.raises(ValueError, match="concurrency"):
        dd.range(3).map_batches(lambda b: b, concurrency=(3, 1))


def test_udf_error_names_operator_and_traceback() -> None:
    def explode(batch):
        raise ZeroDivisionError("boom in user code")

    with pytest.raises(dd.UserCodeException) as info:
        dd.range(10).map_batches(explode).take_all()
    text = str(info.value)
    assert "MapBatches(" in text and "explode" in text and "boom in user code" in text
    assert "ZeroDivisionError" in text
    assert "in explode" in text  # the user's own frame is in the traceback


def test_map_batches_returns_bad_type() -> None:
    with pytest.raises(dd.UserCodeException, match="invalid batch"):
        dd.range(10).map_batches(lambda b: 42).take_all()


def test_tiny_and_huge_blocks() -> None:
    tiny = dd.range(300, override_num_blocks=300).map_batches(lambda b: {"id": b["id"] + 1}, batch_size=None)
    assert sorted(r["id"] for r in tiny.take_all()) == list(range(1, 301))
    huge = dd.range(200_000, override_num_blocks=1).map_batches(lambda b: {"id": b["id"] * 2}, batch_size=None)
    total = sum(int(b["id"].sum()) for b in huge.iter_batches(batch_size=65536))
    assert total == 2 * sum(range(200_000))


def test_nulls_survive_maps() -> None:
    ds = dd.from_items([{"v": 1.0}, {"v": None}, {"v": 3.0}])
    out = ds.map_batches(lambda df: df, batch_format="pandas").to_pandas()
    assert out["v"].isna().tolist() == [False, True, False]
    assert ds.map(lambda r: r).take_all()[1] == {"v": None}
