"""Actor classes and handles: ``Cls.remote()`` creates an actor,
``handle.method.remote()`` calls it."""

from __future__ import annotations

import inspect
from typing import Any

from distcore._private import ids, worker_state
from distcore._private import protocol as p
from distcore._private.api import task_builder as tb
from distcore._private.core_worker.actor_submitter import TERMINATE_METHOD as _TERMINATE
from distcore._private.options import (
    actor_resources,
    merge_options,
    validate_actor_options,
    validate_method_options,
)


def method(**options: Any) -> Any:
    """Set per-method options on an actor method (``num_returns``).

    Example::

        @distcore.remote
        class Pair:
            @distcore.method(num_returns=2)
            def both(self):
                return 1, 2
    """
    validated = validate_method_options(options)

    def decorate(fn: Any) -> Any:
        fn.__distcore_method_options__ = validated
        return fn

    return decorate


def _method_meta(cls: type) -> dict[str, dict]:
    meta: dict[str, dict] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name not in ("__call__",):
            continue
        if not callable(member):
            continue
        opts = dict(getattr(member, "__distcore_method_options__", {}))
        is_generator = inspect.isgeneratorfunction(member) or inspect.isasyncgenfunction(member)
        num_returns = opts.get("num_returns")
        if num_returns is None:
            # As in Ray: generator methods stream unless told otherwise.
            num_returns = "streaming" if is_generator else 1
        meta[name] = {
            "num_returns": num_returns,
            "is_async": inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member),
            "is_generator": is_generator,
        }
    return meta


class ActorClass:
    """A class made remote with ``@distcore.remote``.

    Example::

        @distcore.remote
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        c = Counter.remote()
        assert distcore.get(c.incr.remote()) == 1
    """

    def __init__(self, cls: type, options: dict) -> None:
        self._cls = cls
        self._options = validate_actor_options(options)
        self._exporter = tb.FunctionExporter(cls)
        self._meta = _method_meta(cls)
        self._is_asyncio = any(m["is_async"] for m in self._meta.values())
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actors cannot be instantiated directly. Instead of '{self.__name__}()', use '{self.__name__}.remote()'."
        )

    def options(self, **options: Any) -> _ClassWithOptions:
        merged = merge_options(self._options, validate_actor_options(options, in_options=True))
        return _ClassWithOptions(self, merged)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._remote(args, kwargs, self._options)

    def _remote(self, args: tuple, kwargs: dict, options: dict) -> ActorHandle:
        from distcore._private.api.runtime import auto_init

        core = auto_init()
        validate_actor_options(options)
        name = options.get("name")
        namespace = options.get("namespace") or core.namespace
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"actor name must be a non-empty string, got {name!r}")
        task_args, task_kwargs, deps, keep = tb.build_args(core, f"{self.__name__}.__init__", args, kwargs)
        strategy, placement = tb.strategy_and_placement(options)
        runtime_env, env_key = tb.prepare_runtime_env(core, options.get("runtime_env"))
        placement_res, running_res = actor_resources(options)
        actor_id = ids.new_actor_id()
        task_id = ids.new_task_id()
        max_concurrency = options.get("max_concurrency") or (1000 if self._is_asyncio else 1)
        function_id = self._exporter.function_id(core)
        if self._exporter.captured:
            deps = deps + self._exporter.captured  # kept while the actor may (re)start
        creation = p.TaskSpec(
            task_id=task_id, job_id=core.job_id, kind=p.ACTOR_CREATION_TASK, name=self.__name__,
            function_id=function_id, args=task_args, kwargs=task_kwargs, num_returns=1,
            return_ids=[ids.object_id_for_return(task_id, 1)], owner=core.address,  # type: ignore[arg-type]
            resources=running_res, placement_resources=placement_res, runtime_env=runtime_env,
            runtime_env_key=env_key, strategy=strategy, placement=placement,
            capture_child_tasks=tb.capture_child_tasks(options), namespace=namespace,
            actor_id=actor_id, max_concurrency=max_concurrency, is_asyncio=self._is_asyncio,
            parent_task_id=core.current_task_id,  # set inside a task: the actor fate-shares with this worker
        )
        detached = options.get("lifetime") == "detached"
        spec = p.ActorSpec(
            actor_id=actor_id, job_id=core.job_id, creation=creation, class_name=self.__name__, name=name,
            namespace=namespace, detached=detached, max_restarts=options.get("max_restarts") or 0,
            get_if_exists=bool(options.get("get_if_exists")), owner=core.address, method_meta=self._meta,
        )
        # The actor's worker fetches ref arguments itself, so this call does not
        # wait for them; they stay pinned while a (re)start may still read them.
        core.refs.add_submitted(deps)
        del keep
        try:
            info: p.ActorInfo = core.gcs_call("RegisterActor", spec)
        except BaseException:
            core.refs.remove_submitted(deps)
            raise
        if info.actor_id != actor_id:
            core.refs.remove_submitted(deps)  # get_if_exists found a live actor: nothing was created
        elif deps:
            core.spawn(core.actors.release_when_dead(actor_id, deps))
        max_task_retries = options.get("max_task_retries") or 0
        anchor = None
        if info.actor_id == actor_id and not detached:
            # The actor lives while refs to this anchor do: every copy of the
            # handle carries it, so borrowers in tasks and actors count too. As
            # in Ray, handles from get_actor do not, even for a named actor.
            anchor = core.put(None)
            core.actors.anchors[anchor.hex()] = (actor_id, info.class_name)
        return ActorHandle(info.actor_id, info.class_name, info.method_meta, max_task_retries, anchor)


