"""Tests for distcore._private.runtime_env and the public distcore.runtime_env."""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import distcore.runtime_env as public
from distcore._private import runtime_env as renv
from distcore.exceptions import RuntimeEnvSetupError
from distcore.runtime_env import RuntimeEnv, RuntimeEnvConfig


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    environ, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    modules = set(sys.modules)
    yield
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith("dc_test_"):
            del sys.modules[name]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class _KV:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts: list[str] = []

    def put(self, key: str, value: bytes) -> None:
        self.puts.append(key)
        self.data[key] = value

    def exists(self, key: str) -> bool:
        return key in self.data


def _names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_public_surface() -> None:
    assert sorted(public.__all__) == ["RuntimeEnv", "RuntimeEnvConfig"]


# --------------------------------------------------------------------------- validate


def test_validate_empty() -> None:
    assert renv.validate(None) == {}
    assert renv.validate({}) == {}
    assert renv.validate({"env_vars": None}) == {}


def test_validate_env_vars() -> None:
    assert renv.validate({"env_vars": {"A": "1", "B": ""}}) == {"env_vars": {"A": "1", "B": ""}}
    with pytest.raises(TypeError) as info:
        renv.validate({"env_vars": {"A": 1}})
    assert "env_vars" in str(info.value) and "'A'" in str(info.value) and "1" in str(info.value)
    with pytest.raises(TypeError, match="5"):
        renv.validate({"env_vars": {5: "x"}})
    with pytest.raises(TypeError, match="env_vars"):
        renv.validate({"env_vars": ["A=1"]})
    with pytest.raises(ValueError, match="'A=B'"):
        renv.validate({"env_vars": {"A=B": "1"}})


def test_validate_working_dir(tmp_path: Path) -> None:
    assert renv.validate({"working_dir": str(tmp_path)}) == {"working_dir": str(tmp_path)}
    assert renv.validate({"working_dir": tmp_path}) == {"working_dir": str(tmp_path)}
    os.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert renv.validate({"working_dir": "sub"}) == {"working_dir": str(tmp_path / "sub")}
    uri = "dcpkg://" + "a" * 64 + ".zip"
    assert renv.validate({"working_dir": uri}) == {"working_dir": uri}
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError) as info:
        renv.validate({"working_dir": missing})
    assert missing in str(info.value) and "working_dir" in str(info.value)
    with pytest.raises(ValueError, match="s3://bucket/x.zip"):
        renv.validate({"working_dir": "s3://bucket/x.zip"})
    with pytest.raises(ValueError, match="dcpkg"):
        renv.validate({"working_dir": "dcpkg://" + "a" * 64 + ".whl"})
    with pytest.raises(TypeError, match="working_dir"):
        renv.validate({"working_dir": 3})


def test_validate_py_modules(tmp_path: Path) -> None:
    pkg = _tree(tmp_path / "pkg", {"__init__.py": ""})
    mod = tmp_path / "mod.py"
    mod.write_text("")
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    whl.write_bytes(b"")
    uri = "dcpkg://" + "b" * 64 + ".whl"
    out = renv.validate({"py_modules": [str(pkg), mod, str(whl), uri, pytest]})
    assert out["py_modules"][:4] == [str(pkg), str(mod), str(whl), uri]
    assert out["py_modules"][4] == os.path.dirname(pytest.__file__)
    bad = tmp_path / "data.txt"
    bad.write_text("")
    for value in (str(bad), str(tmp_path / "missing")):
        with pytest.raises(ValueError) as info:
            renv.validate({"py_modules": [value]})
        assert "py_modules" in str(info.value) and value in str(info.value)
    with pytest.raises(TypeError, match="py_modules"):
        renv.validate({"py_modules": str(pkg)})
    with pytest.raises(TypeError, match="py_modules"):
        renv.validate({"py_modules": [1]})


def test_validate_config_and_excludes() -> None:
    cfg = {"setup_timeout_seconds": 10, "eager_install": False}
    assert renv.validate({"config": cfg}) == {"config": cfg}
    assert renv.validate({"config": {"setup_timeout_seconds": -1}})
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="setup_timeout_seconds"):
            renv.validate({"config": {"setup_timeout_seconds": bad}})
    with pytest.raises(ValueError, match="'timeout'"):
        renv.validate({"config": {"timeout": 3}})
    with pytest.raises(TypeError, match="eager_install"):
        renv.validate({"config": {"eager_install": "yes"}})
    assert renv.validate({"excludes": ["*.log", "data/"]}) == {"excludes": ["*.log", "data/"]}
    for bad_excludes in ("*.log", [1]):
        with pytest.raises(TypeError, match="excludes"):
            renv.validate({"excludes": bad_excludes})


