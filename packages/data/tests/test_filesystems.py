"""Readers on any filesystem (file:// and fsspec URIs, ``filesystem=``), and big CSV/JSON files split
into several read tasks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import distcore.data as dd
from distcore.data._internal.datasource.file_based import read_line_range

pytestmark = pytest.mark.usefixtures("shared_cluster")


@pytest.fixture
def files(tmp_path):
    df = pd.DataFrame({"a": np.arange(20), "b": [f"s{i}" for i in range(20)]})
    (tmp_path / "sub").mkdir()
    df.to_csv(tmp_path / "sub" / "x.csv", index=False)
    pq.write_table(pa.Table.from_pandas(df), tmp_path / "sub" / "x.parquet")
    with open(tmp_path / "sub" / "x.json", "w") as f:
        for row in df.to_dict("records"):
            f.write(json.dumps(row) + "\n")
    return tmp_path, df


def _frame(ds) -> pd.DataFrame:
    return ds.to_pandas().sort_values("a").reset_index(drop=True)[["a", "b"]]


def test_file_uri_and_pyarrow_filesystem(files) -> None:
    root, df = files
    pd.testing.assert_frame_equal(_frame(dd.read_csv(f"file://{root}/sub/x.csv")), df)
    pd.testing.assert_frame_equal(_frame(dd.read_parquet(f"file://{root}/sub")), df)
    sub = pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem())
    pd.testing.assert_frame_equal(_frame(dd.read_parquet("sub/x.parquet", filesystem=sub)), df)
    pd.testing.assert_frame_equal(_frame(dd.read_json("sub", filesystem=sub, file_extensions=["json"])), df)


def test_fsspec_filesystem_object_and_uri(files) -> None:
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem

    root, df = files
    dirfs = DirFileSystem(path=str(root), fs=fsspec.filesystem("file"))
    pd.testing.assert_frame_equal(_frame(dd.read_csv("sub/x.csv", filesystem=dirfs)), df)
    pd.testing.assert_frame_equal(_frame(dd.read_parquet("sub", filesystem=dirfs)), df)
    assert dd.read_text("sub/*.csv", filesystem=dirfs).count() == 21  # a glob through fsspec
    # a URI scheme pyarrow does not know, served by fsspec ("local://" is fsspec's local filesystem)
    pd.testing.assert_frame_equal(_frame(dd.read_json(f"local://{root}/sub/x.json")), df)


def test_bad_filesystems_are_named(files) -> None:
    root, _ = files
    with pytest.raises(ValueError, match="memory:// filesystem lives in one process"):
        dd.read_csv("memory://bucket/x.csv")
    with pytest.raises(TypeError, match="filesystem must be a pyarrow.fs.FileSystem or an fsspec"):
        dd.read_csv("x.csv", filesystem="not a filesystem")
    with pytest.raises(ValueError, match="no pyarrow or fsspec filesystem"):
        dd.read_csv("nosuchscheme42://x.csv")
    with pytest.raises(FileNotFoundError):
        dd.read_csv(f"file://{root}/missing.csv")


def test_line_ranges_cover_every_line_once() -> None:
    data = b"h1,h2\n1,a\n22,bb\n\n333,ccc\n4444,dddd"
    for k in range(1, len(data) + 1):
        bounds = [len(data) * i // k for i in range(k + 1)]
        parts = [read_line_range(pa.BufferReader(data), bounds[i], bounds[i + 1], len(data)) for i in range(k)]
        assert b"".join(parts) == data, k


def test_big_csv_and_json_files_are_read_by_several_tasks(tmp_path) -> None:
    n = 60_000
    df = pd.DataFrame({"a": np.arange(n), "b": np.random.default_rng(0).random(n), "c": [f"row {i}" for i in range(n)]})
    df.to_csv(tmp_path / "big.csv", index=False)
    df.to_json(tmp_path / "big.json", orient="records", lines=True)
    assert (tmp_path / "big.csv").stat().st_size > 4 * 256 * 1024
    for ds in (dd.read_csv(str(tmp_path / "big.csv"), override_num_blocks=4),
               dd.read_json(str(tmp_path / "big.json"), override_num_blocks=4)):
        mat = ds.materialize()
        assert mat.num_blocks() >= 4
        assert "Operator 0 Read" in mat.stats() and "4 tasks executed" in mat.stats()
        out = mat.to_pandas().sort_values("a").reset_index(drop=True)
        pd.testing.assert_frame_equal(out[["a", "b", "c"]], df, check_exact=False)
    # a CSV whose values may hold newlines is split at record boundaries (test_csv_split.py)
    import pyarrow.csv as pacsv

    one = dd.read_csv(str(tmp_path / "big.csv"), override_num_blocks=4,
                      parse_options=pacsv.ParseOptions(newlines_in_values=True)).materialize()
    assert one.count() == n and "4 tasks executed" in one.stats()


def test_writers_take_uris_and_filesystems(files) -> None:
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem

    root, df = files
    ds = dd.from_pandas(df, override_num_blocks=2)
    ds.write_parquet(f"file://{root}/out_pq")
    pd.testing.assert_frame_equal(_frame(dd.read_parquet(str(root / "out_pq"))), df)
    dirfs = DirFileSystem(path=str(root), fs=fsspec.filesystem("file"))
    ds.write_csv("out_csv", filesystem=dirfs)
    ds.write_json("out_csv", filesystem=dirfs, mode="overwrite")  # only .json files added; csv kept
    assert sorted(p.suffix for p in (root / "out_csv").iterdir()) == [".csv", ".csv", ".json", ".json"]
    assert not [p for p in (root / "out_csv").iterdir() if p.name.startswith(".")]  # no temp files left
    pd.testing.assert_frame_equal(_frame(dd.read_csv("out_csv", filesystem=dirfs, file_extensions=["csv"])), df)
    with pytest.raises(FileExistsError, match="not empty"):
        ds.write_csv("out_csv", filesystem=dirfs, mode="error")
