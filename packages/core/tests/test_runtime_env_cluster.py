"""runtime_env on a real cluster: env_vars, working_dir, py_modules, the job's
environment, and the errors for bad or unsupported environments."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import distcore
from distcore.exceptions import RuntimeEnvSetupError
from distcore.runtime_env import RuntimeEnv

pytestmark = pytest.mark.integration


@distcore.remote
def getenv(name: str) -> str | None:
    return os.environ.get(name)


@distcore.remote
def import_value(module: str) -> tuple[str, str, str]:
    import importlib

    mod = importlib.import_module(module)
    return mod.VALUE, os.getcwd(), os.path.dirname(os.path.abspath(mod.__file__))


def _write_module(directory, name: str, value: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(f"VALUE = {value!r}\n")


# --------------------------------------------------------------------------- env_vars


def test_env_vars_are_set_only_for_tasks_that_ask(shared_cluster):
    env = {"env_vars": {"DC_TEST_VAR": "hello"}}
    assert distcore.get(getenv.options(runtime_env=env).remote("DC_TEST_VAR"), timeout=60) == "hello"
    assert distcore.get(getenv.remote("DC_TEST_VAR"), timeout=60) is None
    # Several times, so that reused workers would show a leak.
    assert distcore.get([getenv.remote("DC_TEST_VAR") for _ in range(4)], timeout=60) == [None] * 4


def test_env_vars_in_remote_decorator_and_runtime_env_class(shared_cluster):
    @distcore.remote(runtime_env={"env_vars": {"DC_DECORATED": "yes"}})
    def decorated():
        return os.environ.get("DC_DECORATED")

    assert distcore.get(decorated.remote(), timeout=60) == "yes"
    env = RuntimeEnv(env_vars={"DC_CLASS": "cls"})
    assert distcore.get(getenv.options(runtime_env=env).remote("DC_CLASS"), timeout=60) == "cls"


def test_env_vars_for_an_actor(shared_cluster):
    @distcore.remote
    class Reader:
        def read(self, name):
            return os.environ.get(name)

    actor = Reader.options(runtime_env={"env_vars": {"DC_ACTOR_VAR": "actor"}}).remote()
    assert distcore.get(actor.read.remote("DC_ACTOR_VAR"), timeout=60) == "actor"
    distcore.kill(actor)


def test_actor_runs_in_its_working_dir(shared_cluster, tmp_path):
    project = tmp_path / "actor_project"
    _write_module(project, "dc_actor_module", "actor module")

    @distcore.remote
    class InDir:
        def look(self):
            import dc_actor_module

            return dc_actor_module.VALUE, sorted(os.listdir(os.getcwd()))

    actor = InDir.options(runtime_env={"working_dir": str(project)}).remote()
    assert distcore.get(actor.look.remote(), timeout=60) == ("actor module", ["dc_actor_module.py"])
    distcore.kill(actor)


def test_workers_of_one_environment_are_reused(shared_cluster):
    @distcore.remote
    def pid():
        return os.getpid()

    env = {"env_vars": {"DC_REUSE": "1"}}
    pids = [distcore.get(pid.options(runtime_env=env).remote(), timeout=60) for _ in range(5)]
    assert len(set(pids)) == 1, f"sequential tasks of one environment started new workers: {pids}"


def test_env_var_references_expand(shared_cluster):
    env = {"env_vars": {"DC_PATHISH": "${DC_UNSET_BASE}/x"}}
    assert distcore.get(getenv.options(runtime_env=env).remote("DC_PATHISH"), timeout=60) == "/x"


# --------------------------------------------------------------------------- working_dir and py_modules


def test_working_dir_is_shipped_and_is_the_cwd(shared_cluster, tmp_path):
    project = tmp_path / "project"
    _write_module(project, "dc_wd_module", "from working_dir")
    (project / "data.txt").write_text("payload")

    @distcore.remote
    def use_working_dir():
        import dc_wd_module

        with open("data.txt") as f:
            data = f.read()
        return dc_wd_module.VALUE, data, os.getcwd()

    value, data, cwd = distcore.get(
        use_working_dir.options(runtime_env={"working_dir": str(project)}).remote(), timeout=60
    )
    assert (value, data) == ("from working_dir", "payload")
    # The task runs in the extracted copy, not in the driver's directory.
    assert os.path.realpath(cwd) != os.path.realpath(project)
    assert sorted(os.listdir(cwd)) == ["data.txt", "dc_wd_module.py"]
    assert os.path.realpath(cwd).startswith(os.path.realpath(shared_cluster["session_dir"]))


def test_working_dirs_with_the_same_module_name_stay_apart(shared_cluster, tmp_path):
    _write_module(tmp_path / "one", "dc_same_name", "one")
    _write_module(tmp_path / "two", "dc_same_name", "two")
    refs = [
        import_value.options(runtime_env={"working_dir": str(tmp_path / name)}).remote("dc_same_name")
        for name in ("one", "two")
    ]
    assert [r[0] for r in distcore.get(refs, timeout=60)] == ["one", "two"]


def test_working_dir_changes_are_shipped_again(shared_cluster, tmp_path):
    project = tmp_path / "changing"
    _write_module(project, "dc_changing", "v1")
    env = {"working_dir": str(project)}
    assert distcore.get(import_value.options(runtime_env=env).remote("dc_changing"), timeout=60)[0] == "v1"
    _write_module(project, "dc_changing", "v2")
    assert distcore.get(import_value.options(runtime_env=env).remote("dc_changing"), timeout=60)[0] == "v2"


def test_excludes_leave_files_out(shared_cluster, tmp_path):
    project = tmp_path / "excl"
    _write_module(project, "dc_excl", "kept")
    (project / "big.ckpt").write_text("x" * 100)

    @distcore.remote
    def listing():
        return sorted(os.listdir("."))

    env = {"working_dir": str(project), "excludes": ["*.ckpt"]}
    assert distcore.get(listing.options(runtime_env=env).remote(), timeout=60) == ["dc_excl.py"]


def test_py_modules_package_directory(shared_cluster, tmp_path):
    package = tmp_path / "libs" / "dc_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 'from py_modules'\n")
    value, cwd, where = distcore.get(
        import_value.options(runtime_env={"py_modules": [str(package)]}).remote("dc_pkg"), timeout=60
    )
    assert value == "from py_modules"
    assert os.path.realpath(where) != os.path.realpath(package)  # a shipped copy
    assert os.path.basename(where) == "dc_pkg"


def test_py_modules_single_file(shared_cluster, tmp_path):
    _write_module(tmp_path / "single", "dc_single_file", "single")
    ref = import_value.options(runtime_env={"py_modules": [str(tmp_path / "single" / "dc_single_file.py")]})
    assert distcore.get(ref.remote("dc_single_file"), timeout=60)[0] == "single"


def test_task_without_py_modules_cannot_import_them(shared_cluster, tmp_path):
    package = tmp_path / "dc_private_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 1\n")
    assert distcore.get(import_value.options(runtime_env={"py_modules": [str(package)]}).remote("dc_private_pkg"),
                        timeout=60)[0] == 1
    with pytest.raises(ModuleNotFoundError):
        distcore.get(import_value.remote("dc_private_pkg"), timeout=60)


# --------------------------------------------------------------------------- inheritance


@distcore.remote
def nested_getenv(name: str) -> str | None:
    return distcore.get(getenv.remote(name))


@distcore.remote
def nested_import(module: str) -> str:
    return distcore.get(import_value.remote(module))[0]


def test_child_tasks_inherit_the_parents_environment(shared_cluster, tmp_path):
    _write_module(tmp_path / "inherit", "dc_inherited", "inherited")
    env = {"env_vars": {"DC_PARENT": "parent"}, "working_dir": str(tmp_path / "inherit")}
    assert distcore.get(nested_getenv.options(runtime_env=env).remote("DC_PARENT"), timeout=60) == "parent"
    assert distcore.get(nested_import.options(runtime_env=env).remote("dc_inherited"), timeout=60) == "inherited"

    @distcore.remote
    def override(name):
        return distcore.get(getenv.options(runtime_env={"env_vars": {"DC_CHILD": "child"}}).remote(name))

    # A child's own env_vars are merged over the inherited ones.
    assert distcore.get([override.options(runtime_env=env).remote(n) for n in ("DC_PARENT", "DC_CHILD")],
                        timeout=60) == ["parent", "child"]


def test_child_of_a_task_without_environment_has_none(shared_cluster):
    assert distcore.get(nested_getenv.remote("DC_PARENT"), timeout=60) is None


# --------------------------------------------------------------------------- job-level environment


def test_job_runtime_env_applies_to_every_task(start_cluster, tmp_path):
    _write_module(tmp_path / "jobdir", "dc_job_module", "job")
    start_cluster(num_cpus=2, runtime_env={"env_vars": {"DC_JOB": "job", "DC_BOTH": "job"},
                                           "working_dir": str(tmp_path / "jobdir")})
    assert distcore.get(getenv.remote("DC_JOB"), timeout=60) == "job"
    assert distcore.get(import_value.remote("dc_job_module"), timeout=60)[0] == "job"
    # The job's working_dir was shipped once, at init: later edits are not shipped.
    _write_module(tmp_path / "jobdir", "dc_job_module", "edited after init")
    (tmp_path / "jobdir" / "driver_output.log").write_text("written by the driver")
    assert distcore.get(import_value.remote("dc_job_module"), timeout=60)[0] == "job"
    # A task's env_vars are merged over the job's; its other fields replace the job's.
    env = {"env_vars": {"DC_BOTH": "task", "DC_TASK": "task"}}
    assert distcore.get([getenv.options(runtime_env=env).remote(n) for n in ("DC_JOB", "DC_BOTH", "DC_TASK")],
                        timeout=60) == ["job", "task", "task"]

    # Tasks started inside tasks run in the job's environment too.
    assert distcore.get(nested_getenv.remote("DC_JOB"), timeout=60) == "job"
    assert distcore.get(nested_import.remote("dc_job_module"), timeout=60) == "job"

    @distcore.remote
    class Actor:
        def read(self):
            return os.environ.get("DC_JOB")

    actor = Actor.remote()
    assert distcore.get(actor.read.remote(), timeout=60) == "job"
    distcore.kill(actor)


def test_bad_job_runtime_env_fails_init(tmp_path):
    script = (
        "import distcore\n"
        "try:\n"
        f"    distcore.init(num_cpus=1, runtime_env={{'working_dir': {str(tmp_path / 'missing')!r}}})\n"
        "except ValueError as exc:\n"
        "    print('ValueError:', exc)\n"
        "print('initialized:', distcore.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DISTCORE_TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "ValueError: runtime_env['working_dir']" in out.stdout and "does not exist" in out.stdout
    assert "initialized: False" in out.stdout


# --------------------------------------------------------------------------- errors


def test_missing_working_dir_raises_value_error(shared_cluster, tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist"):
        getenv.options(runtime_env={"working_dir": missing}).remote("X")
    with pytest.raises(ValueError, match="nope"):
        getenv.options(runtime_env={"py_modules": [missing]}).remote("X")


def test_missing_working_dir_in_decorator_raises_at_remote(shared_cluster, tmp_path):
    missing = tmp_path / "later"
    missing.mkdir()

    @distcore.remote(runtime_env={"working_dir": str(missing)})
    def f():
        return 1

    missing.rmdir()
    with pytest.raises(ValueError, match="does not exist"):
        f.remote()


@pytest.mark.parametrize("field", ["pip", "conda", "uv", "container"])
def test_unsupported_fields_raise_with_advice(shared_cluster, field):
    with pytest.raises(ValueError, match=f"'{field}' is not supported"):
        getenv.options(runtime_env={field: ["requests"]}).remote("X")


def test_unknown_field_suggests_the_right_one(shared_cluster):
    with pytest.raises(ValueError, match="env_vars"):
        getenv.options(runtime_env={"env_var": {"A": "1"}}).remote("X")


def test_env_vars_must_be_strings(shared_cluster):
    with pytest.raises(TypeError, match="env_vars"):
        getenv.options(runtime_env={"env_vars": {"A": 1}}).remote("A")


def test_environment_that_cannot_be_set_up_fails_the_task(shared_cluster):
    unknown = "dcpkg://" + "0" * 64 + ".zip"  # well-formed, but no such package in the cluster
    with pytest.raises(RuntimeEnvSetupError, match="working_dir"):
        distcore.get(getenv.options(runtime_env={"working_dir": unknown}).remote("X"), timeout=60)


def test_actor_whose_environment_cannot_be_set_up_dies_with_the_reason(shared_cluster):
    from distcore.exceptions import ActorDiedError

    @distcore.remote
    class Unlucky:
        def ping(self):
            return "pong"

    unknown = "dcpkg://" + "1" * 64 + ".zip"
    actor = Unlucky.options(runtime_env={"working_dir": unknown}).remote()
    with pytest.raises(ActorDiedError, match="runtime_env"):
        distcore.get(actor.ping.remote(), timeout=60)
