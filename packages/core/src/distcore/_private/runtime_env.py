"""Runtime environments: ``env_vars``, ``working_dir`` and ``py_modules``.

The life of a ``runtime_env``:

1. :func:`validate` checks the dict where the user passed it (``@remote``,
   ``.options``, ``init``) and normalizes local paths to absolute ones.
2. :func:`merge` combines a parent's (job's) environment with a child's.
3. :func:`upload_packages` (driver) zips every local directory or module with
   :func:`package_dir` / :func:`package_module_file`, stores each zip once in
   the control store's key-value store under its content URI
   (``dcpkg://<sha256>.zip``) and rewrites the paths into those URIs.
4. :func:`env_key` names the environment; node managers keep one worker pool
   per key.
5. :func:`setup` (worker) fetches and extracts each URI once into a cache
   directory and returns a :class:`RuntimeEnvContext`, whose
   :meth:`~RuntimeEnvContext.apply` sets the variables, the working directory
   and ``sys.path``.

Installing packages (``pip``, ``conda``, ``uv``) and containers are not
supported: install into the cluster's Python environment instead.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import types
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distcore.exceptions import RuntimeEnvSetupError

URI_SCHEME = "dcpkg://"
MAX_PACKAGE_SIZE = 512 * 1024 * 1024
"""Largest package (zipped bytes) that :func:`package_dir` produces."""
DEFAULT_SETUP_TIMEOUT_SECONDS = 600
SKIPPED_NAMES = frozenset({"__pycache__", ".git"})

FIELDS = ("env_vars", "working_dir", "py_modules", "config", "excludes")
_UNSUPPORTED = {
    "pip": "distcore does not install Python packages per task",
    "conda": "distcore does not create conda environments",
    "uv": "distcore does not install Python packages per task",
    "container": "distcore does not run workers in containers",
    "image_uri": "distcore does not run workers in containers",
    "py_executable": "distcore workers run the cluster's own Python interpreter",
    "java_jars": "distcore runs Python only",
}
_CONFIG_KEYS = ("setup_timeout_seconds", "eager_install")
_URI_RE = re.compile(r"^dcpkg://([0-9a-f]{64})\.(zip|whl)$")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- validation


def validate(runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a ``runtime_env`` and return a normalized copy.

    ``None`` fields are dropped; local paths become absolute; a module object
    in ``py_modules`` becomes its directory (package) or file.

    Raises:
        TypeError: a field has the wrong type (the message names the field,
            key and value).
        ValueError: an unknown or unsupported field, a missing path, or a bad
            URI or config value.
    """
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, Mapping):
        raise TypeError(f"runtime_env must be a dict or None, got {runtime_env!r} ({type(runtime_env).__name__})")
    out: dict[str, Any] = {}
    for key, value in runtime_env.items():
        if key in _UNSUPPORTED:
            raise ValueError(
                f"runtime_env field {key!r} is not supported: {_UNSUPPORTED[key]}. Install what "
                "you need into the Python environment every node of the cluster runs (the same "
                "one on each node), and ship your own pure-Python code with 'working_dir' or "
                "'py_modules'."
            )
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown runtime_env field {key!r}{hint} Supported fields: {', '.join(FIELDS)}.")
        if value is not None:
            out[key] = _VALIDATORS[key](value)
    return out


def _check_env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"runtime_env['env_vars'] must be a dict[str, str], got {value!r} ({type(value).__name__})")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                "runtime_env['env_vars'] must be a dict[str, str]; "
                f"entry {k!r}: {v!r} is {type(k).__name__} -> {type(v).__name__}"
            )
        if not k or "=" in k or "\0" in k:
            raise ValueError(f"runtime_env['env_vars'] has an invalid variable name {k!r}")
    return dict(value)


