"""Readers and writers through the Dataset API, and projection/filter/limit pushdown into parquet reads."""

from __future__ import annotations

import pandas as pd
import pyarrow.compute as pc
import pytest

import distcore.data as dd
from distcore.data._internal.logical import Read
from distcore.data._internal.optimizer import optimize

pytestmark = pytest.mark.usefixtures("shared_cluster")


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": range(100), "b": [f"s{i}" for i in range(100)], "c": [i * 0.5 for i in range(100)]})


def _source_of(ds) -> Read:
    op = optimize(ds._plan).dag
    while not isinstance(op, Read):
        op = op.read if getattr(op, "read", None) is not None else op.inputs[0]
    return op


def test_parquet_roundtrip_with_projection_and_filter_pushdown(tmp_path, frame) -> None:
    dd.from_pandas(frame).repartition(4).write_parquet(str(tmp_path / "pq"))
    files = list((tmp_path / "pq").iterdir())
    assert len(files) == 4 and all(f.suffix == ".parquet" for f in files)
    ds = dd.read_parquet(str(tmp_path / "pq"))
    pd.testing.assert_frame_equal(ds.to_pandas().sort_values("a").reset_index(drop=True), frame)
    assert ds.count() == 100

    proj = ds.select_columns(["a", "c"]).filter(expr=pc.field("a") >= 90)
    src = _source_of(proj)
    assert src.datasource._columns == ["a", "c"] and src.datasource._filter is not None
    out = proj.to_pandas().sort_values("a").reset_index(drop=True)
    pd.testing.assert_frame_equal(out, frame[frame.a >= 90][["a", "c"]].reset_index(drop=True))
    assert proj.count() == 10

    limited = ds.limit(5)
    assert _source_of(limited).datasource is not ds._plan.dag.datasource
    assert limited.count() == 5 and len(limited.take_all()) == 5


def test_csv_and_json_roundtrip(tmp_path, frame) -> None:
    ds = dd.from_pandas(frame)
    ds.write_csv(str(tmp_path / "csv"))
    back = dd.read_csv(str(tmp_path / "csv")).to_pandas().sort_values("a").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, frame)
    ds.write_json(str(tmp_path / "json"))
    back = dd.read_json(str(tmp_path / "json")).to_pandas().sort_values("a").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_read_then_map_batches_then_iterate(tmp_path, frame) -> None:
    dd.from_pandas(frame).write_parquet(str(tmp_path / "pq"))
    ds = dd.read_parquet(str(tmp_path / "pq")).map_batches(lambda df: df.assign(d=df["a"] * 2),
                                                            batch_format="pandas")
    total = sum(int(b["d"].sum()) for b in ds.iter_batches(batch_size=16))
    assert total == 2 * sum(range(100))
    assert "ReadParquet->MapBatches(<lambda>)" in ds.stats()


def test_missing_path_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(Exception, match="nope"):
        dd.read_parquet(str(tmp_path / "nope")).take_all()
