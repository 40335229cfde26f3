"""``import distcore.data`` stays cheap: the engine and heavy readers load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pyarrow", "pyarrow.dataset", "pyarrow.compute", "pyarrow.csv", "pyarrow.json", "pandas", "numpy", "torch",
         "tqdm")

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import distcore
t1 = time.perf_counter()
import distcore.data as dd
t2 = time.perf_counter()
loaded = [m for m in {heavy!r} if m in sys.modules]
ds = dd.range(3)
print(json.dumps({{"core_s": t1 - t0, "data_s": t2 - t1, "loaded": loaded, "engine": type(ds).__name__,
                  "after": [m for m in ("pyarrow", "pyarrow.dataset") if m in sys.modules]}}))
"""


def _probe() -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY)], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_module_and_costs_little_over_core() -> None:
    result = _probe()
    assert result["loaded"] == [], f"'import distcore.data' imported {result['loaded']}"
    # data's own import cost on top of core's (core's own import is timed and reported by core)
    assert result["data_s"] < 0.5, f"import distcore.data took {result['data_s']:.3f}s over import distcore"
    # first use of a name loads the engine, and still not pyarrow.dataset (parquet loads it on use)
    assert result["engine"] == "Dataset"
    assert result["after"] == ["pyarrow"]


def test_lazy_names_resolve_and_unknown_names_fail() -> None:
    import pytest

    import distcore.data as dd

    for name in dd.__all__:
        assert getattr(dd, name) is not None, name
    assert "read_parquet" in dir(dd)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dd.nope  # noqa: B018
