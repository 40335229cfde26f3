"""Building task specs from a call: arguments, resources, strategy, env.

Shared by remote functions, actor creation and actor method calls.
"""

from __future__ import annotations

import io
import types
from collections import ChainMap
from typing import Any

import cloudpickle

from distcore._private import ids
from distcore._private import protocol as p
from distcore._private import runtime_env as renv
from distcore._private.api.object_ref import ObjectRef
from distcore._private.core_worker.core_worker import CoreWorker
from distcore._private.core_worker.objects import INLINE_MAX_BYTES
from distcore._private.scheduling.policy import (
    DefaultStrategy,
    NodeAffinityStrategy,
    SpreadStrategy,
)
from distcore._private.serialization import _Collector, serialize, serialize_plain
from distcore._private.serialization import _local as _serialization_state


def build_args(
    core: CoreWorker, fn_name: str, args: tuple, kwargs: dict
) -> tuple[list[p.TaskArg], dict[str, p.TaskArg], list[str], list[ObjectRef]]:
    """Serialize call arguments.

    Returns (args, kwargs, ids the task depends on, refs made for large
    arguments). The caller holds the last list until the dependencies are
    counted as submitted.
    """
    deps: list[str] = []
    keep: list[ObjectRef] = []
    out_args = [_arg(core, fn_name, f"argument {i}", a, deps, keep) for i, a in enumerate(args)]
    out_kwargs = {k: _arg(core, fn_name, f"argument {k!r}", v, deps, keep) for k, v in kwargs.items()}
    return out_args, out_kwargs, deps, keep


def _arg(core: CoreWorker, fn_name: str, label: str, value: Any, deps: list[str], keep: list[ObjectRef]) -> p.TaskArg:
    if isinstance(value, ObjectRef):
        deps.append(value.hex())
        return p.TaskArg(object_id=value.hex(), owner=value.owner_address())
    plain = serialize_plain(value)
    if plain is not None:
        return p.TaskArg(value=p.SerializedValue(plain, []))
    serialized = serialize(value, lambda: f"{label} of {fn_name} ({type(value).__name__})")
    contained = [(r.hex(), r.owner_address()) for r in serialized.contained_refs]
    deps.extend(i for i, _ in contained)
    if serialized.total_size > INLINE_MAX_BYTES:
        # Large arguments go through the object store once.
        ref = core.put(value)
        deps.append(ref.hex())
        keep.append(ref)
        return p.TaskArg(object_id=ref.hex(), owner=ref.owner_address())
    return p.TaskArg(value=p.SerializedValue(serialized.to_bytes(), contained))


def strategy_and_placement(options: dict) -> tuple[Any, tuple[str, int] | None]:
    from distcore._private.options import resolve_scheduling_strategy
    from distcore.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,
        PlacementGroupSchedulingStrategy,
    )

    strategy = resolve_scheduling_strategy(options)
    if strategy is None and _captured_placement() is not None:
        return None, _captured_placement()
    if strategy is None or strategy == "DEFAULT":
        return DefaultStrategy(), None
    if strategy == "SPREAD":
        return SpreadStrategy(), None
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return NodeAffinityStrategy(str(strategy.node_id), bool(strategy.soft)), None
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        if pg is None:
            return DefaultStrategy(), None
        return None, (pg.id, int(strategy.placement_group_bundle_index))
    return DefaultStrategy(), None


def captured_placement() -> tuple[str, int] | None:
    return _captured_placement()


def _captured_placement() -> tuple[str, int] | None:
    """The running task's placement group, if it captures child tasks (any bundle)."""
    from distcore._private import worker_state

    core = worker_state.core_worker()
    executor = getattr(core, "executor", None)
    placement = getattr(executor, "current_placement", None)
    if placement is None or not getattr(executor, "current_capture", False):
        return None
    return (placement[0], -1)


def capture_child_tasks(options: dict) -> bool:
    """Whether tasks and actors created inside this one default to its placement group.

    As in Ray: the strategy's ``placement_group_capture_child_tasks`` when set,
    else inherited from a capturing parent whose group this task runs in.
    """
    from distcore._private.options import resolve_scheduling_strategy
    from distcore.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = resolve_scheduling_strategy(options)
    if isinstance(strategy, PlacementGroupSchedulingStrategy) and strategy.placement_group is not None:
        if strategy.placement_group_capture_child_tasks is not None:
            return strategy.placement_group_capture_child_tasks
        captured = _captured_placement()
        return captured is not None and captured[0] == strategy.placement_group.id
    return strategy is None and _captured_placement() is not None


