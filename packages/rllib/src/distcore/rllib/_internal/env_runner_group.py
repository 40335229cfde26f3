"""Env runners as a group: a local runner (num_env_runners=0) or runner actors.

Weights go out once per sync as ONE object in the object store (``distcore.put``);
every runner receives the same reference. A runner whose actor died (or whose
sample raised) is replaced when ``restart_failed_env_runners`` is on.
"""

from __future__ import annotations

import logging
from typing import Any

import distcore
from distcore.exceptions import ActorError, DistcoreError, GetTimeoutError

logger = logging.getLogger(__name__)


class EnvRunnerGroup:
    def __init__(self, config: Any, runner_cls: type, num_runners: int | None = None,
                 module_state: dict | None = None, local_if_zero: bool = True) -> None:
        self.config = config
        self.runner_cls = runner_cls
        self.num_runners = config.num_env_runners if num_runners is None else num_runners
        self.num_restarts = 0
        self.weights_seq = 0
        self._weights_ref: Any = None
        self._weights: dict | None = module_state
        self.local = runner_cls(config, 0, module_state) if self.num_runners == 0 and local_if_zero else None
        self._actor_cls = distcore.remote(num_cpus=config.num_cpus_per_env_runner)(runner_cls)
        self.actors: dict[int, Any] = {}
        if self.num_runners > 0:
            self._weights_ref = distcore.put(module_state) if module_state is not None else None
            for index in range(1, self.num_runners + 1):
                self.actors[index] = self._make_actor(index)
            # Fail early (with the runner's traceback) if the env cannot be built.
            distcore.get([a.ping.remote() for a in self.actors.values()], timeout=config.sample_timeout_s + 60)
        self._inflight: dict[Any, int] = {}

    def _make_actor(self, index: int) -> Any:
        weights = (self._weights_ref,) if self._weights_ref is not None else None
        return self._actor_cls.remote(self.config, index, weights)

    # ---- weights ---------------------------------------------------------------------------
    def sync_weights(self, state: dict[str, Any]) -> None:
        self.weights_seq += 1
        self._weights = state
        if self.local is not None:
            self.local.set_weights(state, self.weights_seq)
        if self.actors:
            self._weights_ref = distcore.put(state)
            for actor in self.actors.values():
                actor.set_weights.remote((self._weights_ref,), self.weights_seq)

    # ---- failures --------------------------------------------------------------------------
    def _replace(self, index: int, error: BaseException) -> None:
        if not self.config.restart_failed_env_runners:
            raise error
        if self.num_restarts >= self.config.max_num_env_runner_restarts:
            raise RuntimeError(f"env runner {index} failed after {self.num_restarts} restarts "
                               f"(max_num_env_runner_restarts)") from error
        logger.warning("env runner %d failed (%s: %s); starting a replacement", index, type(error).__name__, error)
        try:
            distcore.kill(self.actors[index])
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        self.num_restarts += 1
        actor = self._make_actor(index)
        self.actors[index] = actor
        if self._weights_ref is not None:
            actor.set_weights.remote((self._weights_ref,), self.weights_seq)

    def healthy_indices(self) -> list[int]:
        return sorted(self.actors)

    # ---- sampling --------------------------------------------------------------------------
    def sample(self, min_env_steps: int, explore: bool = True, extra: dict | None = None,
               num_timesteps: int | None = None) -> list[dict]:
        """Synchronously collect at least ``min_env_steps`` steps from all runners
        (``num_timesteps`` steps per env and call; the rollout fragment length by default)."""
        results: list[dict] = []
        steps = 0
        if self.local is not None:
            while steps < min_env_steps:
                out = self.local.sample(num_timesteps, explore=explore, extra=extra)
                results.append(out)
                steps += out["env_steps"]
            return results
        attempts = 0
        while steps < min_env_steps:
            refs = {actor.sample.remote(num_timesteps, explore=explore, extra=extra): i
                    for i, actor in self.actors.items()}
            for ref, index in refs.items():
                try:
                    out = distcore.get(ref, timeout=self.config.sample_timeout_s)
                except (ActorError, DistcoreError) as error:
                    if isinstance(error, GetTimeoutError):
                        raise
                    self._replace(index, error)
                    continue
                results.append(out)
                steps += out["env_steps"]
            attempts += 1
            if attempts > 1000:
                raise RuntimeError("env runners returned no samples in 1000 rounds")
        return results

    def sample_async(self, timeout: float = 0.0, extra: dict | None = None) -> list[dict]:
        """Results of sample requests that finished; keeps one request in flight per runner."""
        if self.local is not None:
            return [self.local.sample(extra=extra)]
        in_flight = set(self._inflight.values())
        for index, actor in self.actors.items():
            if index not in in_flight:
                self._inflight[actor.sample.remote(extra=extra)] = index
        ready, _ = distcore.wait(list(self._inflight), num_returns=1, timeout=max(timeout, 0.0))
        if len(ready) < len(self._inflight):
            more, _ = distcore.wait([r for r in self._inflight if r not in ready],
                                    num_returns=len(self._inflight) - len(ready), timeout=0)
            ready = list(ready) + list(more)
        results = []
        for ref in ready:
            index = self._inflight.pop(ref)
            try:
                results.append(distcore.get(ref, timeout=self.config.sample_timeout_s))
            except (ActorError, DistcoreError) as error:
                if isinstance(error, GetTimeoutError):
                    raise
                self._replace(index, error)
                continue
            self._inflight[self.actors[index].sample.remote(extra=extra)] = index
        return results

    def foreach_runner(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        if self.local is not None:
            return [getattr(self.local, method)(*args, **kwargs)]
        refs = [getattr(a, method).remote(*args, **kwargs) for a in self.actors.values()]
        return distcore.get(refs, timeout=self.config.sample_timeout_s + 60)

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()
        for actor in self.actors.values():
            try:
                distcore.kill(actor)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.actors.clear()
        self._inflight.clear()