@pytest.mark.parametrize("field", ["pip", "conda", "uv", "container", "image_uri"])
def test_validate_unsupported_fields(field: str) -> None:
    with pytest.raises(ValueError) as info:
        renv.validate({field: ["x"]})
    message = str(info.value)
    assert repr(field) in message and "not supported" in message and "Install" in message


def test_validate_unknown_field() -> None:
    with pytest.raises(ValueError) as info:
        renv.validate({"env_var": {}})
    assert "'env_var'" in str(info.value) and "'env_vars'" in str(info.value)
    with pytest.raises(TypeError, match="runtime_env"):
        renv.validate("env")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- merge / key


def test_merge() -> None:
    parent = {"env_vars": {"A": "1", "B": "2"}, "working_dir": "/p", "py_modules": ["/m"]}
    child = {"env_vars": {"B": "3", "C": "4"}, "working_dir": "/c"}
    assert renv.merge(parent, child) == {
        "env_vars": {"A": "1", "B": "3", "C": "4"},
        "working_dir": "/c",
        "py_modules": ["/m"],
    }
    assert parent["env_vars"] == {"A": "1", "B": "2"}
    assert renv.merge(None, child) == child
    assert renv.merge(parent, None) == parent
    assert renv.merge(None, None) == {}


def test_env_key() -> None:
    assert renv.env_key(None) == "" and renv.env_key({}) == ""
    assert renv.env_key({"config": {"setup_timeout_seconds": 5}}) == ""
    a = renv.env_key({"env_vars": {"A": "1", "B": "2"}})
    assert a == renv.env_key({"env_vars": {"B": "2", "A": "1"}})
    assert a == renv.env_key({"env_vars": {"A": "1", "B": "2"}, "config": {"eager_install": True}})
    assert a != renv.env_key({"env_vars": {"A": "2", "B": "2"}})
    assert len(a) == 16


# --------------------------------------------------------------------------- packaging


def test_package_dir_is_deterministic(tmp_path: Path) -> None:
    files = {"a.py": "A = 1\n", "sub/b.txt": "b", "sub/deep/c.py": "C = 3\n", "empty/.keep": ""}
    one = _tree(tmp_path / "one", files)
    two = _tree(tmp_path / "two", dict(reversed(list(files.items()))))
    os.utime(two / "a.py", (1_000_000, 1_000_000))
    uri1, data1 = renv.package_dir(str(one))
    uri2, data2 = renv.package_dir(str(two))
    assert uri1 == uri2 and data1 == data2
    assert uri1.startswith("dcpkg://") and uri1.endswith(".zip") and len(uri1) == len("dcpkg://.zip") + 64
    assert renv.package_dir(str(one)) == (uri1, data1)
    (one / "a.py").write_text("A = 2\n")
    assert renv.package_dir(str(one))[0] != uri1
    assert _names(data1) == sorted(_names(data1))


def test_package_dir_skips_and_excludes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "proj",
        {
            "main.py": "",
            "keep.log": "",
            "x.log": "",
            "__pycache__/main.cpython-311.pyc": "",
            ".git/HEAD": "",
            "data/big.bin": "",
            "src/data/small.txt": "",
            "build/out.o": "",
            "src/build/keep.txt": "",
            "src/mod.pyc": "",
            "nested/a/tmp/t.txt": "",
        },
    )
    _, data = renv.package_dir(str(root), ["*.log", "!keep.log", "/data/", "/build", "**/tmp/", "# comment", ""])
    names = _names(data)
    for present in ("main.py", "keep.log", "src/data/small.txt", "src/build/keep.txt", "nested/a/"):
        assert present in names
    for absent in ("x.log", "data/big.bin", "build/out.o", "nested/a/tmp/t.txt", ".git/HEAD", "src/mod.pyc"):
        assert absent not in names
    assert not any("__pycache__" in n or n.startswith(".git") for n in names)


