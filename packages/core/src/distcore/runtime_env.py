"""Runtime environments for tasks and actors (mirrors ``ray.runtime_env``).

A runtime environment says what a task's worker runs with: environment
variables, a working directory shipped from the driver, and extra Python
modules. distcore supports ``env_vars``, ``working_dir``, ``py_modules``,
``excludes`` and ``config``; it does not install packages (``pip``, ``conda``,
``uv``) or run containers; install those into the cluster's Python
environment instead.

Example::

    from distcore.runtime_env import RuntimeEnv

    env = RuntimeEnv(working_dir="./src", env_vars={"OMP_NUM_THREADS": "1"},
                     excludes=["*.ckpt", "data/"])
    f.options(runtime_env=env).remote()

A plain dict with the same keys works wherever a ``RuntimeEnv`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from distcore._private import runtime_env as _impl

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict[str, Any]):
    """Options about setting an environment up (the ``config`` field).

    Args:
        setup_timeout_seconds: give up setting the environment up after this
            many seconds (default 600); ``-1`` waits forever.
        eager_install: accepted for Ray compatibility (default ``True``).

    Example: ``RuntimeEnv(working_dir=".", config=RuntimeEnvConfig(setup_timeout_seconds=60))``
    """

    def __init__(
        self,
        setup_timeout_seconds: int = _impl.DEFAULT_SETUP_TIMEOUT_SECONDS,
        eager_install: bool = True,
    ) -> None:
        super().__init__(
            _impl.validate(
                {"config": {"setup_timeout_seconds": setup_timeout_seconds, "eager_install": eager_install}}
            )["config"]
        )


def _rebuild(cls: type[RuntimeEnv], fields: dict[str, Any]) -> RuntimeEnv:
    env = cls.__new__(cls)
    dict.update(env, fields)
    return env


class RuntimeEnv(dict[str, Any]):
    """A validated ``runtime_env`` dict.

    Args:
        py_modules: local package directories, ``.py`` files, ``.whl`` files,
            imported module objects or ``dcpkg://`` URIs to put on the
            workers' ``sys.path``.
        working_dir: a local directory (or ``dcpkg://`` URI) the workers run
            in; it is also put first on ``sys.path``.
        env_vars: variables to set; ``${NAME}`` in a value expands to the
            worker's existing value of ``NAME``.
        config: a :class:`RuntimeEnvConfig` or a dict of its fields.
        excludes: gitignore-style patterns of files in ``working_dir`` and
            ``py_modules`` not to ship.
        _validate: set ``False`` to skip validation (for already-checked data).

    Fields set to ``None`` are left out. Setting a key after construction is
    validated too. Unsupported fields (``pip``, ``conda``, ...) raise a
    ``ValueError`` that says what to do instead.

    Example::

        env = RuntimeEnv(env_vars={"A": "1"})
        env["working_dir"] = "/path/to/project"
        assert env.working_dir() == "/path/to/project"
    """

    def __init__(
        self,
        *,
        py_modules: Iterable[Any] | None = None,
        working_dir: str | None = None,
        env_vars: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        excludes: Iterable[str] | None = None,
        _validate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        fields = {
            "py_modules": py_modules,
            "working_dir": working_dir,
            "env_vars": env_vars,
            "config": config,
            "excludes": excludes,
            **kwargs,
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        dict.update(self, _impl.validate(fields) if _validate else fields)

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            self.pop(key, None)
            return
        dict.__setitem__(self, key, _impl.validate({key: value})[key])

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several fields, each validated like ``env[key] = value``."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Validated ``dict.setdefault``."""
        if key not in self:
            self[key] = default
        return self.get(key)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), dict(self)))

    def copy(self) -> RuntimeEnv:
        """A shallow copy (still a ``RuntimeEnv``)."""
        return _rebuild(type(self), dict(self))

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy."""
        return dict(self)

    def serialize(self) -> str:
        """JSON text; :meth:`deserialize` reads it back."""
        return json.dumps(dict(self), sort_keys=True)

    @classmethod
    def deserialize(cls, serialized: str) -> RuntimeEnv:
        """Build a ``RuntimeEnv`` from :meth:`serialize`'s text, validating it."""
        return cls(**json.loads(serialized))

    def env_vars(self) -> dict[str, str]:
        """The ``env_vars`` field ({} if unset)."""
        return dict(self.get("env_vars", {}))

    def working_dir(self) -> str:
        """The ``working_dir`` field ("" if unset)."""
        return str(self.get("working_dir", ""))

    def py_modules(self) -> list[str]:
        """The ``py_modules`` field ([] if unset)."""
        return list(self.get("py_modules", []))

    def has_working_dir(self) -> bool:
        """Whether ``working_dir`` is set."""
        return "working_dir" in self

    def has_py_modules(self) -> bool:
        """Whether ``py_modules`` is set."""
        return "py_modules" in self
