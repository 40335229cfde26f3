"""The options of ``@remote(...)`` and ``.options(...)``, as one declarative table.

Each :class:`Option` says which kinds it applies to (``"task"``: remote
functions, ``"actor"``: actor classes, ``"method"``: ``@method(...)`` on an
actor's methods), how its value is checked, its default and what it means.
:func:`validate_task_options`, :func:`validate_actor_options` and
:func:`validate_method_options` all read the same :data:`OPTIONS` table.

Every error names the option and the value given and says what is valid; an
unknown name suggests the closest valid one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from distcore._private import runtime_env as _runtime_env
from distcore.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

TASK, ACTOR, METHOD = "task", "actor", "method"
KINDS = (TASK, ACTOR, METHOD)
_KIND_NOUN = {TASK: "remote functions", ACTOR: "actors", METHOD: "actor methods"}
RESOURCE_PRECISION = 1e-4
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"

Validator = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """One option: where it applies, how it is checked, its default and meaning.

    ``check(name, value)`` returns the (possibly normalized) value or raises
    ``TypeError``/``ValueError``. ``None`` is accepted without calling
    ``check`` when ``nullable`` (it means "use the default").
    """

    name: str
    kinds: frozenset[str]
    check: Validator
    default: Any
    description: str
    nullable: bool = True


# --------------------------------------------------------------------------- validators


def _fail(name: str, value: Any, valid: str, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"Invalid value for option '{name}': {value!r} ({type(value).__name__}). Valid: {valid}.")


def _quantity(name: str, value: Any, valid: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, valid, TypeError)
    if not math.isfinite(value) or value < 0:
        raise _fail(name, value, valid)
    if value and value < RESOURCE_PRECISION:
        raise _fail(name, value, f"{valid} (precision is {RESOURCE_PRECISION})")
    return value


def _resource(name: str, value: Any) -> float | int:
    return _quantity(name, value, "a non-negative finite number, e.g. 0.5 or 2")


def _gpus(name: str, value: Any) -> float | int:
    valid = "a fraction below 1 (e.g. 0.25) or a whole number of GPUs (e.g. 2)"
    quantity = _quantity(name, value, valid)
    if quantity > 1 and quantity != int(quantity):
        raise _fail(name, quantity, valid)
    return quantity


def _int_at_least(minimum: int, valid: str) -> Validator:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, value, valid, TypeError)
        if value < minimum:
            raise _fail(name, value, valid)
        return value

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "True or False", TypeError)
    return value


def _nonempty_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(name, value, "a non-empty str", TypeError)
    if not value:
        raise _fail(name, value, "a non-empty str")
    return value


def _choice(*choices: Any) -> Validator:
    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise _fail(name, value, " or ".join(repr(c) for c in choices))
        return value

    return check


def _str_dict(name: str, value: Any, value_type: type | tuple[type, ...], valid: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(name, value, valid, TypeError)
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, value_type) or isinstance(item, bool):
            raise TypeError(
                f"Invalid entry {key!r}: {item!r} in option '{name}' "
                f"({type(key).__name__} -> {type(item).__name__}). Valid: {valid}."
            )
    return dict(value)


def _resources(name: str, value: Any) -> dict[str, float]:
    resources = _str_dict(name, value, (int, float), 'a dict of resource name to quantity, e.g. {"TPU": 4}')
    reserved = sorted(k for k in resources if k in ("CPU", "GPU"))
    if reserved:
        raise ValueError(
            f"Invalid value for option '{name}': {value!r}. Do not put {', '.join(map(repr, reserved))} "
            "in 'resources'; use the num_cpus and num_gpus options instead."
        )
    for key, quantity in resources.items():
        _resource(f"{name}[{key!r}]", quantity)
    return resources


def _num_returns(name: str, value: Any) -> int | str:
    valid = 'an int >= 0, "dynamic" or "streaming" (for generators)'
    if isinstance(value, str):
        if value in ("dynamic", "streaming"):
            return value
        raise _fail(name, value, valid)
    count: int = _int_at_least(0, valid)(name, value)
    return count


def _retry_exceptions(name: str, value: Any) -> bool | list[type[BaseException]]:
    valid = "True, False, or a list of exception classes to retry on"
    if isinstance(value, bool):
        return value
    if not isinstance(value, (list, tuple)):
        raise _fail(name, value, valid, TypeError)
    for item in value:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise _fail(name, value, valid, TypeError)
    return list(value)


def _concurrency_groups(name: str, value: Any) -> dict[str, int]:
    valid = 'a dict of group name to max concurrency >= 1, e.g. {"io": 10}'
    groups = _str_dict(name, value, int, valid)
    for group, limit in groups.items():
        if limit < 1:
            raise _fail(f"{name}[{group!r}]", limit, valid)
    return groups


def _scheduling_strategy(name: str, value: Any) -> Any:
    strategies = (PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy, NodeLabelSchedulingStrategy)
    if value in ("DEFAULT", "SPREAD") if isinstance(value, str) else isinstance(value, strategies):
        return value
    raise _fail(
        name,
        value,
        '"DEFAULT", "SPREAD", or a PlacementGroupSchedulingStrategy, NodeAffinitySchedulingStrategy or '
        "NodeLabelSchedulingStrategy from distcore.util.scheduling_strategies",
        ValueError if isinstance(value, str) else TypeError,
    )


def _legacy_placement_group(name: str, value: Any) -> Any:
    if value == "default" or hasattr(value, "id"):
        return value
    raise _fail(name, value, 'a placement group, None or "default"', TypeError)


def _runtime_env_option(name: str, value: Any) -> dict[str, Any]:
    try:
        return _runtime_env.validate(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"Invalid value for option '{name}': {value!r}. {e}") from e


def _label_selector(name: str, value: Any) -> dict[str, str]:
    return _str_dict(name, value, str, 'a dict of label name to value, e.g. {"region": "us-west"}')


def _any_dict(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(name, value, "a dict", TypeError)
    return dict(value)


# --------------------------------------------------------------------------- the table

_T, _A, _M = frozenset({TASK}), frozenset({ACTOR}), frozenset({METHOD})
_TA, _TM, _AM = _T | _A, _T | _M, _A | _M
_COUNT_OR_INF = "-1 (infinite) or an int >= 0"

OPTIONS: dict[str, Option] = {
    opt.name: opt
    for opt in [
        Option(
            "num_cpus", _TA, _resource, None, "CPUs to reserve; tasks default to 1, actors to 1 to schedule and 0 held"
        ),
        Option("num_gpus", _TA, _gpus, None, "GPUs to reserve: a fraction below 1 or a whole number"),
        Option("resources", _TA, _resources, None, "custom resources, name -> quantity (not CPU/GPU)"),
        Option("memory", _TA, _resource, None, "heap memory to reserve, in bytes"),
        Option(
            "object_store_memory",
            _A,
            _int_at_least(0, "an int >= 0 (bytes)"),
            None,
            "accepted; reserves nothing, as in Ray",
        ),
        Option("accelerator_type", _TA, _nonempty_str, None, 'require a node with this accelerator, e.g. "A100"'),
        Option("num_returns", _TM, _num_returns, 1, 'number of return objects, or "dynamic"/"streaming"'),
        Option("max_retries", _T, _int_at_least(-1, _COUNT_OR_INF), 3, "retries when the worker dies"),
        Option("retry_exceptions", _TM, _retry_exceptions, False, "also retry on these application errors", False),
        Option(
            "max_calls", _T, _int_at_least(0, "an int >= 0 (0: unlimited)"), 0, "tasks a worker runs before exiting"
        ),
        Option("max_restarts", _A, _int_at_least(-1, _COUNT_OR_INF), 0, "times to restart the actor when it dies"),
        Option("max_task_retries", _AM, _int_at_least(-1, _COUNT_OR_INF), 0, "retries of an actor method call"),
        Option("max_concurrency", _A, _int_at_least(1, "an int >= 1"), None, "calls run at once (1; 1000 async)"),
        Option("max_pending_calls", _A, _int_at_least(-1, "-1 (unlimited) or an int >= 0"), -1, "queued calls bound"),
        Option("concurrency_groups", _A, _concurrency_groups, None, "named groups with their own concurrency"),
        Option("concurrency_group", _M, _nonempty_str, None, "the concurrency group a method runs in"),
        Option("name", _TA, _nonempty_str, None, "task name, or the actor's registered name"),
        Option("namespace", _A, _nonempty_str, None, "namespace of a named actor"),
        Option("lifetime", _A, _choice("detached", "non_detached"), None, "detached actors outlive their owner"),
        Option("get_if_exists", _A, _bool, False, "return the named actor if it exists (needs name)", False),
        Option("scheduling_strategy", _TA, _scheduling_strategy, None, '"DEFAULT", "SPREAD" or a strategy object'),
        Option("placement_group", _TA, _legacy_placement_group, "default", "legacy: use scheduling_strategy"),
        Option("placement_group_bundle_index", _TA, _int_at_least(-1, "-1 or a bundle index"), -1, "legacy", False),
        Option("placement_group_capture_child_tasks", _TA, _bool, None, "legacy: use scheduling_strategy"),
        Option("runtime_env", _TA, _runtime_env_option, None, "env_vars, working_dir, py_modules for the worker"),
        Option("label_selector", _TA, _label_selector, None, "node labels required, label -> value"),
        Option("enable_task_events", _TA | _M, _bool, True, "record task events (accepted, Ray compatibility)"),
        Option("_metadata", _TA, _any_dict, None, "opaque per-library metadata (ignored)"),
    ]
}


# --------------------------------------------------------------------------- API


def option_names(kind: str) -> tuple[str, ...]:
    """The sorted option names valid for ``kind`` ("task", "actor" or "method")."""
    if kind not in KINDS:
        raise ValueError(f"Unknown option kind {kind!r}; expected one of {KINDS}")
    return tuple(sorted(name for name, opt in OPTIONS.items() if kind in opt.kinds))


def option_defaults(kind: str) -> dict[str, Any]:
    """Each option valid for ``kind`` mapped to its default."""
    return {name: OPTIONS[name].default for name in option_names(kind)}


def _validate(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"Options for {_KIND_NOUN[kind]} must be a dict, got {type(options).__name__}")
    valid = option_names(kind)
    out: dict[str, Any] = {}
    for name, value in options.items():
        opt = OPTIONS.get(name)
        if opt is None or kind not in opt.kinds:
            close = difflib.get_close_matches(str(name), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            where = (
                f" (it applies to {' and '.join(_KIND_NOUN[k] for k in KINDS if k in opt.kinds)} only)" if opt else ""
            )
            raise ValueError(
                f"Invalid option {name!r} for {_KIND_NOUN[kind]}{where}.{hint} Valid options: {', '.join(valid)}."
            )
        if value is None and opt.nullable:
            out[name] = None
        else:
            out[name] = opt.check(name, value)
    pg = out.get("placement_group", "default")
    if pg not in ("default", None) and out.get("scheduling_strategy") is not None:
        raise ValueError(
            "Options 'placement_group' and 'scheduling_strategy' cannot both be set; use "
            "scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group, ...)."
        )
    return out


def validate_task_options(options: Mapping[str, Any], *, in_options: bool = False) -> dict[str, Any]:
    """Check ``@remote(...)`` options of a function; return a normalized copy.

    ``in_options=True`` when the options come from ``.options(...)``, where
    ``max_calls`` cannot be set.
    """
    out = _validate(TASK, options)
    if in_options and "max_calls" in out:
        raise ValueError(
            f"Option 'max_calls' ({out['max_calls']!r}) cannot be set in .options(); set it in @remote(...)."
        )
    return out


def validate_actor_options(options: Mapping[str, Any], *, in_options: bool = False) -> dict[str, Any]:
    """Check ``@remote(...)`` options of an actor class; return a normalized copy.

    ``in_options=True`` when the options come from ``.options(...)``, where
    ``concurrency_groups`` cannot be set.
    """
    out = _validate(ACTOR, options)
    if in_options and "concurrency_groups" in out:
        raise ValueError(
            f"Option 'concurrency_groups' ({out['concurrency_groups']!r}) cannot be set in .options(); "
            "set it in @remote(...)."
        )
    if out.get("get_if_exists") and not out.get("name"):
        raise ValueError("Option 'get_if_exists' (True) needs the actor's 'name' option to be set too.")
    return out


def validate_method_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``@method(...)`` / ``actor.method.options(...)`` options; return a copy."""
    return _validate(METHOD, options)


