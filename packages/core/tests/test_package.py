"""Core as a package: versions, the public/private split, and the namespace libraries join."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest

import distcore
from distcore import _version

LIBRARIES = ("data", "train", "tune", "serve", "rllib")


def test_versions() -> None:
    assert distcore.__version__ == _version.__version__ == importlib.metadata.version("distcore")
    assert re.fullmatch(r"\d+\.\d+", distcore.API_VERSION)
    assert distcore.__version__.startswith(distcore.API_VERSION + ".")
    assert {"__version__", "API_VERSION"} <= set(distcore.__all__)


def test_core_is_a_regular_package_that_extends_its_path() -> None:
    assert distcore.__file__ is not None and distcore.__file__.endswith("__init__.py")
    assert Path(_version.__file__).parent in [Path(p) for p in distcore.__path__]


@pytest.mark.parametrize("lib", LIBRARIES)
def test_library_imports_exactly_when_its_distribution_is_installed(lib: str) -> None:
    try:
        importlib.metadata.distribution(f"distcore-{lib}")
    except importlib.metadata.PackageNotFoundError:
        with pytest.raises(ModuleNotFoundError, match=f"pip install distcore-{lib}"):
            importlib.import_module(f"distcore.{lib}")
    else:
        module = importlib.import_module(f"distcore.{lib}")
        assert getattr(distcore, lib) is module
        assert module.__version__ == importlib.metadata.version(f"distcore-{lib}")
