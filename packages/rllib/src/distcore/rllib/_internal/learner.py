"""Learners: own the trainable modules and optimizers; a LearnerGroup runs one or many.

``num_learners=0``: one learner in the driver. ``num_learners>=1``: learner actors;
with more than one, each gets a shard of the batch and gradients are averaged with
``torch.distributed.all_reduce`` after every backward pass (the data-parallel scheme
of DDP), so all replicas stay identical: over gloo on CPU, over nccl when every learner
has a GPU of its own (gloo through a host copy when fractional learners share one GPU:
nccl refuses two ranks on one device).

A GPU learner (``num_gpus_per_learner > 0``) keeps modules, optimizers and its flat
gradient buffer on ``cuda:0``; batches arrive as numpy and move there in the learner;
weights and state leave it as CPU values (numpy / CPU tensors).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import distcore
from distcore.rllib._internal.devices import (
    check_cluster_gpus,
    resolve_device,
    to_numpy,
    to_tensor,
    tree_to_cpu,
)
from distcore.rllib._internal.schedules import schedule_value
from distcore.rllib.algorithms.algorithm_config import GPUNotAvailableError
from distcore.rllib.core.rl_module import MultiRLModule, RLModuleSpec

__all__ = ["Learner", "LearnerGroup", "shard_batch", "to_numpy", "to_tensor"]


class Learner:
    """Base learner; algorithms implement :meth:`update`."""

    #: True in a learner actor (set by LearnerGroup's actor class): only names the process in errors.
    _in_actor = False

    def __init__(self, config: Any, module_specs: dict[str, RLModuleSpec], rank: int = 0,
                 world_size: int = 1) -> None:
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.device = resolve_device(config, rank, in_actor=self._in_actor)
        self._via_host = False  # all-reduce through a host copy (see init_distributed)
        # Small policy nets learn fastest on one intra-op thread per learner (num_cpus_per_learner);
        # more threads spin against env runner processes on a small machine.
        torch.set_num_threads(max(1, int(config.num_cpus_per_learner)))
        if config.seed is not None:
            torch.manual_seed(config.seed)
            np.random.seed(config.seed + rank)
        self.module = MultiRLModule({mid: spec.build() for mid, spec in module_specs.items()})
        if self.device.type != "cpu":
            self.module.to(self.device)
        self.optimizers: dict[str, list[torch.optim.Optimizer]] = {}
        self.configure_optimizers()
        self.num_updates = 0

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """A batch column as a tensor on this learner's device."""
        return to_tensor(array, self.device)

    def device_info(self) -> dict[str, Any]:
        """Where this learner trains: its device, the parameters' device, the GPUs distcore assigned."""
        param = next(iter(self.module.parameters()), None)
        return {"device": str(self.device), "param_device": str(param.device) if param is not None else None,
                "gpu_ids": distcore.get_gpu_ids() if self._in_actor else [],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
                "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None}

    # ---- set-up ----------------------------------------------------------------------------
    def configure_optimizers(self) -> None:
        for mid, module in self.module.items():
            self.optimizers[mid] = [torch.optim.Adam(module.parameters(), lr=schedule_value(self.config.lr, 0))]

    def update_lr(self, timestep: int) -> float:
        """Set every optimizer's lr from the ``lr`` schedule at ``timestep``; returns it."""
        lr = schedule_value(self.config.lr, timestep)
        for opts in self.optimizers.values():
            for opt in opts:
                for group in opt.param_groups:
                    group["lr"] = lr
        return lr

    def modules_to_train(self) -> list[str]:
        return list(self.config.policies_to_train or self.module.keys())

    def init_distributed(self, port: int, backend: str = "gloo") -> bool:
        torch.set_num_threads(1)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=self.rank,
                                world_size=self.world_size, timeout=timedelta(seconds=120))
        # gloo with GPU tensors (fractional learners sharing a GPU) goes through a host copy.
        self._via_host = backend == "gloo" and self.device.type != "cpu"
        for p in self.module.parameters():
            if self._via_host:
                host = p.data.cpu()
                dist.broadcast(host, src=0)
                p.data.copy_(host)
            else:
                dist.broadcast(p.data, src=0)
        return True

    def _all_reduce(self, flat: torch.Tensor) -> None:
        if self._via_host:
            host = flat.cpu()
            dist.all_reduce(host)
            flat.copy_(host)
        else:
            dist.all_reduce(flat)

    # ---- gradient steps --------------------------------------------------------------------
    def apply_loss(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   params: list[torch.nn.Parameter] | None = None) -> float:
        """Backward, all-reduce gradients across learners, clip, step. Returns the grad norm."""
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if params is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.world_size > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            self._all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p, g in zip(params, grads, strict=True):
                n = g.numel()
                p.grad = flat[offset:offset + n].view_as(p)
                offset += n
        if self.config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params if p.grad is not None))
        optimizer.step()
        self.num_updates += 1
        return float(norm)

    def update(self, batches: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    # ---- state -----------------------------------------------------------------------------
    def get_weights(self) -> dict[str, dict[str, np.ndarray]]:
        return self.module.get_state()

    def set_weights(self, weights: dict[str, dict[str, Any]]) -> None:
        self.module.set_state(weights)

    def get_state(self) -> dict[str, Any]:
        """Weights (numpy), optimizer states and extras, all on the CPU (they load on any device)."""
        return {"weights": self.get_weights(),
                "optimizers": {mid: [tree_to_cpu(o.state_dict()) for o in opts]
                               for mid, opts in self.optimizers.items()},
                "extra": tree_to_cpu(self.get_extra_state())}

    def set_state(self, state: dict[str, Any]) -> None:
        self.set_weights(state["weights"])
        for mid, opt_states in state["optimizers"].items():
            for opt, s in zip(self.optimizers[mid], opt_states, strict=True):
                opt.load_state_dict(s)
        self.set_extra_state(state.get("extra", {}))

    def get_extra_state(self) -> dict[str, Any]:
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, method)(*args, **kwargs)

    def ping(self) -> int:
        return self.rank