def _check_uri(where: str, uri: str, exts: tuple[str, ...]) -> str:
    match = _URI_RE.match(uri)
    if match is None or match.group(2) not in exts:
        raise ValueError(
            f"{where}: {uri!r} is not a valid package URI; distcore takes a local path or "
            f"'dcpkg://<sha256>.{exts[0]}' (remote storage URIs are not fetched: download the "
            "package and pass the local directory)"
        )
    return uri


def _check_working_dir(value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"runtime_env['working_dir'] must be a path or URI string, got {value!r} ({type(value).__name__})"
        )
    if "://" in value:
        return _check_uri("runtime_env['working_dir']", value, ("zip",))
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isdir(path):
        raise ValueError(f"runtime_env['working_dir']: directory {value!r} does not exist ({path})")
    return path


def _check_py_modules(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"runtime_env['py_modules'] must be a list, got {value!r} ({type(value).__name__})")
    out = []
    for item in value:
        where = f"runtime_env['py_modules'] entry {item!r}"
        if isinstance(item, types.ModuleType):
            paths = getattr(item, "__path__", None)
            item = list(paths)[0] if paths else getattr(item, "__file__", None)
            if not item:
                raise ValueError(f"{where}: the module has no file or directory to ship")
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str) or not item:
            raise TypeError(f"{where}: must be a path, a URI or a module, got {type(item).__name__}")
        if "://" in item:
            out.append(_check_uri(where, item, ("zip", "whl")))
            continue
        path = os.path.abspath(os.path.expanduser(item))
        if os.path.isdir(path) or (os.path.isfile(path) and path.endswith((".py", ".whl"))):
            out.append(path)
        else:
            raise ValueError(f"{where}: must be an existing directory, .py file or .whl file ({path})")
    return out


def _check_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"runtime_env['config'] must be a dict, got {value!r} ({type(value).__name__})")
    for key, item in value.items():
        if key not in _CONFIG_KEYS:
            raise ValueError(f"runtime_env['config'] has unknown key {key!r}; valid keys: {', '.join(_CONFIG_KEYS)}")
        if key == "setup_timeout_seconds" and (
            isinstance(item, bool) or not isinstance(item, int) or (item != -1 and item <= 0)
        ):
            raise ValueError(
                f"runtime_env['config']['setup_timeout_seconds'] must be -1 (no timeout) or an int > 0, got {item!r}"
            )
        if key == "eager_install" and not isinstance(item, bool):
            raise TypeError(f"runtime_env['config']['eager_install'] must be a bool, got {item!r}")
    return dict(value)


def _check_excludes(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
        raise TypeError(f"runtime_env['excludes'] must be a list of str patterns, got {value!r}")
    return list(value)


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "env_vars": _check_env_vars,
    "working_dir": _check_working_dir,
    "py_modules": _check_py_modules,
    "config": _check_config,
    "excludes": _check_excludes,
}


def merge(parent: Mapping[str, Any] | None, child: Mapping[str, Any] | None) -> dict[str, Any]:
    """Combine a parent's environment with a child's, as Ray does.

    Each field the child sets replaces the parent's, except ``env_vars``,
    which are merged with the child's values winning.
    """
    result = dict(parent or {})
    for key, value in (child or {}).items():
        if key == "env_vars" and isinstance(result.get(key), Mapping) and isinstance(value, Mapping):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    return result


def env_key(runtime_env: Mapping[str, Any] | None) -> str:
    """A stable name for an environment (16 hex chars); ``""`` for the empty one.

    ``config`` and ``excludes`` do not change what a worker runs with, so they
    are left out: environments differing only there share workers.
    """
    relevant = {k: v for k, v in (runtime_env or {}).items() if k not in ("config", "excludes") and v}
    if not relevant:
        return ""
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- packaging


