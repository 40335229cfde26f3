"""`import distcore.<library>` without its distribution names the distribution to install."""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

import pytest

import distcore
from distcore import _version
from distcore._private.missing_library import LIBRARIES, MissingLibraryFinder, install

CORE_DIR = str(Path(_version.__file__).parent)


def test_importing_distcore_installs_the_finder_last() -> None:
    finders = [f for f in sys.meta_path if isinstance(f, MissingLibraryFinder)]
    assert len(finders) == 1


@pytest.mark.parametrize("lib", ["data", "train", "tune", "serve", "rllib"])
def test_missing_library_names_its_distribution(lib: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide every installed library: only core's own directory stays on the namespace path.
    monkeypatch.setattr(distcore, "__path__", [CORE_DIR])
    monkeypatch.delitem(sys.modules, f"distcore.{lib}", raising=False)
    monkeypatch.delattr(distcore, lib, raising=False)
    with pytest.raises(ModuleNotFoundError) as info:
        __import__(f"distcore.{lib}")
    assert info.value.name == f"distcore.{lib}"
    assert f"pip install distcore-{lib}" in str(info.value)


def test_other_names_are_left_to_the_normal_error() -> None:
    finder = MissingLibraryFinder()
    assert finder.find_spec("distcore.nonexistent") is None
    assert finder.find_spec("serve") is None
    assert finder.find_spec("distcore.serve.deployment") is None
    with pytest.raises(ModuleNotFoundError, match="distcore.nonexistent'$"):
        __import__("distcore.nonexistent")


def test_finders_appended_later_still_win(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModuleSpec("distcore.serve", loader=None)

    class LateFinder:
        def find_spec(
            self, name: str, path: object = None, target: ModuleType | None = None
        ) -> ModuleSpec | None:
            return spec if name == "distcore.serve" else None

    ours = MissingLibraryFinder()
    monkeypatch.setattr(sys, "meta_path", [ours, LateFinder()])
    assert ours.find_spec("distcore.serve") is spec
    with pytest.raises(ModuleNotFoundError, match="pip install distcore-tune"):
        ours.find_spec("distcore.tune")


def test_install_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    others = [f for f in sys.meta_path if not isinstance(f, MissingLibraryFinder)]
    monkeypatch.setattr(sys, "meta_path", list(others))
    install()
    install()
    assert isinstance(sys.meta_path[-1], MissingLibraryFinder)
    assert sys.meta_path[:-1] == others


def test_every_library_is_mapped_to_its_distribution() -> None:
    assert LIBRARIES == {
        f"distcore.{lib}": f"distcore-{lib}" for lib in ("data", "train", "tune", "serve", "rllib")
    }