def merge_options(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override`` (``.options()`` over ``@remote``), as a new dict.

    ``_metadata`` (``{namespace: config}``) is merged per namespace.
    """
    merged = {**base, **override}
    if base.get("_metadata") is not None and override.get("_metadata") is not None:
        metadata = dict(base["_metadata"])
        for namespace, config in override["_metadata"].items():
            metadata[namespace] = {**metadata.get(namespace, {}), **config}
        merged["_metadata"] = metadata
    return merged


def resolve_scheduling_strategy(options: Mapping[str, Any]) -> Any:
    """The effective ``scheduling_strategy``, turning the legacy placement-group kwargs into one."""
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group", "default")
    if strategy is None and pg not in ("default", None):
        bundle = options.get("placement_group_bundle_index")
        return PlacementGroupSchedulingStrategy(
            pg, -1 if bundle is None else bundle, options.get("placement_group_capture_child_tasks")
        )
    return strategy


def _requested(options: Mapping[str, Any]) -> dict[str, float]:
    """Resources named in ``options`` (zero values kept), without defaults."""
    res = {k: float(v) for k, v in (options.get("resources") or {}).items()}
    for option, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(option) is not None:
            res[resource] = float(options[option])
    if options.get("accelerator_type"):
        res[ACCELERATOR_RESOURCE_PREFIX + options["accelerator_type"]] = 0.001
    return res


def _nonzero(res: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in res.items() if v}


def task_resources(options: Mapping[str, Any]) -> dict[str, float]:
    """The resources a task holds while it runs (1 CPU unless ``num_cpus`` says otherwise).

    Zero quantities are left out. ``accelerator_type="X"`` adds a tiny
    ``"accelerator_type:X"`` demand that only nodes with that accelerator have.
    """
    res = _requested(options)
    res.setdefault("CPU", 1.0)
    return _nonzero(res)


def actor_resources(options: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """``(placement, runtime)`` resources of an actor, with Ray's defaults.

    An actor that names no resources (``memory`` aside) needs 1 CPU to be
    placed but holds no CPU while it lives. Once any resource is named,
    exactly what was named is needed and held for the actor's lifetime
    (``num_cpus`` defaulting to 0). ``object_store_memory`` reserves nothing,
    as in Ray.
    """
    res = _requested(options)
    runtime = _nonzero(res)
    if not set(res) - {"memory"}:
        return {**runtime, "CPU": 1.0}, runtime
    return runtime, dict(runtime)