def prepare_runtime_env(core: CoreWorker, runtime_env: dict | None) -> tuple[dict | None, str]:
    """Merge with the job's env, upload local packages, and key it."""
    merged = renv.merge(core.job_runtime_env or {}, runtime_env or {}) if (runtime_env or core.job_runtime_env) else None
    if not merged:
        return None, ""
    merged = renv.validate(merged)

    def kv_put(key: str, value: bytes) -> None:
        core.run(core.gcs().call("Gcs", "KvPut", p.KvPut("pkg", key, value, overwrite=False)))

    def kv_exists(key: str) -> bool:
        return bool(core.run(core.gcs().call("Gcs", "KvExists", p.KvKey("pkg", key))))

    uploaded = renv.upload_packages(merged, kv_put, kv_exists)
    return uploaded, renv.env_key(uploaded)


class FunctionExporter:
    """Pickles a function or class once per process and exports it once per cluster."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        self._blob: bytes | None = None
        self._exported: dict[int, str] = {}
        # Ids of the refs the pickled function or class captured (closure,
        # globals): every task it runs counts them as submitted, so they
        # live until the function can no longer run with them.
        self.captured: list[str] = []

    def function_id(self, core: CoreWorker) -> str:
        key = id(core)
        fid = self._exported.get(key)
        if fid is None:
            if self._blob is None:
                try:
                    self._blob, refs = _dumps_collecting_refs(self._obj)
                    self.captured = list(dict.fromkeys(r.hex() for r in refs))
                except Exception as exc:
                    name = getattr(self._obj, "__qualname__", repr(self._obj))
                    raise TypeError(
                        f"Could not serialize {name} to send it to workers: {type(exc).__name__}: {exc}. "
                        "It probably captures an unpicklable object (a lock, a file, a client); create that "
                        "object inside the function or actor instead."
                    ) from exc
            fid = core.export_function(self._blob)
            self._exported = {key: fid}
        return fid


def new_return_refs(core: CoreWorker, task_id: str, num_returns: Any) -> tuple[list[str], list[ObjectRef]]:
    if num_returns in ("dynamic",):
        count = 1
    elif num_returns == "streaming":
        count = 0
    else:
        count = int(num_returns)
    return_ids = [ids.object_id_for_return(task_id, i + 1) for i in range(count)]
    refs = []
    for rid in return_ids:
        core.refs.add_owned(rid)
        refs.append(ObjectRef(rid, core.address))
    return return_ids, refs


def retry_exceptions_for_spec(value: Any) -> Any:
    """``retry_exceptions`` as it travels in a spec: a list of classes is cloudpickled.

    The wire pickles specs with plain pickle, which refers to classes by
    module path; a class from the user's script or a test function would not
    load in the worker, or load as a different class than the task raises.
    """
    if isinstance(value, (list, tuple)):
        return cloudpickle.dumps(list(value))
    return bool(value)


def _dumps_collecting_refs(obj: Any) -> tuple[bytes, list[Any]]:
    """``dumps_keeping_filenames`` and the refs it pickled."""
    collector = _Collector()
    stack = getattr(_serialization_state, "stack", None)
    if stack is None:
        stack = _serialization_state.stack = []
    stack.append(collector)
    try:
        return dumps_keeping_filenames(obj), collector.refs
    finally:
        stack.pop()


def dumps_keeping_filenames(obj: Any) -> bytes:
    """``cloudpickle.dumps`` that keeps the source file names of code objects.

    cloudpickle writes ``<dynamic-code>`` as the file of functions pickled by
    value; keeping the real path gives remote tracebacks their ``File
    "...", line N`` and source lines, as users see them locally.
    """
    out = io.BytesIO()
    _SourcePickler(out, protocol=5).dump(obj)
    return out.getvalue()


def _code_reduce_keeping_filename(code: types.CodeType) -> Any:
    constructor, args = _CLOUDPICKLE_CODE_REDUCE(code)
    return constructor, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


_CLOUDPICKLE_CODE_REDUCE = getattr(cloudpickle.cloudpickle, "_code_reduce", None)


class _SourcePickler(cloudpickle.Pickler):
    if _CLOUDPICKLE_CODE_REDUCE is not None:
        dispatch_table = ChainMap({types.CodeType: _code_reduce_keeping_filename}, cloudpickle.Pickler.dispatch_table)