def _glob_regex(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body[:1] == "!" else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _compile_excludes(patterns: Iterable[str]) -> Callable[[str, bool], bool]:
    """Build ``excluded(relpath, is_dir)`` from gitignore-style patterns (last match wins)."""
    rules: list[tuple[re.Pattern[str], bool, bool]] = []
    for raw in patterns:
        pat = raw.rstrip("\n").rstrip(" ")
        if not pat or pat.startswith("#"):
            continue
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        dir_only = pat.endswith("/")
        pat = pat.rstrip("/")
        anchored = "/" in pat
        pat = pat.lstrip("/")
        prefix = "^" if anchored else "^(?:.*/)?"
        rules.append((re.compile(prefix + _glob_regex(pat) + "$"), negate, dir_only))

    def excluded(relpath: str, is_dir: bool) -> bool:
        result = False
        for regex, negate, dir_only in rules:
            if (is_dir or not dir_only) and regex.match(relpath):
                result = not negate
        return result

    return excluded


def _zip_entries(root: str, excludes: Iterable[str]) -> list[tuple[str, str | None]]:
    """Sorted (relative posix path, absolute file path or None for a directory)."""
    excluded = _compile_excludes(excludes)
    entries: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for name in dirnames:
            if name not in SKIPPED_NAMES and not excluded(rel_dir + name, True):
                keep.append(name)
                entries.append((rel_dir + name + "/", None))
        dirnames[:] = sorted(keep)
        for name in filenames:
            if not excluded(rel_dir + name, False) and not name.endswith(".pyc"):
                entries.append((rel_dir + name, os.path.join(dirpath, name)))
    return sorted(entries)


def _build_zip(what: str, entries: list[tuple[str, str | None]], max_size: int) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname, source in entries:
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_DATE)
            info.create_system = 3
            if source is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
                continue
            executable = os.access(source, os.X_OK)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(source, "rb") as f:
                zf.writestr(info, f.read())
            if buffer.tell() > max_size:
                break
    data = buffer.getvalue()
    if len(data) > max_size:
        raise ValueError(
            f"Package for {what} is over the {max_size / 2**20:.0f} MiB limit (reached "
            f"{len(data) / 2**20:.1f} MiB). Leave large files out with runtime_env 'excludes' "
            "(gitignore-style patterns), or put large data in shared storage and read it from there."
        )
    return f"{URI_SCHEME}{hashlib.sha256(data).hexdigest()}.zip", data


def package_dir(
    path: str,
    excludes: Iterable[str] = (),
    *,
    include_parent_dir: bool = False,
    max_size: int = MAX_PACKAGE_SIZE,
) -> tuple[str, bytes]:
    """Zip a directory deterministically; return ``(dcpkg://<sha256>.zip, zip bytes)``.

    Entries are sorted and carry fixed timestamps and modes (0644, or 0755 for
    executables), so the same tree always gives the same URI. ``__pycache__``,
    ``.git``, ``*.pyc`` and paths matching ``excludes`` (gitignore-style,
    relative to ``path``) are left out. With ``include_parent_dir`` the
    entries sit under the directory's own name (how a ``py_modules`` package
    is shipped).

    Raises:
        ValueError: ``path`` is not a directory, or the zip is over ``max_size``.
    """
    root = os.path.abspath(path)
    if not os.path.isdir(root):
        raise ValueError(f"Cannot package {path!r}: not a directory")
    entries = _zip_entries(root, excludes)
    if include_parent_dir:
        top = os.path.basename(root.rstrip(os.sep))
        entries = [(f"{top}/", None)] + [(f"{top}/{name}", src) for name, src in entries]
    return _build_zip(repr(path), entries, max_size)


def package_module_file(path: str, *, max_size: int = MAX_PACKAGE_SIZE) -> tuple[str, bytes]:
    """Zip a single-file module (``mod.py`` at the zip's root); same return as :func:`package_dir`."""
    source = os.path.abspath(path)
    if not os.path.isfile(source):
        raise ValueError(f"Cannot package {path!r}: not a file")
    return _build_zip(repr(path), [(os.path.basename(source), source)], max_size)


