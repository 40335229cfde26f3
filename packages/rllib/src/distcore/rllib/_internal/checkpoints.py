"""Algorithm checkpoints on disk: torch state_dict files, JSON and numpy ``.npz``; no pickled weights.

A checkpoint directory (format version 2) holds::

    rllib_checkpoint.json        what it is: {"type": "Algorithm", "format": "distcore-rllib",
                                 "checkpoint_version": "2.0", "algorithm": "DQN",
                                 "algo_class": "distcore.rllib.algorithms.dqn:DQN", "modules": {...}, ...}
    config.json                  the AlgorithmConfig (``to_dict()``): JSON values as they are; classes and
                                 functions importable from a module as {"__import__": "module:qualname"};
                                 anything else (a lambda policy_mapping_fn, gymnasium spaces, an
                                 RLModuleSpec) as {"__pickled__": "<key>"}, stored in config_objects.pkl
    config_objects.pkl           (only when needed) cloudpickle of those config values, nothing else
    algorithm_state.json         counters, iteration, recent episode returns, algorithm state (JSON part)
    algorithm_state.npz          the algorithm state's arrays (e.g. replay buffer columns and priority
                                 trees when ``store_buffer_in_checkpoints``), referenced from the JSON
                                 as {"__array__": "<name>"}; read with allow_pickle=False
    modules/<i>/module_state.pt  each module's ``state_dict()`` (tensors only: torch.load(weights_only=True))
    modules/<i>/optimizer_<k>.pt its optimizers' ``state_dict()``s
    learner_extra.pt             learner extras (target networks, SAC's log-alpha, PPO's KL coefficients)

Weights and buffers load with plain torch/numpy (no code objects), so they survive library upgrades;
``config_objects.pkl`` is the only pickle, and ``Algorithm.from_checkpoint(path, **overrides)``
replaces its values when they no longer unpickle.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import numpy as np
import torch

FORMAT = "distcore-rllib"
CHECKPOINT_VERSION = "2.0"
META_FILE = "rllib_checkpoint.json"
LEGACY_STATE_FILE = "algorithm_state.pkl"
_CONFIG_FILE = "config.json"
_OBJECTS_FILE = "config_objects.pkl"
_STATE_JSON = "algorithm_state.json"
_STATE_NPZ = "algorithm_state.npz"
_EXTRA_FILE = "learner_extra.pt"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read (missing files, newer format, stale pickled config)."""


