"""tools/release/bump.py: one version for all packages, pins kept in step."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_bump() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bump", ROOT / "tools" / "release" / "bump.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bump = load_bump()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the files bump.py edits."""
    for package in ("core", *bump.LIBRARIES):
        source = bump.version_file(ROOT, package)
        target = bump.version_file(tmp_path, package)
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
        shutil.copy(ROOT / "packages" / package / "pyproject.toml", tmp_path / "packages" / package)
    return tmp_path


def test_repository_versions_agree() -> None:
    assert bump.check(ROOT) == []


def test_bump_sets_versions_and_pins(tree: Path) -> None:
    changed = bump.bump("1.3.0", tree)
    assert len(changed) == 11  # core's _version.py, and each library's _version.py + pyproject
    assert bump.check(tree) == []
    core = bump.version_file(tree, "core").read_text()
    assert '__version__ = "1.3.0"' in core and 'API_VERSION = "1.3"' in core
    assert '"distcore>=1.3,<2"' in (tree / "packages/tune/pyproject.toml").read_text()
    assert '"distcore-tune>=1.3,<2"' in (tree / "packages/rllib/pyproject.toml").read_text()
    lib = bump.version_file(tree, "serve").read_text()
    assert 'CORE_API_MIN = "1.3"' in lib and 'CORE_API_MAX = "2"' in lib
    assert bump.bump("1.3.0", tree) == []  # idempotent


def test_check_reports_a_stray_pin(tree: Path) -> None:
    pyproject = tree / "packages/data/pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"distcore>=0.1,<1"', '"distcore>=0.0,<1"'))
    problems = bump.check(tree)
    assert len(problems) == 1 and "distcore>=0.1,<1" in problems[0]


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "1.2.3.post1", ""])
def test_bump_rejects_a_bad_version(tree: Path, version: str) -> None:
    with pytest.raises(SystemExit, match="bad version"):
        bump.bump(version, tree)
