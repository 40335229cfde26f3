"""Which torch device a learner uses, and the checks that a GPU it asks for exists.

``num_gpus_per_learner == 0`` (and ``num_gpus == 0``): CPU, nothing moves. Otherwise the
learner uses ``cuda:0``: in the driver (``num_learners=0``) the first visible GPU; in a
learner actor the GPU distcore assigned it (CUDA_VISIBLE_DEVICES lists only that one).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

import distcore
from distcore.rllib.algorithms.algorithm_config import GPUNotAvailableError

CPU = torch.device("cpu")


def learner_gpus(config: Any) -> float:
    """GPUs one learner asks for: ``num_gpus_per_learner``, or the old ``num_gpus`` for the local learner."""
    if config.num_gpus_per_learner:
        return float(config.num_gpus_per_learner)
    if config.num_learners == 0 and config.num_gpus:
        return float(config.num_gpus)
    return 0.0


def trial_resources(config: dict[str, Any], defaults: Any) -> dict[str, float] | None:
    """A tune trial's resources for an algorithm whose local learner uses a GPU (the trial
    process hosts it), else None (tune's default). ``defaults`` fills keys ``config`` lacks."""
    def value(key: str) -> Any:
        return config.get(key, getattr(defaults, key))

    try:
        per, old, learners = float(value("num_gpus_per_learner")), float(value("num_gpus")), int(value("num_learners"))
        cpus = float(value("num_cpus_for_main_process"))
    except (TypeError, ValueError):
        return None  # invalid settings: validation names them when the algorithm starts
    gpus = (per or old) if learners == 0 else 0.0
    return {"CPU": cpus, "GPU": gpus} if gpus > 0 else None


def _setting(config: Any) -> str:
    if not config.num_gpus_per_learner and config.num_gpus:
        return f"num_gpus={config.num_gpus} (the local learner's GPU)"
    return f"num_gpus_per_learner={config.num_gpus_per_learner}"


def resolve_device(config: Any, rank: int = 0, in_actor: bool = False) -> torch.device:
    """The device a learner builds its modules on; raises :class:`GPUNotAvailableError` when
    the config asks for a GPU and torch finds no CUDA device in this process."""
    if learner_gpus(config) <= 0:
        return CPU
    if not torch.cuda.is_available():
        where = (f"learner actor {rank} (pid {os.getpid()}; distcore assigned it GPU ids "
                 f"{distcore.get_gpu_ids()}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
                 if in_actor else
                 f"the local learner's process (num_learners=0: the driver, or the tune trial running the "
                 f"algorithm; pid {os.getpid()}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        raise GPUNotAvailableError(
            f"{_setting(config)} asks for a GPU, but torch.cuda.is_available() is False in {where}; "
            f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}). Set "
            "num_gpus_per_learner=0 to learn on CPU (a GPU checkpoint: Algorithm.from_checkpoint(path, "
            "num_gpus_per_learner=0)), or run where a CUDA GPU and a CUDA build of torch are available")
    return torch.device("cuda", 0)


def check_cluster_gpus(config: Any) -> None:
    """Raise :class:`GPUNotAvailableError` when the cluster cannot place every learner actor's GPUs
    (instead of waiting for resources that never come)."""
    per = float(config.num_gpus_per_learner)
    if per <= 0:
        return
    gpus_per_node = [float(n.get("Resources", {}).get("GPU", 0.0)) for n in distcore.nodes() if n.get("Alive", True)]
    # A fractional learner stays on one GPU, so a GPU holds floor(1 / per) of them.
    slots = sum(math.floor(g + 1e-9) * math.floor(1.0 / per + 1e-9) for g in gpus_per_node)
    if slots < config.num_learners:
        raise GPUNotAvailableError(
            f"num_learners={config.num_learners} with num_gpus_per_learner={config.num_gpus_per_learner} need "
            f"{config.num_learners * per:g} GPUs ({config.num_learners} learner slots), but the distcore cluster "
            f"has GPUs {gpus_per_node or [0]} per node ({slots} slots): start it with num_gpus=... or lower "
            "num_learners / num_gpus_per_learner (0 = learn on CPU)")


def to_tensor(array: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """A tensor of a batch column (copied when read-only, e.g. zero-copy from the object store),
    on ``device`` when that is not the CPU."""
    array = np.asarray(array)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array)
    tensor = torch.from_numpy(array)
    if device is not None and device.type != "cpu":
        tensor = tensor.to(device)
    return tensor


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy (copied to the host when it lives on a GPU)."""
    return tensor.detach().cpu().numpy()


def tree_to_cpu(tree: Any) -> Any:
    """Every tensor of a nested dict/list on the CPU (CPU tensors are returned as they are)."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: tree_to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_to_cpu(v) for v in tree)
    return tree
