"""Config files and the ``distcore-serve`` CLI: build, deploy (idempotent, reconfigure, roll), errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import pytest
import yaml

from distcore import serve
from distcore.serve.scripts import main

APP_SOURCE = textwrap.dedent('''
    from distcore import serve

    @serve.deployment(user_config={"word": "hello"})
    class Greeter:
        def reconfigure(self, config):
            self.word = config["word"]

        async def __call__(self, request):
            return f"{self.word} {VERSION} " + serve.get_replica_context().replica_tag

    @serve.deployment(num_replicas=1)
    class Front:
        def __init__(self, greeter):
            self.greeter = greeter

        async def __call__(self, request):
            return await self.greeter.remote(request.url.path)

    VERSION = "v1"
    app = Front.bind(Greeter.bind())
''')


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    path = tmp_path / "cfg_app_mod.py"
    path.write_text(APP_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("cfg_app_mod", None)


def _deploy(cfg: dict, tmp_path, capsys) -> tuple[int, str]:
    out = tmp_path / "deploy.yaml"
    out.write_text(yaml.safe_dump(cfg))
    sys.modules.pop("cfg_app_mod", None)
    code = main(["deploy", str(out)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_build_deploy_idempotent_reconfigure_and_roll(serve_instance, app_module, tmp_path, capsys):
    out = tmp_path / "config.yaml"
    assert main(["build", "cfg_app_mod:app", "-o", str(out), "--route-prefix", "/cfg-app", "--name", "cfgapp"]) == 0
    cfg = yaml.safe_load(out.read_text())
    app_cfg = cfg["applications"][0]
    assert app_cfg["import_path"] == "cfg_app_mod:app"
    assert {d["name"] for d in app_cfg["deployments"]} == {"Front", "Greeter"}
    greeter = next(d for d in app_cfg["deployments"] if d["name"] == "Greeter")
    assert greeter["user_config"] == {"word": "hello"}
    cfg["http_options"]["port"] = int(serve_instance.rsplit(":", 1)[1])

    code, text = _deploy(cfg, tmp_path, capsys)
    assert code == 0, text
    url = f"{serve_instance}/cfg-app"
    word, version, tag = httpx.get(url, timeout=30).text.split()
    assert (word, version) == ("hello", "v1")

    # the same config again: nothing restarts
    code, text = _deploy(cfg, tmp_path, capsys)
    assert code == 0, text
    assert httpx.get(url, timeout=30).text.split() == [word, version, tag]

    # a new user_config reconfigures the running replica in place
    greeter["user_config"] = {"word": "bonjour"}
    code, text = _deploy(cfg, tmp_path, capsys)
    assert code == 0, text
    assert httpx.get(url, timeout=30).text.split() == ["bonjour", "v1", tag]

    # new code rolls the replicas
    app_module.write_text(APP_SOURCE.replace('VERSION = "v1"', 'VERSION = "v2"'))
    code, text = _deploy(cfg, tmp_path, capsys)
    assert code == 0, text
    word2, version2, tag2 = httpx.get(url, timeout=30).text.split()
    assert (word2, version2) == ("bonjour", "v2") and tag2 != tag

    assert main(["status"]) == 0
    status = yaml.safe_load(capsys.readouterr().out)
    assert status["applications"]["cfgapp"]["status"] == "RUNNING"
    serve.delete("cfgapp")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["applications"][0].update(num_replicas=2), "unknown field(s) 'num_replicas'"),
        (lambda c: c["applications"][0]["deployments"][0].update(num_replicas=-1), "num_replicas"),
        (lambda c: c["applications"][0]["deployments"][0].update(max_ongoing_request=3),
         "did you mean 'max_ongoing_requests'"),
        (lambda c: c["applications"][0].pop("import_path"), "import_path: required"),
        (lambda c: c["applications"][0].update(route_prefix="nope"), "route_prefix: must start with '/'"),
        (lambda c: c["applications"][0].update(import_path="no_such_module_xyz:app"), "cannot import module"),
        (lambda c: c["applications"][0]["deployments"][0].update(name="Ghost"), "not in the application"),
    ],
)
def test_bad_configs_fail_clearly(serve_instance, app_module, tmp_path, capsys, mutate, expected):
    cfg = {"applications": [{"name": "bad", "route_prefix": "/bad", "import_path": "cfg_app_mod:app",
                             "deployments": [{"name": "Greeter", "num_replicas": 1}]}]}
    mutate(cfg)
    code, text = _deploy(cfg, tmp_path, capsys)
    assert code == 1
    assert expected in text
    assert "bad" not in serve.status().applications


def test_bad_yaml(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("applications: [\n  - name: x\n")
    assert main(["deploy", str(path)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_cli_status_in_a_subprocess(serve_instance):
    from distcore._private import worker_state

    core = worker_state.core_worker()
    env = dict(os.environ, DISTCORE_AUTH_TOKEN=core.token)
    out = subprocess.run([sys.executable, "-m", "distcore.serve.scripts", "status", "--address", core.gcs_address],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "applications:" in out.stdout
