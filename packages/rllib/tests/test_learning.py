"""Learning tests: seeded, each with a stated env-step budget.

The default run keeps short smoke versions (a few iterations show the return rising);
the full runs to the published rewards are marked ``slow``. PPO/APPO pass on the training
return, the mean over the last 100 episodes (RLlib's ``metrics_num_episodes_for_smoothing``).
DQN and SAC pass on the mean return of 100 greedy evaluation episodes (``evaluate()`` with
``evaluation_duration=100``), checked once the training return of their last 20 (DQN) / 5
(SAC) episodes is past the target: the short windows only decide when to evaluate (a
100-episode training window would lag ~100 episodes behind the policy, 20k of SAC's steps),
and the evaluation episodes are not counted in the step budget.
"""

from __future__ import annotations

import pytest

from distcore.rllib.algorithms.appo import APPOConfig
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.ppo import PPOConfig
from distcore.rllib.algorithms.sac import SACConfig


def ppo_cartpole() -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=8)
            .training(lr=1e-3, train_batch_size=1024, minibatch_size=256, num_epochs=10, lambda_=0.95, gamma=0.99,
                      clip_param=0.2, vf_loss_coeff=0.5, entropy_coeff=0.0, use_kl_loss=False)
            .rl_module(model_config={"fcnet_hiddens": [64, 64]}).debugging(seed=0))


def dqn_cartpole() -> DQNConfig:
    return (DQNConfig().environment("CartPole-v1").env_runners(rollout_fragment_length=4)
            .training(lr=1e-3, train_batch_size=64, n_step=3, gamma=0.99, double_q=True, dueling=True,
                      target_network_update_freq=500, epsilon=[[0, 1.0], [10000, 0.02]], training_intensity=16,
                      num_steps_sampled_before_learning_starts=1000, grad_clip=10.0,
                      replay_buffer_config={"type": "PrioritizedReplayBuffer", "capacity": 50000})
            .rl_module(model_config={"fcnet_hiddens": [64, 64]})
            .reporting(metrics_num_episodes_for_smoothing=20).debugging(seed=0))


def sac_pendulum() -> SACConfig:
    return (SACConfig().environment("Pendulum-v1")
            .training(actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3, train_batch_size=128,
                      num_steps_sampled_before_learning_starts=1000)
            .rl_module(model_config={"fcnet_hiddens": [64, 64]})
            .reporting(metrics_num_episodes_for_smoothing=5).debugging(seed=0))


def appo_cartpole() -> APPOConfig:
    return (APPOConfig().environment("CartPole-v1")
            .env_runners(num_envs_per_env_runner=8, rollout_fragment_length=125)
            .training(lr=1e-3, train_batch_size=1000, num_epochs=4, minibatch_size=250, entropy_coeff=0.0,
                      vf_loss_coeff=0.5, clip_param=0.2, gamma=0.99, vtrace_lambda=0.95)
            .rl_module(model_config={"fcnet_hiddens": [64, 64]}).debugging(seed=0))


def train_until(config, target: float, max_env_steps: int) -> tuple[float, int]:
    algo = config.build()
    try:
        while True:
            result = algo.train()
            ret = result["env_runners"]["episode_return_mean"]
            steps = result["num_env_steps_sampled_lifetime"]
            if ret >= target or steps >= max_env_steps:
                return ret, steps
    finally:
        algo.stop()


def test_ppo_smoke_return_rises() -> None:
    ret, steps = train_until(ppo_cartpole(), 60.0, 10_240)
    assert ret >= 60.0, f"PPO mean return {ret:.1f} after {steps} steps (random play: ~22)"


@pytest.mark.slow
def test_ppo_reaches_475_on_cartpole_within_120k_steps() -> None:
    ret, steps = train_until(ppo_cartpole(), 475.0, 120_000)
    assert ret >= 475.0, f"PPO mean return {ret:.1f} after {steps} steps"


@pytest.mark.slow
def test_dqn_reaches_400_on_cartpole_within_60k_steps(train_then_evaluate, describe) -> None:
    evaluation, steps = train_then_evaluate(dqn_cartpole(), 400.0, 60_000)
    assert evaluation["episode_return_mean"] >= 400.0, "DQN " + describe(evaluation, steps)


@pytest.mark.slow
def test_sac_reaches_minus_300_on_pendulum_within_20k_steps(train_then_evaluate, describe) -> None:
    evaluation, steps = train_then_evaluate(sac_pendulum(), -300.0, 20_000)
    assert evaluation["episode_return_mean"] >= -300.0, "SAC " + describe(evaluation, steps)


@pytest.mark.slow
def test_appo_reaches_400_on_cartpole_within_200k_steps() -> None:
    ret, steps = train_until(appo_cartpole(), 400.0, 200_000)
    assert ret >= 400.0, f"APPO mean return {ret:.1f} after {steps} steps"