class _ClassWithOptions:
    def __init__(self, actor_class: ActorClass, options: dict) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._actor_class._remote(args, kwargs, self._options)


class ActorHandle:
    """A handle to an actor; pass it to tasks and other actors freely.

    Example::

        counter = Counter.remote()
        distcore.get(counter.incr.remote())
    """

    def __init__(
        self, actor_id: str, class_name: str, meta: dict, max_task_retries: int = 0, anchor: Any = None
    ) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._meta = meta
        self._max_task_retries = max_task_retries
        self._anchor = anchor  # ObjectRef whose release ends the actor (None: not owned)

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("__") and name not in ("__call__", "__ray_terminate__", _TERMINATE):
            raise AttributeError(name)
        if name == "__ray_terminate__":
            name = _TERMINATE
        meta = self._meta.get(name)
        if meta is None and name != _TERMINATE:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, (meta or {}).get("num_returns", 1))

    def __reduce__(self) -> Any:
        return (ActorHandle, (self._actor_id, self._class_name, self._meta, self._max_task_retries, self._anchor))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _actor_id_hex(self) -> str:
        return self._actor_id


class ActorMethod:
    """``handle.method``: call ``.remote(...)`` or ``.options(num_returns=...)``."""

    def __init__(self, handle: ActorHandle, name: str, num_returns: Any) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of '{self._name}()', try '{self._name}.remote()'."
        )

    def options(self, **options: Any) -> _MethodWithOptions:
        return _MethodWithOptions(self, validate_method_options(options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._remote(args, kwargs, {})

    def _remote(self, args: tuple, kwargs: dict, options: dict) -> Any:
        from distcore._private.api.object_ref import ObjectRefGenerator
        from distcore._private.api.runtime import auto_init

        core = auto_init()
        handle = self._handle
        num_returns = options.get("num_returns", self._num_returns)
        label = f"{handle._class_name}.{self._name}"
        task_args, task_kwargs, deps, keep = tb.build_args(core, label, args, kwargs)
        task_id = ids.new_task_id()
        return_ids, refs = tb.new_return_refs(core, task_id, num_returns)
        spec = p.TaskSpec(
            task_id=task_id, job_id=core.job_id, kind=p.ACTOR_TASK, name=label, function_id="",
            args=task_args, kwargs=task_kwargs, num_returns=num_returns, return_ids=return_ids,
            owner=core.address, resources={}, actor_id=handle._actor_id, method_name=self._name,  # type: ignore[arg-type]
            namespace=core.namespace, parent_task_id=core.current_task_id,
        )
        core.refs.add_submitted(deps)
        del keep
        core.actors.submit_call(spec, deps, handle._max_task_retries)
        if num_returns == "streaming":
            return ObjectRefGenerator(task_id)
        if num_returns == 0:
            return None
        return refs[0] if num_returns in (1, "dynamic") else refs


class _MethodWithOptions:
    def __init__(self, method: ActorMethod, options: dict) -> None:
        self._method = method
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method._remote(args, kwargs, self._options)


def exit_actor() -> None:
    """End the current actor gracefully from inside one of its methods.

    Calls after this one fail with ``ActorDiedError``; the actor is not restarted.
    """
    from distcore._private.core_worker.executor import _ExitActor
    from distcore.exceptions import AsyncioActorExit

    core = worker_state.core_worker()
    if core is None or core.current_actor_id is None:
        raise TypeError("exit_actor() must be called from inside an actor method")
    executor = core.executor
    if executor is not None and executor.async_loop is not None:
        raise AsyncioActorExit()
    raise _ExitActor()