# ---------------------------------------------------------------------------------------- helpers
def import_path(obj: Any) -> str | None:
    """``"module:qualname"`` for a module-level class or function, else None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def load_import_path(path: str) -> Any:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _to_torch(tree: Any) -> Any:
    if isinstance(tree, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(tree))
    if isinstance(tree, dict):
        return {k: _to_torch(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_torch(v) for v in tree)
    return tree


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.detach().cpu().numpy()
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_numpy(v) for v in tree]
    return tree


def _split_arrays(tree: Any, arrays: dict[str, np.ndarray], prefix: str = "a") -> Any:
    """JSON-able copy of ``tree`` with arrays moved into ``arrays`` (numpy scalars become numbers)."""
    if isinstance(tree, np.ndarray):
        name = f"{prefix}{len(arrays)}"
        arrays[name] = tree
        return {"__array__": name}
    if isinstance(tree, np.generic):
        return tree.item()
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            return {"__items__": [[_split_arrays(k, arrays), _split_arrays(v, arrays)] for k, v in tree.items()]}
        return {k: _split_arrays(v, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split_arrays(v, arrays) for v in tree]
    return tree


def _join_arrays(tree: Any, arrays: Any) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return np.array(arrays[tree["__array__"]])
        if set(tree) == {"__items__"}:
            return {_join_arrays(k, arrays): _join_arrays(v, arrays) for k, v in tree["__items__"]}
        return {k: _join_arrays(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join_arrays(v, arrays) for v in tree]
    return tree


# ---------------------------------------------------------------------------------------- config
def _encode_config_value(value: Any, objects: dict[str, Any], key: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode_config_value(v, objects, f"{key}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and not (
            set(value) & {"__import__", "__pickled__"}):
        return {k: _encode_config_value(v, objects, f"{key}.{k}") for k, v in value.items()}
    path = import_path(value) if isinstance(value, type) or callable(value) else None
    if path is not None:
        return {"__import__": path}
    objects[key] = value
    return {"__pickled__": key}


def _decode_config_value(value: Any, objects: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_decode_config_value(v, objects) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__import__"}:
            return load_import_path(value["__import__"])
        if set(value) == {"__pickled__"}:
            return objects[value["__pickled__"]]
        return {k: _decode_config_value(v, objects) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------- write
def _module_dirs(module_ids: list[str]) -> dict[str, str]:
    return {mid: f"modules/{i}" for i, mid in enumerate(module_ids)}


def write_checkpoint(directory: str, algo_class: type, config_dict: dict[str, Any], state: dict[str, Any],
                     version: str) -> None:
    """Write ``state`` (``Algorithm.get_state()``) and the config into ``directory``."""
    import cloudpickle

    os.makedirs(directory, exist_ok=True)
    learner = state["learner"]
    module_dirs = _module_dirs(list(learner["weights"]))
    for mid, sub in module_dirs.items():
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
        torch.save(_to_torch(learner["weights"][mid]), os.path.join(directory, sub, "module_state.pt"))
        for k, opt_state in enumerate(learner["optimizers"].get(mid, [])):
            torch.save(opt_state, os.path.join(directory, sub, f"optimizer_{k}.pt"))
    torch.save(_to_torch(learner.get("extra", {})), os.path.join(directory, _EXTRA_FILE))

    objects: dict[str, Any] = {}
    encoded = {k: _encode_config_value(v, objects, k) for k, v in config_dict.items()}
    with open(os.path.join(directory, _CONFIG_FILE), "w") as f:
        json.dump(encoded, f, indent=1, sort_keys=True)
    objects_file = os.path.join(directory, _OBJECTS_FILE)
    if objects:
        with open(objects_file, "wb") as f:
            cloudpickle.dump(objects, f)
    elif os.path.exists(objects_file):
        os.remove(objects_file)

    arrays: dict[str, np.ndarray] = {}
    rest = {k: v for k, v in state.items() if k != "learner"}
    with open(os.path.join(directory, _STATE_JSON), "w") as f:
        json.dump(_split_arrays(rest, arrays), f)
    np.savez(os.path.join(directory, _STATE_NPZ), **arrays)

    legacy = os.path.join(directory, LEGACY_STATE_FILE)
    if os.path.exists(legacy):
        os.remove(legacy)
    meta = {"type": "Algorithm", "format": FORMAT, "checkpoint_version": CHECKPOINT_VERSION,
            "algorithm": algo_class.__name__, "algo_class": import_path(algo_class),
            "distcore_rllib_version": version, "modules": module_dirs,
            "num_optimizers": {mid: len(learner["optimizers"].get(mid, [])) for mid in module_dirs},
            "config_objects": sorted(objects),
            "replay_buffers": sorted(rest.get("algorithm", {}).get("replay_buffers", {}) or {})}
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)


# ---------------------------------------------------------------------------------------- read
def read_metadata(directory: str) -> dict[str, Any]:
    meta_file = os.path.join(directory, META_FILE)
    if not os.path.isfile(meta_file):
        raise FileNotFoundError(f"{directory!r} is not an rllib checkpoint (no {META_FILE}): pass the directory "
                                "that Algorithm.save() / save_to_path() returned")
    with open(meta_file) as f:
        meta = json.load(f)
    if meta.get("format") == "cloudpickle":
        return meta
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{directory!r}: unknown checkpoint format {meta.get('format')!r}")
    major = int(str(meta.get("checkpoint_version", "0")).split(".")[0])
    if major > int(CHECKPOINT_VERSION.split(".")[0]):
        raise CheckpointError(f"{directory!r} has checkpoint_version {meta['checkpoint_version']}, newer than this "
                              f"distcore-rllib reads ({CHECKPOINT_VERSION}): upgrade distcore-rllib")
    return meta


def read_config(directory: str, meta: dict[str, Any], overridden: set[str] = frozenset()) -> dict[str, Any]:
    """The config dict (``to_dict()`` form) with importable values imported and pickled ones unpickled.

    When the pickled values no longer load but the caller overrides every config key they belong
    to (``overridden``), they read as None (the caller's values replace them).
    """
    with open(os.path.join(directory, _CONFIG_FILE)) as f:
        encoded = json.load(f)
    objects: dict[str, Any] = {}
    stale = list(meta.get("config_objects", []))
    if stale:
        import cloudpickle

        try:
            with open(os.path.join(directory, _OBJECTS_FILE), "rb") as f:
                objects = cloudpickle.load(f)
        except Exception as error:  # noqa: BLE001 - any unpickling failure gets the same advice
            if not all(key.split(".")[0] in overridden for key in stale):
                raise CheckpointError(
                    f"the checkpoint's pickled config values {stale} no longer load "
                    f"({type(error).__name__}: {error}); pass them again, e.g. "
                    f"Algorithm.from_checkpoint(path, policy_mapping_fn=...)") from error
            objects = dict.fromkeys(stale)
    try:
        return {k: _decode_config_value(v, objects) for k, v in encoded.items() if k not in overridden}
    except (ImportError, AttributeError) as error:
        raise CheckpointError(f"a config value of the checkpoint no longer imports: {error}; pass it again "
                              "as a keyword of Algorithm.from_checkpoint") from error


def read_state(directory: str, meta: dict[str, Any]) -> dict[str, Any]:
    """``Algorithm.get_state()`` as written by :func:`write_checkpoint`."""
    weights, optimizers = {}, {}
    for mid, sub in meta["modules"].items():
        path = os.path.join(directory, sub)
        weights[mid] = _to_numpy(torch.load(os.path.join(path, "module_state.pt"), map_location="cpu",
                                            weights_only=True))
        # On the CPU whatever device wrote them; a GPU learner's optimizers move them to its parameters.
        optimizers[mid] = [torch.load(os.path.join(path, f"optimizer_{k}.pt"), map_location="cpu", weights_only=True)
                           for k in range(meta["num_optimizers"][mid])]
    extra = _to_numpy(torch.load(os.path.join(directory, _EXTRA_FILE), map_location="cpu", weights_only=True))
    with open(os.path.join(directory, _STATE_JSON)) as f:
        rest = json.load(f)
    with np.load(os.path.join(directory, _STATE_NPZ), allow_pickle=False) as arrays:
        state = _join_arrays(rest, arrays)
    state["learner"] = {"weights": weights, "optimizers": optimizers, "extra": extra}
    return state


def read_legacy(directory: str) -> dict[str, Any]:
    """A format-1 (cloudpickle) checkpoint: {"algo_class", "config", "state"}."""
    import cloudpickle

    file = os.path.join(directory, LEGACY_STATE_FILE)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{directory!r} is not an rllib checkpoint (no {LEGACY_STATE_FILE})")
    with open(file, "rb") as f:
        return cloudpickle.load(f)
