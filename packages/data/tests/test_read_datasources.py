"""Datasources read directly (read tasks -> tables), compared with pyarrow/pandas reads of the same files."""

from __future__ import annotations

import json
import os

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from distcore.data._internal.datasource import (
    BinaryDatasource,
    BlocksDatasource,
    CSVDatasource,
    FileReadError,
    ImageDatasource,
    JSONDatasource,
    NumpyDatasource,
    ParquetDatasource,
    RangeDatasource,
    TextDatasource,
    expand_paths,
)
from distcore.data._internal.datasource.memory import (
    items_table,
    numpy_tables,
    pandas_tables,
    torch_table,
)


def run_all(source, parallelism=-1):
    """Every read task, pickled like the engine ships it, run and concatenated."""
    tasks = source.get_read_tasks(parallelism)
    tables = [t for task in tasks for t in cloudpickle.loads(cloudpickle.dumps(task))()]
    return tasks, (pa.concat_tables(tables, promote_options="permissive") if tables else None)


@pytest.fixture
def hive_dir(tmp_path):
    root = tmp_path / "hive"
    for year in (2020, 2021):
        os.makedirs(root / f"year={year}")
        t = pa.table({"a": np.arange(100) + year, "b": [f"s{i}" if i % 7 else None for i in range(100)]})
        pq.write_table(t, root / f"year={year}" / "part.parquet", row_group_size=10)
    (root / "_SUCCESS").write_text("")
    return str(root)


def test_parquet_reads_partitions_as_columns(hive_dir):
    tasks, table = run_all(ParquetDatasource(hive_dir), 3)
    assert len(tasks) == 3
    assert sum(t.metadata.num_rows for t in tasks) == 200
    expected = pq.read_table(hive_dir).to_pandas()
    got = table.to_pandas()
    assert sorted(got.columns) == ["a", "b", "year"]
    key = ["year", "a"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True)[sorted(got.columns)],
                                  expected.sort_values(key).reset_index(drop=True)[sorted(got.columns)],
                                  check_dtype=False, check_categorical=False)


def test_parquet_filter_prunes_partitions_and_row_groups(hive_dir):
    src = ParquetDatasource(hive_dir).with_filter((pc.field("year") == 2021) & (pc.field("a") > 2100))
    src = src.with_columns(["a"])
    tasks, table = run_all(src)
    # one partition (the other pruned), and only the last two row groups of it match the statistics
    assert {f for t in tasks for f in t.metadata.input_files} == {os.path.join(hive_dir, "year=2021", "part.parquet")}
    assert len(tasks) == 2
    assert table.column_names == ["a"]
    assert sorted(table.column("a").to_pylist()) == list(range(2101, 2121))


def test_parquet_limit_reads_only_what_it_needs(hive_dir):
    tasks, table = run_all(ParquetDatasource(hive_dir).with_limit(15), 10)
    assert len(tasks) == 2 and table.num_rows == 15
    assert ParquetDatasource(hive_dir).with_limit(0).get_read_tasks(4) == []


def test_parquet_bad_input(tmp_path, hive_dir):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ParquetDatasource(str(tmp_path / "missing"))
    with pytest.raises(KeyError, match="nope"):
        ParquetDatasource(hive_dir, columns=["nope"])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="cannot read parquet"):
        ParquetDatasource(str(bad))


def test_paths_dirs_globs_and_lists(tmp_path):
    for name in ("a.csv", "b.csv", "c.txt", ".hidden.csv"):
        (tmp_path / name).write_text("x\n1\n")
    os.makedirs(tmp_path / "sub")
    (tmp_path / "sub" / "d.csv").write_text("x\n2\n")
    assert [os.path.basename(p) for p in expand_paths(str(tmp_path), ["csv"])] == ["a.csv", "b.csv", "d.csv"]
    assert [os.path.basename(p) for p in expand_paths(str(tmp_path / "*.csv"))] == ["a.csv", "b.csv"]
    listed = expand_paths([str(tmp_path / "c.txt"), str(tmp_path / "a.csv")])
    assert [os.path.basename(p) for p in listed] == ["c.txt", "a.csv"]
    with pytest.raises(FileNotFoundError, match="glob"):
        expand_paths(str(tmp_path / "*.nothing"))
    with pytest.raises(ValueError, match="no paths"):
        expand_paths([])
    with pytest.raises(TypeError):
        expand_paths(42)


def test_csv_with_nulls_projection_and_paths(tmp_path):
    frames = [pd.DataFrame({"x": [1, None, 3], "y": ["a", "b", None]}), pd.DataFrame({"x": [4], "y": ["d"]})]
    for i, df in enumerate(frames):
        df.to_csv(tmp_path / f"f{i}.csv", index=False)
    _, table = run_all(CSVDatasource(str(tmp_path), include_paths=True))
    import pyarrow.csv as pacsv

    expected = pa.concat_tables([pacsv.read_csv(tmp_path / f"f{i}.csv") for i in range(2)],
                                promote_options="permissive").to_pandas()
    got = table.to_pandas()
    pd.testing.assert_frame_equal(got[["x", "y"]], expected, check_dtype=False)
    assert got["x"].isna().tolist() == [False, True, False, False]
    assert got["path"].str.endswith(".csv").all()
    _, only_y = run_all(CSVDatasource(str(tmp_path)).with_columns(["y"]))
    assert only_y.column_names == ["y"]
    with pytest.raises(KeyError, match="missing_col"):
        run_all(CSVDatasource(str(tmp_path)).with_columns(["missing_col"]))


