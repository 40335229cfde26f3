"""Algorithm: runs env runners and learners for one RL algorithm; ``train()`` is one iteration.

Example::

    from distcore.rllib.algorithms.ppo import PPOConfig

    algo = PPOConfig().environment("CartPole-v1").build()
    result = algo.train()
    print(result["env_runners"]["episode_return_mean"])
    path = algo.save_to_path("/tmp/ppo_ckpt")
    algo.stop()
    algo2 = Algorithm.from_checkpoint(path)
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from typing import Any

import numpy as np
import torch

import distcore
from distcore.rllib.algorithms.algorithm_config import AlgorithmConfig, AlgorithmConfigError
from distcore.rllib.core.rl_module import RLModule
from distcore.tune import Trainable

DEFAULT_MODULE_ID = "default_policy"


class Algorithm(Trainable):
    """Base class of PPO, DQN, SAC, IMPALA and APPO. Subclasses implement :meth:`training_step`."""

    #: The learner class (set by each algorithm).
    learner_class: type | None = None

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        return AlgorithmConfig(algo_class=cls)

    def __init__(self, config: AlgorithmConfig | dict | None = None, env: Any = None, **kwargs: Any) -> None:
        self._algo_config = self._normalize_config(config, env)
        self._setup_done = False
        super().__init__(config=self._algo_config.to_dict(), **kwargs)
        # Trainable keeps the dict form; the algorithm's ``config`` is the AlgorithmConfig (as in RLlib).
        self.config = self._algo_config  # type: ignore[assignment]

    @classmethod
    def default_resource_request(cls, config: AlgorithmConfig | dict[str, Any]) -> Any:
        """The resources of a tune trial running this algorithm: with ``num_learners=0`` and a GPU
        learner (``num_gpus_per_learner`` or ``num_gpus``), ``{"CPU": num_cpus_for_main_process,
        "GPU": ...}`` so the trial's process (which hosts the local learner) is given the GPU;
        otherwise tune's default. Learner and env runner actors ask for their own resources."""
        from distcore.rllib._internal.devices import trial_resources

        as_dict = config.to_dict() if isinstance(config, AlgorithmConfig) else dict(config or {})
        return trial_resources(as_dict, cls.get_default_config())

    @classmethod
    def _normalize_config(cls, config: AlgorithmConfig | dict | None, env: Any = None) -> AlgorithmConfig:
        if config is None:
            config = cls.get_default_config()
        elif isinstance(config, dict):
            config = cls.get_default_config().update_from_dict(config)
        elif isinstance(config, AlgorithmConfig):
            config = config.copy()
        else:
            raise AlgorithmConfigError(f"config must be an AlgorithmConfig or dict, got {type(config).__name__}")
        if env is not None:
            config.env = env
        config.algo_class = cls
        config.validate()
        return config

    # ---- set-up ----------------------------------------------------------------------------
    def setup(self, config: Any = None) -> None:
        if self._setup_done:
            return
        self._setup_done = True
        cfg = self._algo_config
        self.config = cfg  # type: ignore[assignment]
        needs_cluster = cfg.num_env_runners > 0 or cfg.num_learners > 0 or cfg.evaluation_num_env_runners > 0
        if needs_cluster and not distcore.is_initialized():
            distcore.init()
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed)
        self.module_specs = self._module_specs()
        from distcore.rllib._internal.learner import LearnerGroup

        self.learner_group = LearnerGroup(cfg, self.learner_class, self.module_specs)
        weights = self.learner_group.get_weights()
        self.env_runner_group = self._make_runner_group(cfg, cfg.num_env_runners, weights)
        self.eval_env_runner_group: Any = None
        self._episode_returns: deque = deque(maxlen=cfg.metrics_num_episodes_for_smoothing)
        self._episode_lens: deque = deque(maxlen=cfg.metrics_num_episodes_for_smoothing)
        self._num_episodes_lifetime = 0
        self.counters = {"num_env_steps_sampled_lifetime": 0, "num_env_steps_trained_lifetime": 0,
                         "num_training_step_calls": 0}
        self._timers: dict[str, float] = {}
        self._local_modules: dict[str, RLModule] = {}
        self.callbacks = cfg.callbacks_class() if cfg.callbacks_class is not None else None
        self.setup_algorithm()
        if self.callbacks is not None:
            self.callbacks.on_algorithm_init(algorithm=self)

    def setup_algorithm(self) -> None:
        """Algorithm-specific state (replay buffers, schedules); called at the end of setup."""

    def _runner_class(self) -> type:
        if self.config.is_multi_agent:
            from distcore.rllib._internal.multi_agent_env_runner import MultiAgentEnvRunner

            return MultiAgentEnvRunner
        from distcore.rllib._internal.env_runner import EnvRunner

        return EnvRunner

    def _make_runner_group(self, cfg: AlgorithmConfig, num: int, weights: dict) -> Any:
        from distcore.rllib._internal.env_runner_group import EnvRunnerGroup

        return EnvRunnerGroup(cfg, self._runner_class(), num_runners=num, module_state=weights)

    def _module_specs(self) -> dict[str, Any]:
        cfg = self.config
        from distcore.rllib._internal.envs import make_env

        if not cfg.is_multi_agent:
            obs_space, act_space = cfg.observation_space, cfg.action_space
            if obs_space is None or act_space is None:
                env = make_env(cfg)
                obs_space, act_space = obs_space or env.observation_space, act_space or env.action_space
                env.close()
            from distcore.rllib._internal.spaces import check_action_space, flat_size

            flat_size(obs_space)
            check_action_space(act_space)
            return {DEFAULT_MODULE_ID: cfg.build_module_spec(obs_space, act_space)}
        from distcore.rllib._internal.multi_agent_env_runner import policy_spaces

        return {pid: cfg.build_module_spec(obs, act, pid) for pid, (obs, act) in policy_spaces(cfg).items()}

    # ---- one iteration ---------------------------------------------------------------------
    def training_step(self) -> dict[str, Any]:
        """Sample, learn, sync weights; returns learner stats per module."""
        raise NotImplementedError

    def step(self) -> dict[str, Any]:
        started = time.perf_counter()
        learner_stats = self.training_step()
        self.counters["num_training_step_calls"] += 1
        result = self._result(learner_stats)
        cfg = self.config
        if cfg.evaluation_interval and (self._iteration + 1) % cfg.evaluation_interval == 0:
            result["evaluation"] = self.evaluate()
        result["time_this_iter_s"] = time.perf_counter() - started
        return result

    def train(self) -> dict[str, Any]:
        """Run one training iteration; returns the result dict."""
        result = super().train()
        result["config"] = self.config.to_dict()
        # Flat aliases of the headline metrics, so tune metrics/stoppers/schedulers that read top-level keys
        # can name "env_runners/episode_return_mean" (the nested dicts stay as in RLlib).
        for group in ("env_runners", "evaluation"):
            metrics = result.get(group, {})
            metrics = metrics.get("env_runners", metrics) if group == "evaluation" else metrics
            prefix = "evaluation/env_runners" if group == "evaluation" else "env_runners"
            for key in ("episode_return_mean", "episode_len_mean"):
                if key in metrics:
                    result[f"{prefix}/{key}"] = metrics[key]
        if self.callbacks is not None:
            self.callbacks.on_train_result(algorithm=self, result=result)
        return result

    # ---- helpers for training_step ---------------------------------------------------------
    def _timer(self, name: str, seconds: float) -> None:
        self._timers[name] = seconds

    def sample(self, min_env_steps: int, extra: dict | None = None) -> list[dict]:
        """Synchronous sampling from the runner group, with metrics ingested."""
        started = time.perf_counter()
        results = self.env_runner_group.sample(min_env_steps, explore=self.config.explore, extra=extra)
        self._timer("env_runner_sampling_timer", time.perf_counter() - started)
        self.ingest(results)
        return results

    def ingest(self, results: list[dict]) -> None:
        for out in results:
            self.counters["num_env_steps_sampled_lifetime"] += out["env_steps"]
            for ret, length in out["episodes"]:
                self._episode_returns.append(ret)
                self._episode_lens.append(length)
                self._num_episodes_lifetime += 1
                if self.callbacks is not None:
                    self.callbacks.on_episode_end(algorithm=self, episode_return=ret, episode_length=length)
        if self.callbacks is not None:
            self.callbacks.on_sample_end(algorithm=self, samples=results)

    @staticmethod
    def concat_batches(results: list[dict]) -> dict[str, dict[str, np.ndarray]]:
        merged: dict[str, list[dict]] = {}
        for out in results:
            for mid, batch in out["batches"].items():
                if len(batch.get("rewards", ())):
                    merged.setdefault(mid, []).append(batch)
        return {mid: {k: np.concatenate([b[k] for b in parts]) for k in parts[0]} for mid, parts in merged.items()}

    def sync_weights(self) -> None:
        started = time.perf_counter()
        weights = self.learner_group.get_weights()
        self.env_runner_group.sync_weights(weights)
        self._local_modules.clear()
        self._timer("synch_weights", time.perf_counter() - started)

    def update_learners(self, batches: dict, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        stats = self.learner_group.update(batches, **kwargs)
        self._timer("learner_update_timer", time.perf_counter() - started)
        return stats

    def _result(self, learner_stats: dict[str, Any]) -> dict[str, Any]:
        returns = list(self._episode_returns)
        lens = list(self._episode_lens)
        nan = float("nan")
        env_runners = {
            "episode_return_mean": float(np.mean(returns)) if returns else nan,
            "episode_return_max": float(np.max(returns)) if returns else nan,
            "episode_return_min": float(np.min(returns)) if returns else nan,
            "episode_len_mean": float(np.mean(lens)) if lens else nan,
            "num_episodes_lifetime": self._num_episodes_lifetime,
            "num_env_steps_sampled_lifetime": self.counters["num_env_steps_sampled_lifetime"],
            "num_env_runner_restarts": self.env_runner_group.num_restarts,
            "num_healthy_env_runners": len(self.env_runner_group.actors) or int(self.env_runner_group.local is not None),
        }
        return {
            "env_runners": env_runners,
            "learners": learner_stats,
            "timers": dict(self._timers),
            "num_env_steps_sampled_lifetime": self.counters["num_env_steps_sampled_lifetime"],
            "num_env_steps_trained_lifetime": self.counters["num_env_steps_trained_lifetime"],
            "num_training_step_calls": self.counters["num_training_step_calls"],
            "episode_return_mean": env_runners["episode_return_mean"],
        }

    # ---- evaluation and inference ----------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Greedy (explore=False) runs on the evaluation runners; returns their metrics.

        ``evaluation_duration_unit="episodes"``: exactly ``evaluation_duration`` complete episodes
        (the first to finish when parallel envs overshoot). ``"timesteps"``: at least
        ``evaluation_duration`` env steps (fewer than one step per eval env more), reporting the
        episodes that ended in them.
        """
        cfg = self.config
        unit_episodes = cfg.evaluation_duration_unit == "episodes"
        if self.eval_env_runner_group is None:
            eval_cfg = cfg.copy()
            eval_cfg.explore = False
            eval_cfg.batch_mode = "complete_episodes" if unit_episodes else "truncate_episodes"
            eval_cfg.rollout_fragment_length = 1
            eval_cfg.update_from_dict(cfg.evaluation_config)
            self.eval_env_runner_group = self._make_runner_group(eval_cfg, cfg.evaluation_num_env_runners,
                                                                 self.learner_group.get_weights())
        group = self.eval_env_runner_group
        group.sync_weights(self.learner_group.get_weights())
        started = time.perf_counter()
        returns: list[float] = []
        lens: list[int] = []
        steps = 0
        duration = int(cfg.evaluation_duration)
        envs = max(1, len(group.actors)) * int(group.config.num_envs_per_env_runner)
        while (len(returns) if unit_episodes else steps) < duration:
            per_env = 1 if unit_episodes else -(-(duration - steps) // envs)
            for out in group.sample(1, explore=False, num_timesteps=per_env):
                steps += out["env_steps"]
                for ret, length in out["episodes"]:
                    returns.append(ret)
                    lens.append(length)
        if unit_episodes:
            returns, lens = returns[:duration], lens[:duration]
        metrics = {"env_runners": {
            "episode_return_mean": float(np.mean(returns)) if returns else float("nan"),
            "episode_return_max": float(np.max(returns)) if returns else float("nan"),
            "episode_return_min": float(np.min(returns)) if returns else float("nan"),
            "episode_len_mean": float(np.mean(lens)) if lens else float("nan"),
            "episode_return_std": float(np.std(returns)) if returns else float("nan"),
            "num_episodes": len(returns), "num_env_steps_sampled": steps},
            "evaluation_time_s": time.perf_counter() - started}
        if self.callbacks is not None:
            self.callbacks.on_evaluate_end(algorithm=self, evaluation_metrics=metrics)
        return metrics

    def get_module(self, module_id: str = DEFAULT_MODULE_ID) -> RLModule:
        """The module ``module_id`` with the current weights (the learner's own when local)."""
        if module_id not in self.module_specs:
            raise KeyError(f"no module {module_id!r}; modules are {sorted(self.module_specs)}")
        if self.learner_group.local is not None:
            return self.learner_group.local.module[module_id]
        if module_id not in self._local_modules:
            module = self.module_specs[module_id].build()
            module.set_state(self.learner_group.get_weights()[module_id])
            self._local_modules[module_id] = module
        return self._local_modules[module_id]

    def compute_single_action(self, observation: Any, explore: bool = False,
                              policy_id: str = DEFAULT_MODULE_ID) -> Any:
        """The action the module ``policy_id`` takes for one raw observation."""
        from distcore.rllib._internal.env_runner import _to_env_action
        from distcore.rllib._internal.spaces import preprocess_one

        module = self.get_module(policy_id)
        obs = torch.from_numpy(preprocess_one(module.observation_space, observation))
        param = next(iter(module.parameters()), None)
        if param is not None and param.device.type != "cpu":  # the local learner's module on a GPU
            obs = obs.to(param.device)
        with torch.no_grad():
            out = module.forward_exploration({"obs": obs}) if explore else module.forward_inference({"obs": obs})
            if "actions" in out:
                action = out["actions"][0]
            else:
                dist = module.get_action_dist(out["action_dist_inputs"])
                action = (dist.sample() if explore else dist.deterministic_sample())[0]
        return _to_env_action(module.action_space, action.cpu().numpy())

    # ---- checkpoints -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"learner": self.learner_group.get_state(), "counters": dict(self.counters),
                "iteration": self._iteration, "time_total": self._time_total,
                "episode_returns": list(self._episode_returns), "episode_lens": list(self._episode_lens),
                "algorithm": self.get_algorithm_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.learner_group.set_state(state["learner"])
        self.counters.update(state["counters"])
        self._iteration = state["iteration"]
        self._time_total = state["time_total"]
        self._local_modules.clear()
        self._episode_returns.extend(state["episode_returns"])
        self._episode_lens.extend(state["episode_lens"])
        self.set_algorithm_state(state.get("algorithm", {}))
        self.sync_weights()

    def get_algorithm_state(self) -> dict[str, Any]:
        """Algorithm-specific state for checkpoints (e.g. target networks live in the learner)."""
        return {}

    def set_algorithm_state(self, state: dict[str, Any]) -> None:
        pass

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the checkpoint files (format: :mod:`distcore.rllib._internal.checkpoints`)."""
        from distcore.rllib._internal import checkpoints
        from distcore.rllib._version import __version__

        checkpoints.write_checkpoint(checkpoint_dir, type(self), self.config.to_dict(), self.get_state(),
                                     __version__)

    def load_checkpoint(self, checkpoint: Any) -> None:
        self.set_state(_read_checkpoint(_checkpoint_path(checkpoint))["state"])

    def save_to_path(self, path: str | None = None) -> str:
        """Write a checkpoint directory; returns its path (``save()`` returns a tune Checkpoint of it)."""
        path = path or tempfile.mkdtemp(prefix="distcore_rllib_ckpt_")
        self.save(path)
        return path

    def restore_from_path(self, path: str) -> None:
        """Load weights, optimizer state, counters (and stored replay buffers) from a checkpoint directory."""
        self.restore(path)

    @classmethod
    def from_checkpoint(cls, path: Any, **config_overrides: Any) -> Algorithm:
        """Build the algorithm a checkpoint was saved from, with its config and state.

        ``config_overrides`` (config keys, e.g. ``policy_mapping_fn=...`` or ``num_env_runners=0``)
        replace saved settings; use them for config values that no longer unpickle.
        """
        data = _read_checkpoint(_checkpoint_path(path), config_overrides)
        algo = data["algo_class"](config=data["config"])
        algo.set_state(data["state"])
        return algo

    # ---- shutdown --------------------------------------------------------------------------
    def cleanup(self) -> None:
        for group in (getattr(self, "env_runner_group", None), getattr(self, "eval_env_runner_group", None)):
            if group is not None:
                group.stop()
        if getattr(self, "learner_group", None) is not None:
            self.learner_group.stop()



def _checkpoint_path(checkpoint: Any) -> str:
    if isinstance(checkpoint, (str, os.PathLike)):
        return os.fspath(checkpoint)
    if hasattr(checkpoint, "path") and isinstance(checkpoint.path, str):
        return checkpoint.path
    if hasattr(checkpoint, "to_directory"):
        return str(checkpoint.to_directory())
    raise TypeError(f"expected a checkpoint directory or Checkpoint, got {type(checkpoint).__name__}")


def _read_checkpoint(path: str, config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"algo_class", "config" (an AlgorithmConfig), "state"} of a checkpoint directory."""
    from distcore.rllib._internal import checkpoints

    meta = checkpoints.read_metadata(path)
    if meta.get("format") == "cloudpickle":  # format 1 (before checkpoint_version 2.0)
        data = checkpoints.read_legacy(path)
        if config_overrides:
            data["config"] = data["config"].copy().update_from_dict(config_overrides)
        return data
    algo_class: Any = None
    if meta.get("algo_class"):
        try:
            algo_class = checkpoints.load_import_path(meta["algo_class"])
        except (ImportError, AttributeError):
            algo_class = None
    if algo_class is None:
        from distcore.rllib.algorithms.registry import get_algorithm_class

        algo_class = get_algorithm_class(meta["algorithm"])
    config_dict = checkpoints.read_config(path, meta, overridden=set(config_overrides or {}))
    config_dict = {k: v for k, v in config_dict.items() if k != "algo_class"}
    config_dict.update(config_overrides or {})
    config = algo_class.get_default_config().update_from_dict(config_dict)
    return {"algo_class": algo_class, "config": config, "state": checkpoints.read_state(path, meta)}
