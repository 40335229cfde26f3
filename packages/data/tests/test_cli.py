"""The distcore-data CLI: schema, head, count and convert on real files, on the shared cluster."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distcore.data.scripts import detect_format, main


@pytest.fixture(scope="module", autouse=True)
def _cluster(cluster):
    yield cluster


@pytest.fixture
def csv_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    frames = [pd.DataFrame({"a": np.arange(i * 10, i * 10 + 10), "s": [f"r{j}" for j in range(10)]}) for i in range(3)]
    for i, df in enumerate(frames):
        df.to_csv(d / f"part{i}.csv", index=False)
    return d, pd.concat(frames, ignore_index=True)


def run(capsys, *argv):
    code = main([*argv, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_schema_head_count(capsys, csv_dir):
    d, df = csv_dir
    code, out, _ = run(capsys, "schema", str(d))
    assert code == 0 and out.split() == ["a", "int64", "s", "string"]
    code, out, _ = run(capsys, "head", str(d / "part0.csv"), "-n", "3")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == df.head(3).to_dict("records")
    code, out, _ = run(capsys, "count", str(d / "*.csv"))
    assert code == 0 and out.strip() == "30"


@pytest.mark.parametrize("to", ["parquet", "json", "csv"])
def test_convert_round_trips(capsys, csv_dir, tmp_path, to):
    d, df = csv_dir
    dest = tmp_path / f"out_{to}"
    code, out, err = run(capsys, "convert", str(d), str(dest), "--to", to)
    assert code == 0, err
    assert out.strip() == f"wrote 30 rows in 3 {to} files to {dest}"
    files = sorted(os.listdir(dest))
    if to == "parquet":
        back = pd.concat([pq.read_table(dest / f).to_pandas() for f in files], ignore_index=True)
    elif to == "json":
        back = pd.concat([pd.read_json(dest / f, lines=True) for f in files], ignore_index=True)
    else:
        back = pd.concat([pd.read_csv(dest / f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(back.sort_values("a").reset_index(drop=True), df, check_dtype=False)
    code, _, err = run(capsys, "convert", str(d), str(dest), "--to", to)
    assert code != 0 and "not empty" in err + str(code)
    code, out, _ = run(capsys, "count", str(dest))
    assert out.strip() == "30"


def test_errors_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "count", str(tmp_path / "missing"))
    assert code == 2 and "no such file or directory" in err
    (tmp_path / "blob.xyz").write_text("?")
    code, _, err = run(capsys, "schema", str(tmp_path / "blob.xyz"))
    assert code == 2 and "--format" in err
    code, _, err = run(capsys, "head", str(tmp_path / "blob.xyz"), "-n", "-1", "--format", "text")
    assert code == 2 and "-n must be" in err
    with pytest.raises(SystemExit):
        main(["convert", str(tmp_path), str(tmp_path / "o"), "--to", "xml"])
    capsys.readouterr()


def test_detect_format(tmp_path):
    for name in ("a.parquet", "b.parquet", "c.csv"):
        (tmp_path / name).write_text("")
    assert detect_format(str(tmp_path)) == "parquet"
    assert detect_format(str(tmp_path / "c.csv")) == "csv"
