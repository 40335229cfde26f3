"""Each library refuses, at import, a core whose API version is outside its pin."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIBRARIES = ("data", "train", "tune", "serve", "rllib")

IMPORT_WITH_API = """
import sys
import distcore
distcore.API_VERSION = sys.argv[1]
import distcore.{lib}
"""


@pytest.mark.parametrize("lib", LIBRARIES)
def test_import_fails_against_an_incompatible_core(lib: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_API.format(lib=lib), "1.0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"ImportError: distcore-{lib} ")
    assert "provides API 1.0" in last_line
    assert 'pip install "distcore>=' in last_line


@pytest.mark.parametrize("lib", LIBRARIES)
def test_import_succeeds_against_the_current_core(lib: str) -> None:
    import distcore

    subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_API.format(lib=lib), distcore.API_VERSION], check=True
    )
