"""Env runner actors, weight broadcast, runner restarts and data-parallel learners on a real local cluster."""

from __future__ import annotations

import time

import numpy as np
import pytest

import distcore
from distcore.rllib.algorithms.impala import IMPALAConfig
from distcore.rllib.algorithms.ppo import PPOConfig

pytestmark = pytest.mark.integration

SMALL = {"fcnet_hiddens": [32, 32]}


def remote_ppo(num_env_runners: int = 2) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=2)
            .training(train_batch_size=400, minibatch_size=100, num_epochs=1, lr=1e-3)
            .rl_module(model_config=SMALL).debugging(seed=0))


def test_runners_sample_in_parallel_and_share_one_weights_object(cluster) -> None:
    algo = remote_ppo().build()
    try:
        result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 400
        group = algo.env_runner_group
        assert len(group.actors) == 2 and group.local is None
        infos = group.foreach_runner("weights_info")
        # Every runner loaded the same broadcast (one object in the store), at the latest sequence number.
        assert {seq for seq, _ in infos} == {group.weights_seq}
        assert {oid for _, oid in infos} == {group._weights_ref.hex()}
        learner = algo.get_module().get_state()
        runner_weights = distcore.get(group.actors[1].get_weights.remote(), timeout=60)
        assert all(np.array_equal(learner[k], runner_weights[k]) for k in learner)
    finally:
        algo.stop()


def test_a_killed_env_runner_is_replaced_and_training_continues(cluster) -> None:
    algo = remote_ppo().build()
    try:
        algo.train()
        victim = algo.env_runner_group.actors[1]
        distcore.kill(victim)
        time.sleep(0.5)
        steps = algo.train()["num_env_steps_sampled_lifetime"]
        result = algo.train()
        assert result["env_runners"]["num_env_runner_restarts"] >= 1
        assert result["env_runners"]["num_healthy_env_runners"] == 2
        assert result["num_env_steps_sampled_lifetime"] > steps
        assert algo.env_runner_group.actors[1] is not victim
        assert distcore.get(algo.env_runner_group.actors[1].ping.remote(), timeout=60) == 1
    finally:
        algo.stop()


@pytest.mark.slow
def test_without_restarts_a_dead_runner_fails_the_iteration(cluster) -> None:
    algo = remote_ppo(1).fault_tolerance(restart_failed_env_runners=False).build()
    try:
        distcore.kill(algo.env_runner_group.actors[1])
        time.sleep(0.5)
        with pytest.raises(distcore.exceptions.ActorError):
            algo.train()
    finally:
        algo.stop()


def test_two_data_parallel_learners_stay_identical(cluster) -> None:
    algo = remote_ppo(1).learners(num_learners=2).build()
    try:
        result = algo.train()
        assert "policy_loss" in result["learners"]["default_policy"]
        states = algo.learner_group.foreach("get_weights")
        a, b = states[0]["default_policy"], states[1]["default_policy"]
        assert all(np.array_equal(a[k], b[k]) for k in a), "gradients were not averaged across learners"
        assert algo.compute_single_action(np.zeros(4, dtype=np.float32)) in (0, 1)
    finally:
        algo.stop()


def test_impala_samples_asynchronously_from_runner_actors(cluster) -> None:
    algo = (IMPALAConfig().environment("CartPole-v1").env_runners(num_env_runners=2, rollout_fragment_length=50)
            .training(train_batch_size=200).rl_module(model_config=SMALL).debugging(seed=0).build())
    try:
        for _ in range(3):
            result = algo.train()
        assert result["num_env_steps_sampled_lifetime"] >= 600
        assert "mean_weights_lag" in result["learners"]["default_policy"]
        assert len(algo.env_runner_group._inflight) == 2  # one request kept in flight per runner
    finally:
        algo.stop()
