"""distcore-train as a package: its version, the core API check, and its CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

import distcore
import distcore.train
from distcore.train import _check_core_api, _version
from distcore.train.scripts import main


def test_from_distcore_import_train() -> None:
    from distcore import train

    assert train is distcore.train
    assert train.__version__ == _version.__version__


def test_accepts_the_installed_core() -> None:
    _check_core_api(distcore.API_VERSION, distcore.__version__)


@pytest.mark.parametrize("api", ["0.0", _version.CORE_API_MAX, "99.0", "unknown"])
def test_rejects_an_incompatible_core_naming_both_versions_and_the_fix(api: str) -> None:
    with pytest.raises(ImportError) as info:
        _check_core_api(api, "9.9.9")
    message = str(info.value)
    assert f"distcore-train {_version.__version__}" in message
    assert f"distcore 9.9.9 provides API {api}" in message
    assert f'pip install "distcore>={_version.CORE_API_MIN},<{_version.CORE_API_MAX}"' in message


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().startswith(f"distcore-train {_version.__version__}")


def test_cli_help_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distcore.train.scripts", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: distcore-train")