def test_exclude_patterns() -> None:
    excluded = renv._compile_excludes(["docs/*.md", "a?c", "[xy].txt", "logs/**", "deep/**/z"])
    assert excluded("docs/x.md", False) and not excluded("docs/sub/x.md", False)
    assert excluded("abc", False) and excluded("q/abc", False) and not excluded("abbc", False)
    assert excluded("x.txt", False) and not excluded("z.txt", False)
    assert excluded("logs/a/b", False) and not excluded("logs", True)
    assert excluded("deep/z", False) and excluded("deep/a/b/z", False)


def test_package_dir_include_parent_and_modes(tmp_path: Path) -> None:
    pkg = _tree(tmp_path / "mypkg", {"__init__.py": "", "run.sh": "#!/bin/sh\n"})
    (pkg / "run.sh").chmod(0o755)
    _, data = renv.package_dir(str(pkg), include_parent_dir=True)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.namelist() == ["mypkg/", "mypkg/__init__.py", "mypkg/run.sh"]
    assert (zf.getinfo("mypkg/run.sh").external_attr >> 16) & 0o777 == 0o755
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in zf.infolist())


def test_package_size_limit(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "blob.bin").write_bytes(os.urandom(64 * 1024))
    assert renv.MAX_PACKAGE_SIZE == 512 * 1024 * 1024
    with pytest.raises(ValueError) as info:
        renv.package_dir(str(root), max_size=16 * 1024)
    assert "limit" in str(info.value) and "excludes" in str(info.value) and str(root) in str(info.value)
    assert renv.package_dir(str(root), ["*.bin"], max_size=16 * 1024)


