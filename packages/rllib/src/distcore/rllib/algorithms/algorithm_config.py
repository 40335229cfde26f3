"""AlgorithmConfig: the builder every algorithm is configured with.

Example::

    from distcore.rllib.algorithms.ppo import PPOConfig

    config = (PPOConfig()
              .environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=4)
              .training(lr=3e-4, train_batch_size=2000)
              .debugging(seed=0))
    algo = config.build()
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from distcore.rllib._internal.envs import resolve_env_creator
from distcore.rllib._internal.schedules import check_schedule, schedule_value
from distcore.rllib.core.rl_module import RLModule, RLModuleSpec


class _NotProvided:
    def __repr__(self) -> str:
        return "NotProvided"


NotProvided: Any = _NotProvided()


class AlgorithmConfigError(ValueError):
    """An AlgorithmConfig setting that is invalid; the message names it and the fix."""


class GPUNotAvailableError(AlgorithmConfigError, RuntimeError):
    """``num_gpus_per_learner`` (or ``num_gpus``) asks for a GPU that the learner's process or the
    cluster does not have; the message says what was found (e.g. ``torch.cuda.is_available()``)."""


# Settings that hold objects, not plain values: kept out of to_dict's JSON-able view as-is.
_BATCH_MODES = ("truncate_episodes", "complete_episodes")


class AlgorithmConfig:
    """Settings shared by all algorithms; subclasses add theirs in ``__init__`` and ``training``."""

    #: The Algorithm subclass ``build()`` makes (set by each algorithm's config).
    algo_class: Any = None

    def __init__(self, algo_class: Any = None) -> None:
        if algo_class is not None:
            self.algo_class = algo_class
        # environment
        self.env: Any = None
        self.env_config: dict = {}
        self.observation_space: gym.Space | None = None
        self.action_space: gym.Space | None = None
        self.clip_rewards: float | None = None
        # env_runners
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.rollout_fragment_length: int | str = "auto"
        self.batch_mode = "truncate_episodes"
        self.num_cpus_per_env_runner = 1.0
        self.explore = True
        self.sample_timeout_s = 60.0
        # learners
        self.num_learners = 0
        self.num_gpus_per_learner = 0.0
        self.num_cpus_per_learner = 1.0
        # training
        self.lr = 5e-5
        self.gamma = 0.99
        self.train_batch_size = 4000
        self.minibatch_size: int | None = 128
        self.num_epochs = 1
        self.grad_clip: float | None = None
        # rl_module
        self.model_config: dict = {}
        self.rl_module_spec: RLModuleSpec | None = None
        # evaluation
        self.evaluation_interval: int | None = None
        self.evaluation_duration = 10
        self.evaluation_duration_unit = "episodes"
        self.evaluation_num_env_runners = 0
        self.evaluation_config: dict = {}
        # multi-agent
        self.policies: dict[str, Any] = {}
        self.policy_mapping_fn: Callable[..., str] | None = None
        self.policies_to_train: list[str] | None = None
        # debugging / resources / callbacks / fault tolerance / reporting
        self.seed: int | None = None
        self.log_level = "WARN"
        self.num_gpus = 0
        self.num_cpus_for_main_process = 1
        self.callbacks_class: type | None = None
        self.restart_failed_env_runners = True
        self.max_num_env_runner_restarts = 1000
        self.metrics_num_episodes_for_smoothing = 100
        self.min_sample_timesteps_per_iteration = 0
        self.framework_str = "torch"

    # ---- builder methods ---------------------------------------------------------------------
    def _set(self, **kwargs: Any) -> AlgorithmConfig:
        for key, value in kwargs.items():
            if value is not NotProvided:
                setattr(self, key, value)
        return self

    def environment(self, env: Any = NotProvided, *, env_config: dict | None = NotProvided,
                    observation_space: gym.Space | None = NotProvided,
                    action_space: gym.Space | None = NotProvided,
                    clip_rewards: float | None = NotProvided) -> AlgorithmConfig:
        """The env (gymnasium id, registered name, class or creator) and its settings."""
        if env_config is not NotProvided and env_config is not None and not isinstance(env_config, dict):
            raise AlgorithmConfigError(f"env_config must be a dict, got {type(env_config).__name__}")
        return self._set(env=env, env_config=env_config if env_config is not None else {},
                         observation_space=observation_space, action_space=action_space, clip_rewards=clip_rewards)

    def env_runners(self, *, num_env_runners: int = NotProvided, num_envs_per_env_runner: int = NotProvided,
                    rollout_fragment_length: int | str = NotProvided, batch_mode: str = NotProvided,
                    num_cpus_per_env_runner: float = NotProvided, explore: bool = NotProvided,
                    sample_timeout_s: float = NotProvided) -> AlgorithmConfig:
        """How many env runner actors (0 = sample in the driver), envs per runner, fragment length."""
        return self._set(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                         rollout_fragment_length=rollout_fragment_length, batch_mode=batch_mode,
                         num_cpus_per_env_runner=num_cpus_per_env_runner, explore=explore,
                         sample_timeout_s=sample_timeout_s)

    def learners(self, *, num_learners: int = NotProvided, num_gpus_per_learner: float = NotProvided,
                 num_cpus_per_learner: float = NotProvided) -> AlgorithmConfig:
        """Learners: ``num_learners=0`` learns in the driver; ``>= 1`` starts learner actors (more than
        one: data-parallel, gradients all-reduced over gloo on CPU, nccl on GPUs).

        ``num_gpus_per_learner`` (0 to 1, fractional allowed): with ``num_learners=0`` the local
        learner puts its modules and optimizers on ``cuda:0``; with ``num_learners >= 1`` each
        learner actor asks distcore for that many GPUs and trains on the one it is assigned.
        Env runners stay on CPU; weights they receive and checkpoints hold CPU values, so a
        checkpoint from a GPU learner restores on a CPU-only machine and the other way round.
        Asking for a GPU that torch cannot see raises :class:`GPUNotAvailableError`.

        Example::

            config = PPOConfig().environment("CartPole-v1").learners(num_learners=1, num_gpus_per_learner=1)
        """
        return self._set(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner,
                         num_cpus_per_learner=num_cpus_per_learner)

    def training(self, *, lr: float = NotProvided, gamma: float = NotProvided,
                 train_batch_size: int = NotProvided, minibatch_size: int | None = NotProvided,
                 num_epochs: int = NotProvided, grad_clip: float | None = NotProvided,
                 **kwargs: Any) -> AlgorithmConfig:
        """Training settings; algorithm configs accept their own keywords too."""
        unknown = [k for k in kwargs if not hasattr(self, k) or k.startswith("_")]
        if unknown:
            raise AlgorithmConfigError(
                f"{type(self).__name__}.training() got unknown setting(s) {unknown}; "
                f"see {type(self).__name__}.training's docstring for the accepted ones"
            )
        self._set(lr=lr, gamma=gamma, train_batch_size=train_batch_size, minibatch_size=minibatch_size,
                  num_epochs=num_epochs, grad_clip=grad_clip)
        return self._set(**kwargs)

    def framework(self, framework: str = "torch", **kwargs: Any) -> AlgorithmConfig:
        if framework != "torch":
            raise AlgorithmConfigError(f"framework {framework!r} is not supported: distcore.rllib uses torch")
        self.framework_str = framework
        return self

    def rl_module(self, *, model_config: dict | None = NotProvided,
                  rl_module_spec: RLModuleSpec | None = NotProvided) -> AlgorithmConfig:
        """The default module's ``model_config`` and/or your own :class:`RLModuleSpec`."""
        if model_config is not NotProvided and model_config is not None and not isinstance(model_config, dict):
            raise AlgorithmConfigError(f"model_config must be a dict, got {type(model_config).__name__}")
        return self._set(model_config=model_config if model_config is not None else {},
                         rl_module_spec=rl_module_spec)

    def evaluation(self, *, evaluation_interval: int | None = NotProvided, evaluation_duration: int = NotProvided,
                   evaluation_duration_unit: str = NotProvided, evaluation_num_env_runners: int = NotProvided,
                   evaluation_config: dict | None = NotProvided) -> AlgorithmConfig:
        return self._set(evaluation_interval=evaluation_interval, evaluation_duration=evaluation_duration,
                         evaluation_duration_unit=evaluation_duration_unit,
                         evaluation_num_env_runners=evaluation_num_env_runners,
                         evaluation_config=evaluation_config if evaluation_config is not None else {})

    def multi_agent(self, *, policies: Any = NotProvided, policy_mapping_fn: Callable[..., str] = NotProvided,
                    policies_to_train: list[str] | None = NotProvided) -> AlgorithmConfig:
        """Policies (ids, or id -> spec), which agent maps to which, and which learn."""
        if policies is not NotProvided:
            if isinstance(policies, (set, list, tuple)):
                policies = {pid: None for pid in policies}
            if not isinstance(policies, dict):
                raise AlgorithmConfigError(f"policies must be a set/list of ids or a dict, got {policies!r}")
        return self._set(policies=policies, policy_mapping_fn=policy_mapping_fn,
                         policies_to_train=(list(policies_to_train) if isinstance(policies_to_train, (list, set, tuple))
                                            else policies_to_train))

    def debugging(self, *, seed: int | None = NotProvided, log_level: str = NotProvided) -> AlgorithmConfig:
        return self._set(seed=seed, log_level=log_level)

    def resources(self, *, num_gpus: float = NotProvided, num_cpus_for_main_process: float = NotProvided
                  ) -> AlgorithmConfig:
        """The old stack's ``num_gpus``: with ``num_learners=0`` it puts the local learner on the GPU
        (like ``num_gpus_per_learner``); with learner actors, use ``learners(num_gpus_per_learner=...)``
        (setting both raises :class:`AlgorithmConfigError`)."""
        return self._set(num_gpus=num_gpus, num_cpus_for_main_process=num_cpus_for_main_process)

    def callbacks(self, callbacks_class: type | None = NotProvided) -> AlgorithmConfig:
        """A :class:`distcore.rllib.callbacks.RLlibCallback` subclass."""
        return self._set(callbacks_class=callbacks_class)

    def fault_tolerance(self, *, restart_failed_env_runners: bool = NotProvided,
                        max_num_env_runner_restarts: int = NotProvided) -> AlgorithmConfig:
        return self._set(restart_failed_env_runners=restart_failed_env_runners,
                         max_num_env_runner_restarts=max_num_env_runner_restarts)

    def reporting(self, *, metrics_num_episodes_for_smoothing: int = NotProvided,
                  min_sample_timesteps_per_iteration: int = NotProvided) -> AlgorithmConfig:
        return self._set(metrics_num_episodes_for_smoothing=metrics_num_episodes_for_smoothing,
                         min_sample_timesteps_per_iteration=min_sample_timesteps_per_iteration)

    # ---- derived values ----------------------------------------------------------------------
    @property
    def is_multi_agent(self) -> bool:
        return bool(self.policies)

    def get_rollout_fragment_length(self) -> int:
        if self.rollout_fragment_length == "auto":
            return max(1, math.ceil(self.train_batch_size
                                    / (max(1, self.num_env_runners) * self.num_envs_per_env_runner)))
        return int(self.rollout_fragment_length)

    def env_creator(self) -> Callable[..., Any]:
        return resolve_env_creator(self.env)

    def default_module_class(self) -> type[RLModule]:
        """The algorithm's default RLModule (overridden by each algorithm config)."""
        from distcore.rllib._internal.default_modules import DefaultActorCriticModule

        return DefaultActorCriticModule

    def build_module_spec(self, observation_space: gym.Space, action_space: gym.Space,
                          module_id: str | None = None) -> RLModuleSpec:
        spec = copy.copy(self.rl_module_spec) if self.rl_module_spec is not None else RLModuleSpec()
        if module_id is not None and self.policies.get(module_id) is not None:
            pspec = self.policies[module_id]
            if isinstance(pspec, RLModuleSpec):
                spec = copy.copy(pspec)
        spec.module_class = spec.module_class or self.default_module_class()
        spec.observation_space = spec.observation_space or self.observation_space or observation_space
        spec.action_space = spec.action_space or self.action_space or action_space
        spec.model_config = {**self.model_config, **(spec.model_config or {})}
        return spec

    # ---- validation, copies, dict form ------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`AlgorithmConfigError` naming the first invalid setting."""
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise AlgorithmConfigError(message)

        check(self.env is not None, "no env: call .environment('CartPole-v1') (or a registered name/class)")
        try:
            resolve_env_creator(self.env)
        except (ValueError, TypeError) as error:
            raise AlgorithmConfigError(str(error)) from error
        check(self.framework_str == "torch", "framework must be 'torch'")
        for name in ("num_env_runners", "num_learners", "evaluation_num_env_runners"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 0, f"{name} must be an int >= 0, got {value!r}")
        check(isinstance(self.num_envs_per_env_runner, int) and self.num_envs_per_env_runner >= 1,
              f"num_envs_per_env_runner must be an int >= 1, got {self.num_envs_per_env_runner!r}")
        check(self.batch_mode in _BATCH_MODES, f"batch_mode must be one of {_BATCH_MODES}, got {self.batch_mode!r}")
        rfl = self.rollout_fragment_length
        check(rfl == "auto" or (isinstance(rfl, int) and rfl >= 1),
              f"rollout_fragment_length must be 'auto' or an int >= 1, got {rfl!r}")
        check(isinstance(self.train_batch_size, int) and self.train_batch_size >= 1,
              f"train_batch_size must be an int >= 1, got {self.train_batch_size!r}")
        if self.minibatch_size is not None:
            check(isinstance(self.minibatch_size, int) and self.minibatch_size >= 1,
                  f"minibatch_size must be an int >= 1, got {self.minibatch_size!r}")
            check(self.minibatch_size <= self.train_batch_size,
                  f"minibatch_size ({self.minibatch_size}) must be <= train_batch_size ({self.train_batch_size})")
        check(isinstance(self.num_epochs, int) and self.num_epochs >= 1, f"num_epochs must be >= 1, got {self.num_epochs!r}")
        try:
            check_schedule("lr", self.lr)
        except ValueError as error:
            raise AlgorithmConfigError(str(error)) from error
        check(schedule_value(self.lr, 0) > 0, f"lr must be > 0, got {self.lr!r}")
        check(0.0 <= float(self.gamma) <= 1.0, f"gamma must be in [0, 1], got {self.gamma!r}")
        check(isinstance(self.evaluation_duration, int) and not isinstance(self.evaluation_duration, bool)
              and self.evaluation_duration >= 1,
              f"evaluation_duration must be an int >= 1 (episodes or timesteps), got {self.evaluation_duration!r}")
        check(self.evaluation_duration_unit in ("episodes", "timesteps"),
              f"evaluation_duration_unit must be 'episodes' or 'timesteps', got {self.evaluation_duration_unit!r}")
        self._validate_resources(check)
        if self.is_multi_agent:
            check(self.policy_mapping_fn is not None or len(self.policies) == 1,
                  "multi_agent(policies=...) with several policies needs a policy_mapping_fn")
            for pid in self.policies_to_train or []:
                check(pid in self.policies, f"policies_to_train names {pid!r}, which is not in policies {sorted(self.policies)}")
        if self.rl_module_spec is not None:
            check(isinstance(self.rl_module_spec, RLModuleSpec),
                  f"rl_module_spec must be an RLModuleSpec, got {type(self.rl_module_spec).__name__}")

    def _validate_resources(self, check: Callable[[bool, str], None]) -> None:
        def number(value: Any) -> bool:
            return (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0)

        for name in ("num_gpus_per_learner", "num_gpus", "num_cpus_per_learner"):
            value = getattr(self, name)
            check(number(value), f"{name} must be a number >= 0, got {value!r}")
        check(self.num_gpus_per_learner <= 1,
              f"num_gpus_per_learner must be <= 1 (a learner trains on one GPU; fractions share one), got "
              f"{self.num_gpus_per_learner!r}: for several GPUs use num_learners=N with num_gpus_per_learner=1")
        if self.num_gpus:
            check(not self.num_gpus_per_learner,
                  f"num_gpus={self.num_gpus} and num_gpus_per_learner={self.num_gpus_per_learner} are both set: "
                  "set only num_gpus_per_learner (learners(num_gpus_per_learner=...))")
            check(self.num_learners == 0,
                  f"num_gpus={self.num_gpus} with num_learners={self.num_learners}: learner actors take their GPUs "
                  "from num_gpus_per_learner; use .learners(num_gpus_per_learner=...) and .resources(num_gpus=0)")
            check(self.num_gpus <= 1,
                  f"num_gpus must be <= 1 for the local learner (it trains on one GPU), got {self.num_gpus!r}: "
                  "for several GPUs use .learners(num_learners=N, num_gpus_per_learner=1)")

    def copy(self, copy_frozen: bool = False) -> AlgorithmConfig:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        out["framework"] = out.pop("framework_str")
        return out

    def update_from_dict(self, config: dict[str, Any]) -> AlgorithmConfig:
        """Set every key of ``config`` (as ``to_dict`` names them); unknown keys raise."""
        for key, value in config.items():
            if key == "framework":
                self.framework(value)
                continue
            if key in ("env_runners", "training", "evaluation") and isinstance(value, dict):
                getattr(self, key)(**value)
                continue
            if not hasattr(self, key) or key.startswith("_"):
                raise AlgorithmConfigError(f"unknown config key {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> AlgorithmConfig:
        return cls().update_from_dict(config)

    def build(self, env: Any = None) -> Any:
        """Validate and build the Algorithm (``algo_class``)."""
        if env is not None:
            self.env = env
        if self.algo_class is None:
            raise AlgorithmConfigError(f"{type(self).__name__} has no algo_class to build")
        return self.algo_class(config=self)

    build_algo = build

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env!r}, num_env_runners={self.num_env_runners})"