def test_csv_parse_error_names_the_file(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(FileReadError, match="bad.csv"):
        run_all(CSVDatasource(str(tmp_path / "bad.csv")))


def test_json_lines_mixed_and_empty(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 3}]
    (tmp_path / "f.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    tasks, table = run_all(JSONDatasource(str(tmp_path)), 1)
    assert len(tasks) == 1
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 3, "b": None}]
    (tmp_path / "arr.json").write_text(json.dumps(rows))
    assert run_all(JSONDatasource(str(tmp_path / "arr.json")))[1].to_pylist() == table.to_pylist()
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(FileReadError, match="must hold objects"):
        run_all(JSONDatasource(str(tmp_path / "bad.json")))


def test_text_numpy_binary(tmp_path):
    (tmp_path / "t.txt").write_text("hello\n\nworld\n")
    assert run_all(TextDatasource(str(tmp_path / "t.txt")))[1].column("text").to_pylist() == ["hello", "world"]
    arr = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.save(tmp_path / "a.npy", arr)
    got = run_all(NumpyDatasource(str(tmp_path)))[1].column("data").combine_chunks().to_numpy_ndarray()
    np.testing.assert_array_equal(got, arr)
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01abc")
    table = run_all(BinaryDatasource(str(tmp_path / "blob.bin"), include_paths=True))[1]
    assert table.column("bytes").to_pylist() == [b"\x00\x01abc"]
    assert table.column("path").to_pylist() == [str(tmp_path / "blob.bin")]


def test_images(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    for i, size in enumerate([(8, 6), (5, 4)]):
        PIL.fromarray(np.full((size[1], size[0], 3), i * 50, np.uint8)).save(tmp_path / f"im{i}.png")
    table = run_all(ImageDatasource(str(tmp_path), size=(4, 6), mode="RGB"), 1)[1]
    images = table.column("image").combine_chunks().to_numpy_ndarray()
    assert images.shape == (2, 4, 6, 3)
    assert images[1].max() == 50
    with pytest.raises(ValueError, match="size"):
        ImageDatasource(str(tmp_path), size=(0, 3))


def test_range_and_range_tensor():
    tasks, table = run_all(RangeDatasource(10), 3)
    assert [t.metadata.num_rows for t in tasks] == [3, 3, 4]
    assert table.column("id").to_pylist() == list(range(10))
    _, t = run_all(RangeDatasource(5, tensor_shape=(2, 2)))
    data = t.column("data").combine_chunks().to_numpy_ndarray()
    assert data.shape == (5, 2, 2) and (data[3] == 3).all()
    tasks, _ = run_all(RangeDatasource(0), 4)
    assert sum(b.num_rows for task in tasks for b in task()) == 0
    assert run_all(RangeDatasource(100).with_limit(7))[1].num_rows == 7
    with pytest.raises(ValueError, match="non-negative"):
        RangeDatasource(-1)


def test_in_memory_sources():
    table = items_table([{"a": 1, "v": np.ones(3)}, {"a": 2, "v": np.zeros(3)}])
    assert table.column("a").to_pylist() == [1, 2]
    assert table.column("v").combine_chunks().to_numpy_ndarray().shape == (2, 3)
    assert items_table([1, 2, 3]).column("item").to_pylist() == [1, 2, 3]
    with pytest.raises(TypeError, match="mixes types"):
        items_table([1, "a"])
    with pytest.raises(TypeError, match="all items"):
        items_table([{"a": 1}, 2])
    df = pd.DataFrame({"x": [1.5, None], "s": ["a", "b"]})
    pd.testing.assert_frame_equal(pandas_tables(df)[0].to_pandas(), df)
    assert numpy_tables(np.arange(6).reshape(3, 2))[0].column("data").type.shape == [2]
    tasks, whole = run_all(BlocksDatasource([pa.table({"x": np.arange(10)})]), 4)
    assert len(tasks) == 4 and whole.column("x").to_pylist() == list(range(10))
    tasks, _ = run_all(BlocksDatasource([pa.table({"x": [1]}), pa.table({"x": [2, 3]})], keep_blocks=True), 8)
    assert [t.metadata.num_rows for t in tasks] == [1, 2]


def test_from_torch():
    torch = pytest.importorskip("torch")

    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.tensor([i, i * i])

    table = torch_table(Squares())
    np.testing.assert_array_equal(table.column("item").combine_chunks().to_numpy_ndarray()[3], [3, 9])