def _actor_class(learner_cls: type[Learner]) -> type[Learner]:
    """``learner_cls`` as a learner actor: a GPU it cannot see fails its first call with the
    :class:`GPUNotAvailableError` (not a dead actor), so the group can report it as it is."""

    class RemoteLearner(learner_cls):  # type: ignore[valid-type, misc]
        _in_actor = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._startup_error: GPUNotAvailableError | None = None
            try:
                super().__init__(*args, **kwargs)
            except GPUNotAvailableError as error:
                self._startup_error = error

        def ping(self) -> int:
            if self._startup_error is not None:
                raise self._startup_error
            return super().ping()

    RemoteLearner.__name__ = RemoteLearner.__qualname__ = learner_cls.__name__
    return RemoteLearner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shard_batch(batch: dict[str, np.ndarray], num_shards: int) -> list[dict[str, np.ndarray]]:
    """Split a flat batch into ``num_shards`` parts, cutting only at segment ends when it has them."""
    n = len(next(iter(batch.values())))
    targets = [round(n * (i + 1) / num_shards) for i in range(num_shards - 1)]
    if "segment_ends" in batch:
        ends = np.nonzero(batch["segment_ends"])[0] + 1
        cuts = []
        for target in targets:
            i = int(np.searchsorted(ends, target))
            candidates = [ends[j] for j in (i - 1, i) if 0 <= j < len(ends)]
            cuts.append(int(min(candidates, key=lambda e: abs(e - target))) if candidates else target)
    else:
        cuts = targets
    bounds = [0, *cuts, n]
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in batch.items()} for i in range(num_shards)]


class LearnerGroup:
    def __init__(self, config: Any, learner_cls: type[Learner], module_specs: dict[str, RLModuleSpec]) -> None:
        self.config = config
        self.num_learners = config.num_learners
        self.local: Learner | None = None
        self.actors: list[Any] = []
        if self.num_learners == 0:
            self.local = learner_cls(config, module_specs)
            return
        check_cluster_gpus(config)
        options: dict[str, Any] = {"num_cpus": config.num_cpus_per_learner}
        if config.num_gpus_per_learner:
            options["num_gpus"] = config.num_gpus_per_learner
        cls = distcore.remote(**options)(_actor_class(learner_cls))
        self.actors = [cls.remote(config, module_specs, rank, self.num_learners)
                       for rank in range(self.num_learners)]
        try:
            distcore.get([a.ping.remote() for a in self.actors], timeout=180)
            if self.num_learners > 1:
                port = _free_port()
                backend = self._backend()
                distcore.get([a.init_distributed.remote(port, backend) for a in self.actors], timeout=180)
        except GPUNotAvailableError as error:
            self.stop()
            raise GPUNotAvailableError(str(getattr(error, "cause", None) or error)) from None
        except BaseException:
            self.stop()
            raise

    def _backend(self) -> str:
        """nccl when every learner has a GPU of its own, else gloo (CPU learners, or fractional
        learners sharing a GPU: nccl refuses two ranks on one device)."""
        if not self.config.num_gpus_per_learner:
            return "gloo"
        infos = distcore.get([a.device_info.remote() for a in self.actors], timeout=120)
        gpus = [tuple(info["gpu_ids"]) for info in infos]
        return "nccl" if all(gpus) and len(set(gpus)) == len(gpus) else "gloo"

    def update(self, batches: dict[str, dict[str, np.ndarray]], **kwargs: Any) -> dict[str, Any]:
        if self.local is not None:
            return self.local.update(batches, **kwargs)
        if self.num_learners == 1:
            return distcore.get(self.actors[0].update.remote(batches, **kwargs), timeout=600)
        shards: list[dict[str, dict]] = [{} for _ in self.actors]
        for mid, batch in batches.items():
            for i, part in enumerate(shard_batch(batch, self.num_learners)):
                shards[i][mid] = part
        results = distcore.get([a.update.remote(s, **kwargs) for a, s in zip(self.actors, shards, strict=True)],
                               timeout=600)
        return results[0]

    def foreach(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        if self.local is not None:
            return [getattr(self.local, method)(*args, **kwargs)]
        return distcore.get([a.call.remote(method, *args, **kwargs) for a in self.actors], timeout=600)

    def get_weights(self) -> dict[str, dict[str, np.ndarray]]:
        if self.local is not None:
            return self.local.get_weights()
        return distcore.get(self.actors[0].get_weights.remote(), timeout=120)

    def get_state(self) -> dict[str, Any]:
        if self.local is not None:
            return self.local.get_state()
        return distcore.get(self.actors[0].get_state.remote(), timeout=120)

    def set_state(self, state: dict[str, Any]) -> None:
        if self.local is not None:
            self.local.set_state(state)
        else:
            distcore.get([a.set_state.remote(state) for a in self.actors], timeout=120)

    def stop(self) -> None:
        for actor in self.actors:
            try:
                distcore.kill(actor)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.actors = []
