"""The six distributions build, and `distcore` + `distcore-tune` work alone in a fresh venv.

Builds every wheel and sdist with hatchling (no network), installs only the core
and tune wheels, plus the train and data wheels tune depends on (their third-party
dependencies come from the package index) into
a new virtual environment without system site-packages, and checks there that
`from distcore import tune` works while `import distcore.serve` names the
distribution to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("data", "train", "tune", "serve", "rllib")

# Building and installing takes seconds; the timeout leaves room for a cold pip cache.
pytestmark = pytest.mark.timeout(300)

CHECK = textwrap.dedent(
    """
    import sys
    from distcore import tune
    import distcore

    assert tune.__file__.startswith(sys.prefix), tune.__file__
    print("core", distcore.__version__, "api", distcore.API_VERSION, "tune", tune.__version__)
    try:
        import distcore.serve
    except ImportError as error:
        print("serve:", type(error).__name__, error)
    else:
        sys.exit("distcore.serve imported, but distcore-serve is not installed")
    """
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheels needs hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release" / "build_packages.py"), "--out", str(out)],
        check=True,
    )
    return out


def wheel(dist: Path, distribution: str) -> Path:
    (path,) = dist.glob(f"{distribution.replace('-', '_')}-*.whl")
    return path


def test_every_package_builds_a_wheel_and_an_sdist(dist: Path) -> None:
    for distribution in ["distcore", *(f"distcore-{lib}" for lib in LIBRARIES)]:
        wheel(dist, distribution)
        (_sdist,) = dist.glob(f"{distribution.replace('-', '_')}-*.tar.gz")


@pytest.mark.parametrize("lib", LIBRARIES)
def test_library_wheel_ships_only_its_subpackage(dist: Path, lib: str) -> None:
    names = zipfile.ZipFile(wheel(dist, f"distcore-{lib}")).namelist()
    code = [name for name in names if ".dist-info/" not in name]
    assert f"distcore/{lib}/__init__.py" in code
    assert [name for name in code if not name.startswith(f"distcore/{lib}/")] == []


def test_core_wheel_ships_the_namespace_root(dist: Path) -> None:
    names = zipfile.ZipFile(wheel(dist, "distcore")).namelist()
    assert "distcore/__init__.py" in names
    assert not any(
        name.startswith(tuple(f"distcore/{lib}/" for lib in LIBRARIES)) for name in names
    )


def test_core_and_tune_alone_in_a_fresh_venv(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # This environment's pip installs into the new venv; dependencies come from the index.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel(dist, "distcore")),
            str(wheel(dist, "distcore-tune")),
            # tune depends on train (its RunConfig, Checkpoint, ...), and train on data
            str(wheel(dist, "distcore-train")),
            str(wheel(dist, "distcore-data")),
        ],
        check=True,
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    result = subprocess.run(
        [str(python), "-I", "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "serve: ModuleNotFoundError" in result.stdout
    assert "pip install distcore-serve" in result.stdout
    for command in ("distcore", "distcore-tune"):
        version = subprocess.run(
            [str(venv / "bin" / command), "--version"], env=env, capture_output=True, text=True
        )
        assert version.returncode == 0, version.stderr
        assert version.stdout.startswith(f"{command} ")