_PACKAGE_CACHE_SIZE = 64
_PACKAGES: dict[tuple[str, tuple[str, ...], bool], tuple[tuple, str]] = {}
"""(directory, excludes, include_parent_dir) -> (tree stamp, URI) of its last package."""


def _tree_stamp(root: str, excludes: Iterable[str]) -> tuple:
    """What a directory's package depends on: each shipped entry's path, size,
    mode and modification time (cheap: no file is read)."""
    stamp = []
    for arcname, source in _zip_entries(os.path.abspath(root), excludes):
        if source is None:
            stamp.append((arcname,))
            continue
        try:
            st = os.stat(source)
        except OSError:
            stamp.append((arcname, None))
            continue
        stamp.append((arcname, st.st_size, st.st_mtime_ns, st.st_mode))
    return tuple(stamp)


def upload_packages(
    runtime_env: Mapping[str, Any] | None,
    kv_put: Callable[[str, bytes], None],
    kv_exists: Callable[[str], bool],
) -> dict[str, Any]:
    """Package local ``working_dir`` / ``py_modules`` and rewrite them into URIs.

    Each package is stored with ``kv_put(uri, bytes)`` unless ``kv_exists(uri)``
    says it is already there (the URI is the content hash). ``excludes`` is
    applied and dropped from the result. A directory is zipped again only when
    a shipped file's size, mode or modification time changed since its last
    package (or that package is no longer in the store).
    """
    env = validate(runtime_env)
    excludes = env.pop("excludes", [])
    done: set[str] = set()

    def store(uri: str, data: bytes) -> str:
        if uri not in done and not kv_exists(uri):
            kv_put(uri, data)
        done.add(uri)
        return uri

    def store_dir(path: str, include_parent_dir: bool = False) -> str:
        # Zipping is the costly part of a .remote() call: skip it while the
        # tree is unchanged and its package is still in the cluster.
        key = (os.path.abspath(path), tuple(excludes), include_parent_dir)
        stamp = _tree_stamp(path, excludes)
        cached = _PACKAGES.get(key)
        if cached is not None and cached[0] == stamp and (cached[1] in done or kv_exists(cached[1])):
            done.add(cached[1])
            return cached[1]
        uri = store(*package_dir(path, excludes, include_parent_dir=include_parent_dir))
        _PACKAGES.pop(key, None)
        _PACKAGES[key] = (stamp, uri)
        while len(_PACKAGES) > _PACKAGE_CACHE_SIZE:
            _PACKAGES.pop(next(iter(_PACKAGES)))
        return uri

    wd = env.get("working_dir")
    if wd is not None and not wd.startswith(URI_SCHEME):
        env["working_dir"] = store_dir(wd)
    modules = []
    for item in env.get("py_modules", []):
        if item.startswith(URI_SCHEME):
            modules.append(item)
        elif os.path.isdir(item):
            modules.append(store_dir(item, include_parent_dir=True))
        elif item.endswith(".whl"):
            with open(item, "rb") as f:
                data = f.read()
            modules.append(store(f"{URI_SCHEME}{hashlib.sha256(data).hexdigest()}.whl", data))
        else:
            modules.append(store(*package_module_file(item)))
    if "py_modules" in env:
        env["py_modules"] = modules
    return env


# --------------------------------------------------------------------------- setup


_VAR_RE = re.compile(r"\$\{([^}]+)\}")