def test_package_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        renv.package_dir(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a file"):
        renv.package_module_file(str(tmp_path))


def test_package_module_file(tmp_path: Path) -> None:
    mod = tmp_path / "single.py"
    mod.write_text("X = 1\n")
    uri, data = renv.package_module_file(str(mod))
    assert _names(data) == ["single.py"] and uri.endswith(".zip")
    assert renv.package_module_file(str(mod)) == (uri, data)


def test_upload_packages(tmp_path: Path) -> None:
    wd = _tree(tmp_path / "wd", {"main.py": "", "skip.tmp": ""})
    pkg = _tree(tmp_path / "pkg", {"__init__.py": ""})
    mod = _tree(tmp_path / "m", {"single.py": ""}) / "single.py"
    whl = tmp_path / "w-1.0-py3-none-any.whl"
    whl.write_bytes(b"wheel bytes")
    kv = _KV()
    env = {
        "working_dir": str(wd),
        "py_modules": [str(pkg), str(mod), str(whl)],
        "excludes": ["*.tmp"],
        "env_vars": {"A": "1"},
    }
    out = renv.upload_packages(env, kv.put, kv.exists)
    assert "excludes" not in out and out["env_vars"] == {"A": "1"}
    assert out["working_dir"].startswith("dcpkg://") and out["working_dir"].endswith(".zip")
    assert out["py_modules"][2].endswith(".whl")
    assert sorted(kv.puts) == sorted([out["working_dir"], *out["py_modules"]])
    assert "skip.tmp" not in _names(kv.data[out["working_dir"]])
    assert _names(kv.data[out["py_modules"][0]]) == ["pkg/", "pkg/__init__.py"]
    # Uploading again stores nothing new; the already-uploaded env passes through.
    assert renv.upload_packages(env, kv.put, kv.exists) == out
    assert renv.upload_packages(out, kv.put, kv.exists) == out
    assert len(kv.puts) == 4
    assert renv.validate(out) == out


def test_upload_same_package_once(tmp_path: Path) -> None:
    wd = _tree(tmp_path / "wd", {"a.py": ""})
    kv = _KV()
    exists_calls: list[str] = []

    def exists(key: str) -> bool:
        exists_calls.append(key)
        return False

    renv.upload_packages({"working_dir": str(wd), "py_modules": [str(wd), str(wd)]}, kv.put, exists)
    assert len(kv.puts) == 2  # the working_dir zip and the (parent-dir) module zip, each once


# --------------------------------------------------------------------------- setup


def _uploaded(tmp_path: Path, env: dict[str, Any]) -> tuple[dict[str, Any], _KV]:
    kv = _KV()
    return renv.upload_packages(env, kv.put, kv.exists), kv


def test_setup_and_apply(tmp_path: Path) -> None:
    wd = _tree(tmp_path / "wd", {"dc_test_wdmod.py": "VALUE = 'wd'\n", "data.txt": "hello"})
    pkg = _tree(tmp_path / "dc_test_pkg", {"__init__.py": "VALUE = 'pkg'\n"})
    single = _tree(tmp_path / "s", {"dc_test_single.py": "VALUE = 'single'\n"}) / "dc_test_single.py"
    os.environ["DC_TEST_BASE"] = "/base"
    env, kv = _uploaded(
        tmp_path,
        {
            "working_dir": str(wd),
            "py_modules": [str(pkg), str(single)],
            "env_vars": {
                "DC_TEST_A": "1",
                "DC_TEST_PATH": "${DC_TEST_BASE}:/extra",
                "DC_TEST_NONE": "${DC_TEST_UNSET}",
            },
        },
    )
    cache = tmp_path / "cache"
    fetched: list[str] = []

    def fetch(uri: str) -> bytes:
        fetched.append(uri)
        return kv.data[uri]

    ctx = renv.setup(env, fetch, str(cache))
    assert ctx.working_dir is not None and ctx.working_dir.startswith(str(cache))
    ctx.apply()
    assert os.environ["DC_TEST_A"] == "1"
    assert os.environ["DC_TEST_PATH"] == "/base:/extra"
    assert os.environ["DC_TEST_NONE"] == ""
    assert os.path.samefile(os.getcwd(), ctx.working_dir)
    assert Path("data.txt").read_text() == "hello"
    assert sys.path[0] == ctx.working_dir and sys.path[1:3] == ctx.py_paths
    import dc_test_pkg  # type: ignore[import-not-found]
    import dc_test_single  # type: ignore[import-not-found]
    import dc_test_wdmod  # type: ignore[import-not-found]

    assert (dc_test_wdmod.VALUE, dc_test_pkg.VALUE, dc_test_single.VALUE) == ("wd", "pkg", "single")
    assert dc_test_pkg.__file__.startswith(str(cache))
    # A second setup reuses the cache: nothing fetched again.
    count = len(fetched)
    assert renv.setup(env, fetch, str(cache)).working_dir == ctx.working_dir
    assert len(fetched) == count == 3


def test_restore_undoes_apply(tmp_path: Path) -> None:
    before = (dict(os.environ), os.getcwd(), list(sys.path))
    ctx = renv.RuntimeEnvContext(env_vars={"DC_TEST_X": "1"}, working_dir=str(tmp_path), py_paths=["/nowhere"])
    ctx.apply()
    assert os.environ["DC_TEST_X"] == "1" and sys.path[:2] == [str(tmp_path), "/nowhere"]
    ctx.restore()
    assert (dict(os.environ), os.getcwd(), list(sys.path)) == before
    ctx.restore()  # harmless when nothing is applied


def test_setup_local_paths_in_place(tmp_path: Path) -> None:
    wd = _tree(tmp_path / "wd", {"x.txt": ""})
    pkg = _tree(tmp_path / "libs" / "dc_test_local", {"__init__.py": ""})
    ctx = renv.setup({"working_dir": str(wd), "py_modules": [str(pkg)]}, lambda uri: b"", str(tmp_path / "c"))
    assert ctx.working_dir == str(wd)
    assert ctx.py_paths == [str(tmp_path / "libs")]


def test_setup_wheel(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("dc_test_wheelmod.py", "VALUE = 'wheel'\n")
    whl = tmp_path / "dc_test_wheelmod-1.0-py3-none-any.whl"
    whl.write_bytes(buf.getvalue())
    env, kv = _uploaded(tmp_path, {"py_modules": [str(whl)]})
    ctx = renv.setup(env, kv.data.__getitem__, str(tmp_path / "cache"))
    assert ctx.py_paths[0].endswith(".whl") and os.path.isfile(ctx.py_paths[0])
    ctx.apply()
    import dc_test_wheelmod  # type: ignore[import-not-found]

    assert dc_test_wheelmod.VALUE == "wheel"


def test_setup_errors_name_the_field(tmp_path: Path) -> None:
    uri = "dcpkg://" + "c" * 64 + ".zip"

    def missing(key: str) -> bytes:
        raise KeyError(key)

    with pytest.raises(RuntimeEnvSetupError) as info:
        renv.setup({"working_dir": uri}, missing, str(tmp_path))
    assert "working_dir" in str(info.value) and uri in str(info.value) and "KeyError" in str(info.value)
    with pytest.raises(RuntimeEnvSetupError, match="py_modules.*does not match its hash"):
        renv.setup({"py_modules": [uri]}, lambda u: b"other bytes", str(tmp_path))
    with pytest.raises(RuntimeEnvSetupError, match="pip"):
        renv.setup({"pip": ["x"]}, missing, str(tmp_path))
    assert not os.path.exists(os.path.join(tmp_path, "c" * 64))


def test_setup_rejects_unsafe_zip(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.txt", "x")
    data = buf.getvalue()
    import hashlib

    uri = f"dcpkg://{hashlib.sha256(data).hexdigest()}.zip"
    with pytest.raises(RuntimeEnvSetupError, match="unsafe path"):
        renv.setup({"working_dir": uri}, lambda u: data, str(tmp_path / "cache"))
    assert not (tmp_path / "escape.txt").exists()
    assert os.listdir(tmp_path / "cache") == []


def test_racing_extraction_leaves_one_copy(tmp_path: Path) -> None:
    wd = _tree(tmp_path / "wd", {f"f{i}.txt": str(i) * 1000 for i in range(50)})
    env, kv = _uploaded(tmp_path, {"working_dir": str(wd)})
    cache = tmp_path / "cache"
    barrier = threading.Barrier(4)
    results: list[str] = []
    errors: list[BaseException] = []

    def fetch(uri: str) -> bytes:
        barrier.wait(timeout=10)  # every thread has missed the cache before any extracts
        return kv.data[uri]

    def worker() -> None:
        try:
            ctx = renv.setup(env, fetch, str(cache))
            assert ctx.working_dir is not None
            results.append(ctx.working_dir)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(results) == 4 and len(set(results)) == 1
    assert os.listdir(cache) == [os.path.basename(results[0])]  # no temporary directories left
    assert sorted(os.listdir(results[0])) == sorted(f"f{i}.txt" for i in range(50))
    assert (Path(results[0]) / "f7.txt").read_text() == "7" * 1000


def test_setup_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = _tree(tmp_path / "wd", {"a": ""})
    env, kv = _uploaded(tmp_path, {"working_dir": str(wd), "config": {"setup_timeout_seconds": 1}})
    clock = iter([0.0, 5.0])
    monkeypatch.setattr(renv.time, "monotonic", lambda: next(clock))
    with pytest.raises(RuntimeEnvSetupError, match="setup_timeout_seconds"):
        renv.setup(env, kv.data.__getitem__, str(tmp_path / "cache"))


# --------------------------------------------------------------------------- public RuntimeEnv


def test_runtime_env_class(tmp_path: Path) -> None:
    env = RuntimeEnv(env_vars={"A": "1"}, working_dir=str(tmp_path), py_modules=None)
    assert isinstance(env, dict)
    assert env == {"env_vars": {"A": "1"}, "working_dir": str(tmp_path)}
    assert env.env_vars() == {"A": "1"} and env.working_dir() == str(tmp_path) and env.py_modules() == []
    assert env.has_working_dir() and not env.has_py_modules()
    env["config"] = RuntimeEnvConfig(setup_timeout_seconds=30)
    assert env["config"] == {"setup_timeout_seconds": 30, "eager_install": True}
    with pytest.raises(TypeError, match="env_vars"):
        env["env_vars"] = {"A": 2}
    with pytest.raises(ValueError, match="pip"):
        env.update(pip=["x"])
    with pytest.raises(ValueError, match="conda"):
        RuntimeEnv(conda="env")
    with pytest.raises(ValueError, match="'workingdir'"):
        RuntimeEnv(workingdir=".")
    env["working_dir"] = None
    assert not env.has_working_dir()
    assert renv.validate(env) == dict(env)


def test_runtime_env_serialize_and_pickle(tmp_path: Path) -> None:
    env = RuntimeEnv(env_vars={"A": "1"}, excludes=["*.log"])
    again = RuntimeEnv.deserialize(env.serialize())
    assert again == env and isinstance(again, RuntimeEnv)
    # Unpickling does not re-validate (a local working_dir need not exist where it lands).
    env2 = RuntimeEnv(working_dir=str(tmp_path))
    data = pickle.dumps(env2)
    tmp_path.rmdir()
    restored = pickle.loads(data)
    assert restored == env2 and isinstance(restored, RuntimeEnv)
    assert isinstance(env.copy(), RuntimeEnv) and env.to_dict() == dict(env) and type(env.to_dict()) is dict


def test_runtime_env_config() -> None:
    assert RuntimeEnvConfig() == {"setup_timeout_seconds": 600, "eager_install": True}
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        RuntimeEnvConfig(setup_timeout_seconds=0)
