"""``@remote`` functions: ``f.remote(...)`` submits a task."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private.api import task_builder as tb
from distcore._private.api.object_ref import ObjectRefGenerator
from distcore._private.options import merge_options, task_resources, validate_task_options


class RemoteFunction:
    """A function made remote with ``@distcore.remote``.

    Example::

        @distcore.remote(num_cpus=1, max_retries=2)
        def add(a, b):
            return a + b

        assert distcore.get(add.remote(1, 2)) == 3
        ref = add.options(num_cpus=0.5).remote(3, 4)
    """

    def __init__(self, function: Any, options: dict) -> None:
        if not callable(function) or inspect.isclass(function):
            raise TypeError(f"@remote on a function expects a function, got {function!r}")
        self._function = function
        self._options = validate_task_options(options)
        self._exporter = tb.FunctionExporter(function)
        self._resolved_cache: tuple | None = None
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "task"))
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote functions cannot be called directly. Instead of running '{self._name}()', "
            f"try '{self._name}.remote()'."
        )

    def options(self, **options: Any) -> _FunctionWithOptions:
        """The same function with some options overridden for the next calls."""
        merged = merge_options(self._options, validate_task_options(options, in_options=True))
        return _FunctionWithOptions(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Submit the task; returns an ``ObjectRef`` (or several, or a generator)."""
        return self._remote(args, kwargs, self._options)

    def _remote(self, args: tuple, kwargs: dict, options: dict) -> Any:
        from distcore._private.api.runtime import auto_init

        core = auto_init()
        num_returns = options.get("num_returns", 1)
        if num_returns is None:
            num_returns = 1
        name = options.get("name") or self._name
        task_args, task_kwargs, deps, keep = tb.build_args(core, name, args, kwargs)
        strategy, placement, capture, resources, retry_exceptions, runtime_env, env_key = self._resolve(core, options)
        task_id = ids.new_task_id()
        return_ids, refs = tb.new_return_refs(core, task_id, num_returns)
        max_retries = options.get("max_retries")
        function_id = self._exporter.function_id(core)
        if self._exporter.captured:
            deps = deps + self._exporter.captured
        spec = p.TaskSpec(
            task_id=task_id, job_id=core.job_id, kind=p.NORMAL_TASK, name=name,
            function_id=function_id, args=task_args, kwargs=task_kwargs,
            num_returns=num_returns, return_ids=return_ids, owner=core.address,  # type: ignore[arg-type]
            resources=dict(resources), max_retries=3 if max_retries is None else max_retries,
            retry_exceptions=retry_exceptions, runtime_env=runtime_env,
            runtime_env_key=env_key, strategy=strategy, placement=placement,
            capture_child_tasks=capture, namespace=core.namespace,
            parent_task_id=core.current_task_id, max_calls=options.get("max_calls") or 0,
        )
        core.refs.add_submitted(deps)
        del keep
        core.submitter.submit_call(spec, deps)
        if num_returns == "streaming":
            return ObjectRefGenerator(task_id)
        if num_returns == "dynamic":
            return refs[0]
        if num_returns == 0:
            return None
        return refs[0] if len(refs) == 1 and num_returns == 1 else refs


    def _resolve(self, core: Any, options: dict) -> tuple:
        """Scheduling options as a spec carries them; worked out once for plain ``.remote()`` calls
        (not inside a capturing placement group, not with a runtime env), then reused."""
        cacheable = (
            options is self._options and not core.job_runtime_env and not options.get("runtime_env")
            and tb.captured_placement() is None
        )
        cached = getattr(self, "_resolved_cache", None)  # absent on objects pickled by an older version
        if cacheable and cached is not None:
            return cached
        strategy, placement = tb.strategy_and_placement(options)
        runtime_env, env_key = tb.prepare_runtime_env(core, options.get("runtime_env"))
        resolved = (
            strategy, placement, tb.capture_child_tasks(options), task_resources(options),
            tb.retry_exceptions_for_spec(options.get("retry_exceptions")), runtime_env, env_key,
        )
        if cacheable:
            self._resolved_cache = resolved
        return resolved


class _FunctionWithOptions:
    def __init__(self, fn: RemoteFunction, options: dict) -> None:
        self._fn = fn
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._remote(args, kwargs, self._options)

    def options(self, **options: Any) -> _FunctionWithOptions:
        merged = merge_options(self._options, validate_task_options(options, in_options=True))
        return _FunctionWithOptions(self._fn, merged)
