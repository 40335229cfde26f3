"""Datasinks: one file per block, atomic (temp + rename), read back equal to what was written."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import distcore
import distcore.data as dd
from distcore.data._internal.datasink import (
    CSVDatasink,
    Datasink,
    JSONDatasink,
    NumpyDatasink,
    ParquetDatasink,
    sink_for,
    write_blocks,
    write_dataset,
)
from distcore.data._internal.datasource._meta import tensor_array


@pytest.fixture(scope="module", autouse=True)
def _cluster(cluster):
    yield cluster


@pytest.fixture
def blocks():
    return [pa.table({"a": [1, 2, None], "s": ["x", None, "z"]}), pa.table({"a": [4], "s": ["w"]}),
            pa.table({"a": pa.array([], pa.int64()), "s": pa.array([], pa.string())})]


def test_parquet_one_file_per_nonempty_block(tmp_path, blocks):
    results = write_blocks([distcore.put(b) for b in blocks], ParquetDatasink(str(tmp_path / "out")))
    files = sorted(os.listdir(tmp_path / "out"))
    assert len(files) == 2 and all(f.endswith(".parquet") for f in files)
    assert [r.num_rows for r in results] == [3, 1, 0]
    back = pq.read_table(tmp_path / "out")
    assert back.to_pydict() == pa.concat_tables(blocks).to_pydict()


def test_csv_and_json_round_trip(tmp_path, blocks):
    refs = [distcore.put(b) for b in blocks]
    write_blocks(refs, CSVDatasink(str(tmp_path / "csv")))
    csv_back = pd.concat([pd.read_csv(tmp_path / "csv" / f) for f in sorted(os.listdir(tmp_path / "csv"))])
    assert csv_back["a"].tolist()[:2] == [1, 2] and pd.isna(csv_back["a"].tolist()[2])
    write_blocks(refs, JSONDatasink(str(tmp_path / "json")))
    lines = [json.loads(line) for f in sorted(os.listdir(tmp_path / "json"))
             for line in (tmp_path / "json" / f).read_text().splitlines()]
    assert lines == pa.concat_tables(blocks).to_pylist()


def test_numpy_and_tensor_columns(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    block = pa.table({"t": tensor_array(arr), "id": [0, 1, 2]})
    write_blocks([distcore.put(block)], NumpyDatasink(str(tmp_path / "np"), column="t"))
    (name,) = os.listdir(tmp_path / "np")
    np.testing.assert_array_equal(np.load(tmp_path / "np" / name), arr)
    write_blocks([distcore.put(block)], JSONDatasink(str(tmp_path / "js")))
    (name,) = os.listdir(tmp_path / "js")
    assert json.loads((tmp_path / "js" / name).read_text().splitlines()[0])["t"] == arr[0].tolist()
    with pytest.raises(Exception, match="cannot be written as CSV"):
        write_blocks([distcore.put(block)], CSVDatasink(str(tmp_path / "bad")))


def test_failed_write_leaves_no_partial_files(tmp_path):
    class Exploding(ParquetDatasink):
        def write_block(self, block, path):
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    failures = []

    class Watching(Exploding):
        def on_write_failed(self, error):
            failures.append(error)

    with pytest.raises(Exception, match="disk full"):
        write_blocks([distcore.put(pa.table({"a": [1]}))], Watching(str(tmp_path / "o")))
    assert os.listdir(tmp_path / "o") == [] and len(failures) == 1


def test_bad_sink_arguments(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        ParquetDatasink(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="unknown write format"):
        sink_for("xml", str(tmp_path))
    with pytest.raises(ValueError, match="no pyarrow or fsspec filesystem"):
        ParquetDatasink("nosuchscheme42://bucket/x")
    os.makedirs(tmp_path / "full")
    (tmp_path / "full" / "x.parquet").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        write_blocks([], ParquetDatasink(str(tmp_path / "full"), mode="error"))
    write_blocks([distcore.put(pa.table({"a": [1]}))], ParquetDatasink(str(tmp_path / "full"), mode="overwrite"))
    assert len(os.listdir(tmp_path / "full")) == 1
    with pytest.raises(KeyError, match="nope"):
        distcore.get(write_blocks([distcore.put(pa.table({"a": [1]}))],
                                  NumpyDatasink(str(tmp_path / "n"), column="nope")))


def test_write_dataset_end_to_end(tmp_path):
    df = pd.DataFrame({"x": np.arange(1000), "y": np.arange(1000) % 7})
    ds = dd.from_pandas(df, override_num_blocks=5)
    results = write_dataset(ds, ParquetDatasink(str(tmp_path / "ds")))
    assert sum(r.num_rows for r in results) == 1000
    files = sorted(os.listdir(tmp_path / "ds"))
    assert len(files) == 5
    # the file names keep the block order
    pd.testing.assert_frame_equal(pd.concat([pd.read_parquet(tmp_path / "ds" / f) for f in files],
                                            ignore_index=True), df)


def test_custom_datasink_sees_every_block():
    class Counting(Datasink):
        def __init__(self):
            self.done = None

        def write(self, blocks, ctx):
            return sum(b.num_rows for b in blocks)

        def on_write_complete(self, results):
            self.done = sum(results)

    sink = Counting()
    write_dataset(dd.range(123, override_num_blocks=4), sink)
    assert sink.done == 123
