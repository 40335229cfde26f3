"""Checkpoints: torch state_dict + JSON + npz files (no pickled weights), replay buffers, from_checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from distcore.rllib import Algorithm, CheckpointError, make_multi_agent, register_env
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.sac import SACConfig

SMALL = {"fcnet_hiddens": [16, 16]}


def small_dqn(store: bool) -> DQNConfig:
    return (DQNConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size=16, num_steps_sampled_before_learning_starts=64, training_intensity=8,
                      store_buffer_in_checkpoints=store, target_network_update_freq=100,
                      replay_buffer_config={"type": "PrioritizedReplayBuffer", "capacity": 1000})
            .reporting(min_sample_timesteps_per_iteration=150).rl_module(model_config=SMALL).debugging(seed=3))


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def assert_trees_equal(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_trees_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_trees_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, torch.Tensor)):
        assert np.array_equal(np.asarray(a), np.asarray(b)), where
    else:
        assert a == b, where


def test_dqn_checkpoint_files_restore_weights_optimizer_and_replay_buffer(tmp_path) -> None:
    algo = small_dqn(store=True).build()
    try:
        algo.train()
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        state = algo.get_state()
        buffer_state = algo.replay_buffer.get_state()
        size_before = len(algo.replay_buffer)
    finally:
        algo.stop()
    files = {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}
    assert not any(f.endswith(".pkl") for f in files), files  # nothing pickled: no lambda in this config
    meta = read_json(os.path.join(path, "rllib_checkpoint.json"))
    assert meta["format"] == "distcore-rllib" and meta["checkpoint_version"] == "2.0"
    assert meta["algo_class"] == "distcore.rllib.algorithms.dqn:DQN" and meta["replay_buffers"] == ["default_policy"]
    # Weights are a plain torch state_dict: loadable without distcore code objects.
    weights = torch.load(os.path.join(path, "modules/0/module_state.pt"), weights_only=True)
    assert_trees_equal({k: v.numpy() for k, v in weights.items()}, state["learner"]["weights"]["default_policy"])
    config = read_json(os.path.join(path, "config.json"))
    assert config["env"] == "CartPole-v1" and config["store_buffer_in_checkpoints"] is True

    restored = Algorithm.from_checkpoint(path)
    try:
        assert type(restored).__name__ == "DQN"
        new_state = restored.get_state()
        assert_trees_equal(state["learner"]["weights"], new_state["learner"]["weights"], "weights")
        assert_trees_equal(state["learner"]["extra"], new_state["learner"]["extra"], "target nets")
        assert_trees_equal(state["learner"]["optimizers"], new_state["learner"]["optimizers"], "optimizers")
        assert_trees_equal(buffer_state, restored.replay_buffer.get_state(), "replay buffer")
        assert new_state["counters"] == state["counters"] and restored.iteration == 2
        # Sampling from the restored buffer draws the same items (the buffer's RNG was restored too).
        a = small_dqn(True).build()
        try:
            a.replay_buffer.set_state(buffer_state)
            assert_trees_equal(a.replay_buffer.sample(8), restored.replay_buffer.sample(8), "sample")
        finally:
            a.stop()
        result = restored.train()  # continues: counters and buffer grow from the saved values
        assert result["training_iteration"] == 3
        assert result["num_env_steps_sampled_lifetime"] >= state["counters"]["num_env_steps_sampled_lifetime"] + 150
        assert len(restored.replay_buffer) > size_before
    finally:
        restored.stop()


def test_without_store_buffer_in_checkpoints_the_buffer_is_left_out(tmp_path) -> None:
    algo = small_dqn(store=False).build()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        weights = algo.get_module().get_state()
    finally:
        algo.stop()
    assert read_json(os.path.join(path, "rllib_checkpoint.json"))["replay_buffers"] == []
    with np.load(os.path.join(path, "algorithm_state.npz")) as arrays:
        assert len(arrays.files) == 0
    restored = Algorithm.from_checkpoint(path)
    try:
        assert len(restored.replay_buffer) == 0
        assert_trees_equal(weights, restored.get_module().get_state())
    finally:
        restored.stop()


MultiPendulum = make_multi_agent("Pendulum-v1")


def test_multi_agent_checkpoint_pickles_only_the_mapping_fn_and_takes_overrides(tmp_path) -> None:
    register_env("ckpt_ma_pendulum", lambda cfg: MultiPendulum({"num_agents": 2}))
    config = (SACConfig().environment("ckpt_ma_pendulum")
              .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
              .training(train_batch_size=16, num_steps_sampled_before_learning_starts=20,
                        store_buffer_in_checkpoints=True)
              .reporting(min_sample_timesteps_per_iteration=40).rl_module(model_config=SMALL).debugging(seed=0))
    algo = config.build()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ma"))
        state = algo.get_state()
    finally:
        algo.stop()
    meta = read_json(os.path.join(path, "rllib_checkpoint.json"))
    assert meta["config_objects"] == ["policy_mapping_fn"] and sorted(meta["replay_buffers"]) == ["p0", "p1"]
    restored = Algorithm.from_checkpoint(path)
    try:
        assert_trees_equal(state["learner"], restored.get_state()["learner"], "learner")
        assert_trees_equal(state["algorithm"]["replay_buffers"], restored.get_state()["algorithm"]["replay_buffers"])
    finally:
        restored.stop()
    # A pickled value that no longer loads: a clear error, and an override replaces it.
    with open(os.path.join(path, "config_objects.pkl"), "wb") as f:
        f.write(b"not a pickle")
    with pytest.raises(CheckpointError, match="policy_mapping_fn"):
        Algorithm.from_checkpoint(path)
    restored = Algorithm.from_checkpoint(path, policy_mapping_fn=lambda agent_id, *a, **k: f"p{agent_id}")
    try:
        assert_trees_equal(state["learner"]["weights"], restored.get_state()["learner"]["weights"])
    finally:
        restored.stop()


def test_unreadable_checkpoints_fail_clearly(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not an rllib checkpoint"):
        Algorithm.from_checkpoint(str(tmp_path))
    (tmp_path / "rllib_checkpoint.json").write_text(json.dumps(
        {"type": "Algorithm", "format": "distcore-rllib", "checkpoint_version": "9.0", "algorithm": "DQN"}))
    with pytest.raises(CheckpointError, match="newer than this"):
        Algorithm.from_checkpoint(str(tmp_path))
