"""distcore-serve as a package: its version, the core API check, and its CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

import distcore
import distcore.serve
from distcore.serve import _version
from distcore.serve.scripts import main
from distcore.util.versions import require_core_api


def test_from_distcore_import_serve() -> None:
    from distcore import serve

    assert serve is distcore.serve
    assert serve.__version__ == _version.__version__


def test_accepts_the_installed_core() -> None:
    require_core_api("distcore-serve", _version.__version__,
                     api_min=_version.CORE_API_MIN, api_max=_version.CORE_API_MAX)


def test_rejects_a_core_api_outside_its_range() -> None:
    with pytest.raises(ImportError, match=f"distcore-serve {_version.__version__} needs"):
        require_core_api("distcore-serve", _version.__version__, api_min=_version.CORE_API_MIN,
                         api_max=_version.CORE_API_MAX, core_api=_version.CORE_API_MAX, core_version="9.9.9")


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip().startswith(f"distcore-serve {_version.__version__}")


def test_cli_help_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distcore.serve.scripts", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("usage: distcore-serve")


def test_public_api_is_frozen() -> None:
    from distcore import serve

    assert sorted(serve.__all__) == sorted([
        "Application", "ApplicationStatusOverview", "AutoscalingConfig", "Deployment", "DeploymentConfig",
        "DeploymentHandle", "DeploymentResponse", "DeploymentResponseGenerator", "DeploymentStatusOverview",
        "HTTPOptions", "ProxyLocation", "ReplicaContext", "ServeStatus", "__version__", "batch", "delete", "deployment",
        "exceptions", "gRPCOptions", "get_app_handle", "get_deployment_handle", "get_multiplexed_model_id",
        "get_replica_context", "ingress", "multiplexed", "run", "shutdown", "start", "status",
    ])
    for name in serve.__all__:
        assert hasattr(serve, name), name
