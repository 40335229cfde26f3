"""evaluation(evaluation_duration=..., evaluation_duration_unit=...) in episodes and in timesteps."""

from __future__ import annotations

import numpy as np
import pytest

from distcore.rllib import AlgorithmConfigError, make_multi_agent, register_env
from distcore.rllib.algorithms.ppo import PPOConfig

SMALL = {"fcnet_hiddens": [16, 16]}


def config(**evaluation) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size=128, minibatch_size=64, num_epochs=1)
            .evaluation(**evaluation).rl_module(model_config=SMALL).debugging(seed=0))


def test_episodes_unit_runs_exactly_that_many_complete_episodes() -> None:
    # 4 parallel eval envs finish episodes 4 at a time: 7 asked -> the first 7 reported.
    algo = config(evaluation_duration=7, evaluation_config={"num_envs_per_env_runner": 4}).build()
    try:
        out = algo.evaluate()["env_runners"]
        assert out["num_episodes"] == 7
        # Complete CartPole episodes: every step gives +1, so return == length, and 8 ran in all.
        assert out["episode_return_mean"] == out["episode_len_mean"] >= 8
        assert out["num_env_steps_sampled"] >= 7 * 8
        assert np.isfinite(out["episode_return_std"])
    finally:
        algo.stop()


def test_timesteps_unit_runs_that_many_steps() -> None:
    algo = config(evaluation_duration=250, evaluation_duration_unit="timesteps",
                  evaluation_config={"num_envs_per_env_runner": 4}).build()
    try:
        first = algo.evaluate()["env_runners"]
        assert 250 <= first["num_env_steps_sampled"] < 250 + 4
        # Random-ish CartPole episodes are short: some ended inside those steps, none longer than them.
        assert first["num_episodes"] >= 1 and first["episode_len_mean"] <= 250
        second = algo.evaluate()["env_runners"]
        assert 250 <= second["num_env_steps_sampled"] < 254
    finally:
        algo.stop()


def test_multi_agent_evaluation_counts_whole_episodes() -> None:
    MultiCartPole = make_multi_agent("CartPole-v1")
    register_env("eval_ma_cartpole", lambda cfg: MultiCartPole({"num_agents": 2}))
    algo = (config(evaluation_duration=5).environment("eval_ma_cartpole")
            .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
            .build())
    try:
        out = algo.evaluate()["env_runners"]
        assert out["num_episodes"] == 5
        # The episode return sums both agents' +1 rewards: at least the episode's length (one agent), at most twice.
        assert out["episode_len_mean"] <= out["episode_return_mean"] <= 2 * out["episode_len_mean"]
    finally:
        algo.stop()


def test_bad_evaluation_settings_are_named() -> None:
    with pytest.raises(AlgorithmConfigError, match="evaluation_duration must be an int >= 1"):
        config(evaluation_duration=0).validate()
    with pytest.raises(AlgorithmConfigError, match="evaluation_duration_unit must be 'episodes' or 'timesteps'"):
        config(evaluation_duration_unit="minutes").validate()