@dataclass
class RuntimeEnvContext:
    """What a worker applies before running tasks of one environment.

    Attributes:
        env_vars: variables to set; ``${NAME}`` in a value expands to the
            current value of ``NAME`` ("" if unset), as in Ray.
        working_dir: directory to chdir into and put first on ``sys.path``.
        py_paths: entries to put on ``sys.path`` (after ``working_dir``).
    """

    env_vars: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    py_paths: list[str] = field(default_factory=list)
    _saved: tuple[dict[str, str], str, list[str]] | None = field(default=None, repr=False)

    def expanded_env_vars(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``env_vars`` with ``${NAME}`` replaced from ``base`` (default ``os.environ``)."""
        source = os.environ if base is None else base
        return {k: _VAR_RE.sub(lambda m: source.get(m.group(1), ""), v) for k, v in self.env_vars.items()}

    def apply(self) -> None:
        """Set the variables, chdir into ``working_dir`` and prepend to ``sys.path``."""
        self._saved = (dict(os.environ), os.getcwd(), list(sys.path))
        os.environ.update(self.expanded_env_vars())
        paths = ([self.working_dir] if self.working_dir else []) + self.py_paths
        if self.working_dir:
            os.chdir(self.working_dir)
        sys.path[:] = paths + [p for p in sys.path if p not in paths]
        importlib.invalidate_caches()

    def restore(self) -> None:
        """Undo :meth:`apply` (environment, cwd and ``sys.path`` as they were)."""
        if self._saved is None:
            return
        environ, cwd, path = self._saved
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        sys.path[:] = path
        self._saved = None


def _extract(data: bytes, dest: str) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if info.filename.startswith("/") or ".." in parts or "\\" in info.filename:
                raise ValueError(f"unsafe path {info.filename!r} in package")
            target = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)


def _materialize(uri: str, fetch: Callable[[str], bytes], cache_dir: str) -> str:
    """Return the local path of ``uri`` in ``cache_dir``, fetching it once."""
    match = _URI_RE.match(uri)
    if match is None:
        raise ValueError(f"not a package URI: {uri!r}")
    digest, ext = match.groups()
    target = os.path.join(cache_dir, digest if ext == "zip" else f"{digest}.whl")
    if os.path.exists(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    data = fetch(uri)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"fetched content of {uri} does not match its hash")
    if ext == "whl":
        fd, tmp = tempfile.mkstemp(prefix=f".{digest}.", dir=cache_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)  # same bytes either way, so a racing writer is harmless
        return target
    tmp = tempfile.mkdtemp(prefix=f".{digest}.", dir=cache_dir)
    try:
        _extract(data, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):  # lost a race only if the winner's copy is there
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def setup(runtime_env: Mapping[str, Any] | None, fetch: Callable[[str], bytes], cache_dir: str) -> RuntimeEnvContext:
    """Make an environment's packages local and return the context to apply.

    Each URI is fetched with ``fetch(uri)`` and extracted into ``cache_dir``
    once (into a temporary directory, then renamed, so concurrent workers end
    up with one complete copy). Local paths (not uploaded) are used in place.

    Raises:
        RuntimeEnvSetupError: naming the field that failed and why.
    """
    try:
        env = validate(runtime_env)
    except (TypeError, ValueError) as e:
        raise RuntimeEnvSetupError(f"runtime_env is invalid: {e}") from e
    timeout = env.get("config", {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_SECONDS)
    deadline = None if timeout == -1 else time.monotonic() + timeout

    def local(field_name: str, item: str) -> str:
        if not item.startswith(URI_SCHEME):
            return item
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeEnvSetupError(
                f"runtime_env setup timed out after {timeout}s (config.setup_timeout_seconds) "
                f"before {field_name} {item!r} was ready"
            )
        try:
            return _materialize(item, fetch, cache_dir)
        except Exception as e:
            raise RuntimeEnvSetupError(
                f"runtime_env {field_name} {item!r} could not be set up: {type(e).__name__}: {e}"
            ) from e

    ctx = RuntimeEnvContext(env_vars=dict(env.get("env_vars", {})))
    if "working_dir" in env:
        ctx.working_dir = local("working_dir", env["working_dir"])
    for item in env.get("py_modules", []):
        path = local("py_modules", item)
        # A local package directory is importable from its parent; a file
        # module from its directory; extracted zips and wheels are roots.
        if not item.startswith(URI_SCHEME) and (os.path.isdir(path) or path.endswith(".py")):
            path = os.path.dirname(path.rstrip(os.sep))
        ctx.py_paths.append(path)
    return ctx
