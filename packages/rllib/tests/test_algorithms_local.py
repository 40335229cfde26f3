"""Algorithms in the driver (num_env_runners=0): results, checkpoints, inference, custom modules, smoke runs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from distcore.rllib import Algorithm, RLlibCallback, RLModule, RLModuleSpec, register_env
from distcore.rllib.algorithms.appo import APPOConfig
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.impala import IMPALAConfig
from distcore.rllib.algorithms.ppo import PPOConfig
from distcore.rllib.algorithms.sac import SACConfig

SMALL = {"fcnet_hiddens": [32, 32]}


def small_ppo() -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size=256, minibatch_size=64, num_epochs=2, lr=1e-3)
            .rl_module(model_config=SMALL).debugging(seed=1))


def weights_equal(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_ppo_train_result_has_rllib_keys() -> None:
    algo = small_ppo().build()
    try:
        first = algo.train()
        second = algo.train()
    finally:
        algo.stop()
    assert second["training_iteration"] == 2
    assert second["num_env_steps_sampled_lifetime"] == 512 == first["num_env_steps_sampled_lifetime"] * 2
    assert np.isfinite(second["env_runners"]["episode_return_mean"])
    stats = second["learners"]["default_policy"]
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "curr_kl_coeff", "vf_explained_var"):
        assert key in stats
    assert {"env_runner_sampling_timer", "learner_update_timer", "synch_weights"} <= second["timers"].keys()


def test_checkpoint_restore_gives_identical_weights_and_continues(tmp_path) -> None:
    algo = small_ppo().build()
    algo.train()
    path = algo.save_to_path(str(tmp_path / "ckpt"))
    saved = algo.get_module().get_state()
    algo.train()  # moves the weights on
    assert not weights_equal(saved, algo.get_module().get_state())
    algo.restore(path)
    assert weights_equal(saved, algo.get_module().get_state())
    assert algo.iteration == 1
    algo.stop()
    restored = Algorithm.from_checkpoint(path)
    try:
        assert type(restored).__name__ == "PPO"
        assert weights_equal(saved, restored.get_module().get_state())
        result = restored.train()
        assert result["training_iteration"] == 2
        assert result["num_env_steps_sampled_lifetime"] == 512
    finally:
        restored.stop()
    with pytest.raises(FileNotFoundError, match="not an rllib checkpoint"):
        Algorithm.from_checkpoint(str(tmp_path))


def test_compute_single_action_and_evaluate() -> None:
    algo = small_ppo().evaluation(evaluation_duration=2).build()
    try:
        action = algo.compute_single_action(np.zeros(4, dtype=np.float32))
        assert action in (0, 1)
        module = algo.get_module()
        logits = module.forward_inference({"obs": torch.zeros(1, 4)})["action_dist_inputs"]
        assert action == int(logits.argmax())
        metrics = algo.evaluate()
        assert metrics["env_runners"]["num_episodes"] >= 2
        assert metrics["env_runners"]["episode_return_mean"] >= 1
        with pytest.raises(KeyError, match="no module 'other'"):
            algo.get_module("other")
    finally:
        algo.stop()


class TinyModule(RLModule):
    def setup(self) -> None:
        self.pi = torch.nn.Linear(4, 2)
        self.vf = torch.nn.Linear(4, 1)

    def _forward(self, batch):
        return {"action_dist_inputs": self.pi(batch["obs"])}

    def compute_values(self, batch):
        return self.vf(batch["obs"]).squeeze(-1)


def test_user_supplied_rl_module() -> None:
    algo = small_ppo().rl_module(rl_module_spec=RLModuleSpec(module_class=TinyModule)).build()
    try:
        algo.train()
        module = algo.get_module()
        assert isinstance(module, TinyModule)
        assert set(module.get_state()) == {"pi.weight", "pi.bias", "vf.weight", "vf.bias"}
    finally:
        algo.stop()


class CorridorEnv(gym.Env):
    """Walk right to the end of a corridor; Dict observations, MultiDiscrete actions."""

    def __init__(self, config=None):
        self.length = int((config or {}).get("length", 5))
        self.observation_space = gym.spaces.Dict({"pos": gym.spaces.Discrete(self.length + 1),
                                                  "noise": gym.spaces.Box(-1, 1, (2,))})
        self.action_space = gym.spaces.MultiDiscrete([2, 3])
        self.pos = 0

    def _obs(self):
        return {"pos": self.pos, "noise": np.zeros(2, dtype=np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action[0] == 1 else -1))
        done = self.pos >= self.length
        return self._obs(), 1.0 if done else -0.1, done, False, {}


class Counting(RLlibCallback):
    def __init__(self):
        self.episodes = 0

    def on_episode_end(self, *, algorithm, episode_return, episode_length, **kwargs):
        self.episodes += 1

    def on_train_result(self, *, algorithm, result, **kwargs):
        result["callback_episodes"] = self.episodes


def test_registered_env_with_dict_obs_multidiscrete_actions_and_callbacks() -> None:
    register_env("corridor", lambda cfg: CorridorEnv(cfg))
    config = (PPOConfig().environment("corridor", env_config={"length": 3})
              .env_runners(num_envs_per_env_runner=2, batch_mode="complete_episodes", rollout_fragment_length=8)
              .training(train_batch_size=64, minibatch_size=32, num_epochs=1).rl_module(model_config=SMALL)
              .callbacks(Counting).debugging(seed=0))
    algo = config.build()
    try:
        result = algo.train()
        assert result["callback_episodes"] == result["env_runners"]["num_episodes_lifetime"] > 0
        assert isinstance(algo.compute_single_action({"pos": 1, "noise": np.zeros(2, np.float32)}), np.ndarray)
    finally:
        algo.stop()


def test_ppo_on_a_box_action_space_clips_actions_to_bounds() -> None:
    algo = (PPOConfig().environment("Pendulum-v1").training(train_batch_size=200, minibatch_size=100, num_epochs=1)
            .rl_module(model_config=SMALL).debugging(seed=0).build())
    try:
        algo.train()
        action = algo.compute_single_action(np.array([1.0, 0.0, 0.0], dtype=np.float32), explore=True)
        assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    finally:
        algo.stop()


@pytest.mark.parametrize("make", [
    lambda: DQNConfig().environment("CartPole-v1").training(
        num_steps_sampled_before_learning_starts=100, train_batch_size=32, n_step=3,
        replay_buffer_config={"capacity": 1000}).reporting(min_sample_timesteps_per_iteration=200),
    lambda: SACConfig().environment("Pendulum-v1").training(
        num_steps_sampled_before_learning_starts=150, train_batch_size=32, training_intensity=4)
    .reporting(min_sample_timesteps_per_iteration=200),
    lambda: IMPALAConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2,
                                                                   rollout_fragment_length=20),
    lambda: APPOConfig().environment("CartPole-v1").training(num_epochs=2, minibatch_size=40)
    .env_runners(rollout_fragment_length=25),
], ids=["DQN", "SAC", "IMPALA", "APPO"])
def test_off_policy_and_async_algorithms_run_an_iteration(make) -> None:
    algo = make().rl_module(model_config=SMALL).debugging(seed=0).build()
    try:
        before = {k: v.copy() for k, v in algo.get_module().get_state().items()}
        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 100
        assert not weights_equal(before, algo.get_module().get_state()), "no learning step happened"
        assert result["learners"]["default_policy"]
    finally:
        algo.stop()
