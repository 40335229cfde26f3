"""CSV files split into byte ranges: quoted values that hold newlines (and quotes) read like pandas does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import distcore.data as dd
from distcore.data._internal.datasource.csv_split import record_layout
from distcore.data._internal.datasource.file_based import read_line_range


def _ranges(data: bytes, k: int) -> list[bytes]:
    cuts = [len(data) * i // k for i in range(k + 1)]
    bounds = record_layout(pa.BufferReader(data), len(data), cuts).bounds
    return [read_line_range(pa.BufferReader(data), s, e, len(data)) for s, e in zip(bounds, bounds[1:], strict=False)
            if e > s]


def test_every_cut_lands_on_a_record_boundary() -> None:
    data = b'h1,h2\n1,"a\nb"\n2,"say ""hi""\n\nbye"\n3,plain\n4,"x,\ny"'
    rows = pacsv.read_csv(pa.BufferReader(data), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    header = data[:data.index(b"\n") + 1]
    for k in range(1, len(data) + 1):
        parts = _ranges(data, k)
        assert b"".join(parts) == data, k
        tables = [pacsv.read_csv(pa.BufferReader(p if i == 0 else header + p),
                                 parse_options=pacsv.ParseOptions(newlines_in_values=True))
                  for i, p in enumerate(parts)]
        assert [r for t in tables for r in t.to_pylist()] == rows.to_pylist(), k


def test_a_file_without_quotes_keeps_its_line_cuts() -> None:
    data = b"a,b\n" + b"".join(b"%d,x%d\n" % (i, i) for i in range(1000))
    layout = record_layout(pa.BufferReader(data), len(data), [0, 100, 5000, len(data)])
    assert not layout.quoted_newlines and layout.header_end == 4
    assert layout.bounds[1] == data.index(b"\n", 99) + 1 and layout.bounds[2] == data.index(b"\n", 4999) + 1


def _frame(n: int, multiline: bool) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    text = [f'note {i}\nsecond line, "quoted" {i}\n' if multiline and i % 3 else f"note {i}" for i in range(n)]
    return pd.DataFrame({"a": np.arange(n), "b": rng.random(n), "text": text})


@pytest.mark.usefixtures("shared_cluster")
@pytest.mark.parametrize("multiline", [True, False])
def test_split_csv_equals_pandas(tmp_path, multiline) -> None:
    n = 40_000
    df = _frame(n, multiline)
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    size = path.stat().st_size
    assert size > 4 * 256 * 1024
    raw = path.read_bytes()
    cuts = [size * i // 4 for i in range(5)]
    if multiline:  # a naive newline split would cut inside quoted values here
        naive = [raw.index(b"\n", c - 1) + 1 for c in cuts[1:-1]]
        layout = record_layout(pa.BufferReader(raw), size, cuts)
        assert layout.quoted_newlines and naive != layout.bounds[1:-1]
    ds = dd.read_csv(str(path), override_num_blocks=4).materialize()
    assert "4 tasks executed" in ds.stats()
    out = ds.to_pandas().sort_values("a").reset_index(drop=True)
    expected = pd.read_csv(path)
    pd.testing.assert_frame_equal(out, expected, check_exact=False)
    # the same with the parser told up front that values may hold newlines
    po = pacsv.ParseOptions(newlines_in_values=True)
    told = dd.read_csv(str(path), override_num_blocks=4, parse_options=po).to_pandas()
    pd.testing.assert_frame_equal(told.sort_values("a").reset_index(drop=True), expected, check_exact=False)


@pytest.mark.usefixtures("shared_cluster")
def test_a_whole_file_with_quoted_newlines_reads_without_the_option(tmp_path) -> None:
    # one read task per file: pyarrow's chunker needs newlines_in_values for a big file; the reader retries with it
    df = _frame(300_000, True)
    df.to_csv(tmp_path / "one.csv", index=False)
    out = dd.read_csv(str(tmp_path / "one.csv"), override_num_blocks=1).to_pandas()
    pd.testing.assert_frame_equal(out, pd.read_csv(tmp_path / "one.csv"), check_exact=False)


@pytest.mark.usefixtures("shared_cluster")
def test_an_escape_char_turns_splitting_off(tmp_path) -> None:
    df = _frame(30_000, False)
    df.to_csv(tmp_path / "e.csv", index=False)
    po = pacsv.ParseOptions(escape_char="\\")
    ds = dd.read_csv(str(tmp_path / "e.csv"), override_num_blocks=4, parse_options=po).materialize()
    assert "1 tasks executed" in ds.stats() and ds.count() == 30_000
