"""The read/creation functions through the Dataset engine, compared with pandas/pyarrow reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import distcore.data as dd


@pytest.fixture(scope="module", autouse=True)
def _cluster(cluster):
    yield cluster


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pq")
    rng = np.random.default_rng(1)
    frames = []
    for part in ("a", "b", "c"):
        os.makedirs(root / f"part={part}")
        df = pd.DataFrame({"x": rng.integers(0, 1000, 500), "y": rng.normal(size=500)})
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / f"part={part}" / "f.parquet",
                       row_group_size=100)
        frames.append(df.assign(part=part))
    return str(root), pd.concat(frames, ignore_index=True)


def test_read_parquet_columns_filter_and_count(parquet_dir):
    path, df = parquet_dir
    ds = dd.read_parquet(path)
    assert ds.count() == len(df)
    assert set(ds.columns()) == {"x", "y", "part"}
    got = dd.read_parquet(path, columns=["x", "part"], filter=(pc.field("part") == "b") & (pc.field("x") < 100))
    got = got.to_pandas()
    expected = df[(df.part == "b") & (df.x < 100)][["x", "part"]]
    assert list(got.columns) == ["x", "part"]
    assert sorted(got["x"]) == sorted(expected["x"])


def test_read_parquet_then_filter_and_select_push_down(parquet_dir):
    path, df = parquet_dir
    ds = dd.read_parquet(path, override_num_blocks=4).filter(expr=pc.field("x") >= 990).select_columns(["x"])
    assert sorted(r["x"] for r in ds.take_all()) == sorted(df[df.x >= 990]["x"])


def test_read_csv_json_text_numpy_binary(tmp_path):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    df.to_csv(tmp_path / "f.csv", index=False)
    assert dd.read_csv(str(tmp_path / "f.csv")).to_pandas()["a"].tolist() == [1, 2, 3]
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": None}]
    (tmp_path / "f.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert dd.read_json(str(tmp_path / "f.jsonl")).take_all()[2] == {"a": 3, "b": None}
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    assert [r["text"] for r in dd.read_text(str(tmp_path / "t.txt")).take_all()] == ["one", "two"]
    np.save(tmp_path / "m.npy", np.arange(6).reshape(3, 2))
    batch = dd.read_numpy(str(tmp_path / "m.npy")).take_batch(3)
    np.testing.assert_array_equal(batch["data"], np.arange(6).reshape(3, 2))
    rows = dd.read_binary_files(str(tmp_path / "t.txt"), include_paths=True).take_all()
    assert rows == [{"bytes": b"one\ntwo\n", "path": str(tmp_path / "t.txt")}]


def test_read_images(tmp_path):
    image = pytest.importorskip("PIL.Image")
    for i in range(3):
        image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    batch = dd.read_images(str(tmp_path)).take_batch(3)
    assert batch["image"].shape == (3, 4, 5, 3)
    assert sorted(int(im.max()) for im in batch["image"]) == [0, 1, 2]


def test_creation_functions():
    assert dd.range(10, override_num_blocks=3).num_blocks() == 3
    t = dd.range_tensor(4, shape=(2, 3)).take_batch(4)["data"]
    assert t.shape == (4, 2, 3) and (t[2] == 2).all()
    assert dd.from_items([{"a": 1}, {"a": None}]).take_all() == [{"a": 1}, {"a": None}]
    dfs = [pd.DataFrame({"v": [1, 2]}), pd.DataFrame({"v": [3]})]
    ds = dd.from_pandas(dfs)
    assert ds.num_blocks() == 2 and ds.to_pandas()["v"].tolist() == [1, 2, 3]
    assert dd.from_numpy(np.zeros((5, 2))).count() == 5
    assert dd.from_arrow(pa.table({"q": ["a"]})).take_all() == [{"q": "a"}]
    assert dd.from_items([]).count() == 0


def test_bad_paths_and_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        dd.read_csv(str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match="glob"):
        dd.read_json(str(tmp_path / "*.jsonl"))
    with pytest.raises(ValueError, match="override_num_blocks"):
        dd.range(10, override_num_blocks=0)
    with pytest.raises(ValueError, match="non-negative"):
        dd.range(-3)
    with pytest.raises(TypeError, match="from_pandas"):
        dd.from_pandas([1, 2])
