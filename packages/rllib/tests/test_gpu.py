"""num_gpus_per_learner on a real GPU: the local learner and a learner actor train on cuda, DQN and SAC
learn on cuda, env runners and checkpoints stay on the CPU (a GPU checkpoint restores CPU-only)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import distcore
from distcore.rllib import Algorithm
from distcore.rllib.algorithms.appo import APPOConfig
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.impala import IMPALAConfig
from distcore.rllib.algorithms.ppo import PPOConfig
from distcore.rllib.algorithms.sac import SACConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]


def _ppo(**learners) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=4)
            .learners(**learners).training(lr=1e-3, train_batch_size=512, minibatch_size=128, num_epochs=4)
            .debugging(seed=0))


def _assert_finite_stats(stats: dict) -> None:
    numbers = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    assert numbers, stats
    assert all(math.isfinite(v) for v in numbers.values()), numbers


def _assert_weights_on_cpu(weights: dict) -> None:
    for module_weights in weights.values():
        assert all(isinstance(v, np.ndarray) for v in module_weights.values())


def test_ppo_local_learner_trains_on_cuda() -> None:
    algo = _ppo(num_learners=0, num_gpus_per_learner=1).build()
    try:
        learner = algo.learner_group.local
        assert learner.device == torch.device("cuda", 0)
        assert all(p.device.type == "cuda" for p in learner.module.parameters())
        returns = []
        for _ in range(3):
            result = algo.train()
            _assert_finite_stats(result["learners"]["default_policy"])
            returns.append(result["env_runners"]["episode_return_mean"])
        # Optimizer state lives on the GPU with the parameters.
        opt_state = learner.optimizers["default_policy"][0].state
        assert opt_state and all(s["exp_avg"].device.type == "cuda" for s in opt_state.values())
        # The driver's env runner acts on the CPU with numpy weights from the GPU learner.
        _assert_weights_on_cpu(algo.learner_group.get_weights())
        assert all(p.device.type == "cpu" for p in algo.env_runner_group.local.module.parameters())
        assert all(math.isfinite(r) and 8 <= r <= 500 for r in returns), returns
        assert returns[-1] >= returns[0] - 5, returns  # learning, or at least not collapsing
        action = algo.compute_single_action(np.zeros(4, dtype=np.float32))
        assert action in (0, 1)
    finally:
        algo.stop()


def test_ppo_learner_actor_uses_its_assigned_gpu(start_cluster) -> None:
    start_cluster(num_cpus=4, num_gpus=1)
    algo = _ppo(num_learners=1, num_gpus_per_learner=1).env_runners(num_env_runners=1).build()
    try:
        [info] = algo.learner_group.foreach("device_info")
        assert info["device"] == "cuda:0" and info["param_device"] == "cuda:0"
        assert info["gpu_ids"] == [0] and info["cuda_visible_devices"] == "0"
        assert info["pid"] != os.getpid()
        result = algo.train()
        _assert_finite_stats(result["learners"]["default_policy"])
        _assert_weights_on_cpu(algo.learner_group.get_weights())
    finally:
        algo.stop()


def test_two_fractional_learners_share_the_gpu_over_gloo(start_cluster) -> None:
    start_cluster(num_cpus=4, num_gpus=1)
    algo = _ppo(num_learners=2, num_gpus_per_learner=0.5, num_cpus_per_learner=0.5).build()
    try:
        infos = algo.learner_group.foreach("device_info")
        assert [i["param_device"] for i in infos] == ["cuda:0", "cuda:0"]
        assert [i["backend"] for i in infos] == ["gloo", "gloo"]  # nccl refuses two ranks on one GPU
        _assert_finite_stats(algo.train()["learners"]["default_policy"])
        w0, w1 = (distcore.get(a.get_weights.remote(), timeout=60) for a in algo.learner_group.actors)
        for key in w0["default_policy"]:  # all-reduced gradients keep the replicas identical
            np.testing.assert_allclose(w0["default_policy"][key], w1["default_policy"][key], rtol=1e-5, atol=1e-6)
    finally:
        algo.stop()


def test_dqn_trains_on_cuda_with_prioritized_replay_and_target_updates() -> None:
    config = (DQNConfig().environment("CartPole-v1").learners(num_gpus_per_learner=1)
              .training(num_steps_sampled_before_learning_starts=64, train_batch_size=32,
                        target_network_update_freq=100, n_step=3)
              .reporting(min_sample_timesteps_per_iteration=400).debugging(seed=0))
    algo = config.build()
    try:
        learner = algo.learner_group.local
        assert all(p.device.type == "cuda" for p in learner.module.parameters())
        assert all(p.device.type == "cuda" for p in learner.target["default_policy"].parameters())
        stats = algo.train()["learners"]["default_policy"]
        _assert_finite_stats(stats)
        assert "qf_loss" in stats and stats["replay_buffer_size"] >= 400
        # TD errors came back from the GPU as numpy priorities: the buffer's leaves no longer all hold
        # the initial priority.
        tree = algo.replay_buffer._sum
        leaves = tree.tree[tree.size:tree.size + len(algo.replay_buffer)]
        assert len(np.unique(leaves)) > 1
    finally:
        algo.stop()


def test_sac_trains_on_cuda_on_pendulum() -> None:
    config = (SACConfig().environment("Pendulum-v1").learners(num_gpus_per_learner=1)
              .training(num_steps_sampled_before_learning_starts=64, train_batch_size=64)
              .reporting(min_sample_timesteps_per_iteration=300).debugging(seed=0))
    algo = config.build()
    try:
        learner = algo.learner_group.local
        module = learner.module["default_policy"]
        assert all(p.device.type == "cuda" for p in module.parameters())
        assert module._low.device.type == "cuda" and learner.log_alpha["default_policy"].device.type == "cuda"
        stats = algo.train()["learners"]["default_policy"]
        _assert_finite_stats(stats)
        assert {"critic_loss", "actor_loss", "alpha_value"} <= set(stats)
        action = algo.compute_single_action(np.zeros(3, dtype=np.float32))
        assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    finally:
        algo.stop()


RESTORE_CPU_ONLY = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from distcore.rllib import Algorithm
    assert not torch.cuda.is_available()
    algo = Algorithm.from_checkpoint(sys.argv[1], num_gpus_per_learner=0)
    weights = algo.learner_group.get_weights()["default_policy"]
    expected = np.load(sys.argv[2])
    assert sorted(weights) == sorted(expected.files)
    for key in expected.files:
        np.testing.assert_array_equal(weights[key], expected[key])
    assert all(p.device.type == "cpu" for p in algo.learner_group.local.module.parameters())
    algo.train()
    algo.stop()
    print("RESTORED-ON-CPU")
""")


def test_gpu_checkpoint_restores_on_cpu_and_back(tmp_path) -> None:
    algo = _ppo(num_learners=0, num_gpus_per_learner=1).training(train_batch_size=256, num_epochs=2).build()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "gpu_ckpt"))
        weights = algo.learner_group.get_weights()
        gpu_state = algo.learner_group.get_state()
    finally:
        algo.stop()
    # Saved values are CPU tensors/arrays, including the optimizer state.
    for opt in gpu_state["optimizers"]["default_policy"]:
        for per_param in opt["state"].values():
            assert all(v.device.type == "cpu" for v in per_param.values() if isinstance(v, torch.Tensor))
    np.savez(tmp_path / "weights.npz", **weights["default_policy"])

    cpu_algo = Algorithm.from_checkpoint(path, num_gpus_per_learner=0)
    try:
        restored = cpu_algo.learner_group.get_weights()["default_policy"]
        for key, value in weights["default_policy"].items():
            np.testing.assert_array_equal(restored[key], value)
        cpu_opt = cpu_algo.learner_group.local.optimizers["default_policy"][0]
        assert all(s["exp_avg"].device.type == "cpu" for s in cpu_opt.state.values())
        cpu_path = cpu_algo.save_to_path(str(tmp_path / "cpu_ckpt"))
    finally:
        cpu_algo.stop()

    # A CPU checkpoint goes back onto the GPU (optimizer state follows the parameters).
    gpu_again = Algorithm.from_checkpoint(cpu_path, num_gpus_per_learner=1)
    try:
        learner = gpu_again.learner_group.local
        assert all(p.device.type == "cuda" for p in learner.module.parameters())
        assert all(s["exp_avg"].device.type == "cuda" for s in learner.optimizers["default_policy"][0].state.values())
        for key, value in gpu_again.learner_group.get_weights()["default_policy"].items():
            np.testing.assert_array_equal(value, weights["default_policy"][key])
        _assert_finite_stats(gpu_again.train()["learners"]["default_policy"])
    finally:
        gpu_again.stop()

    # A machine without CUDA (CUDA hidden from a fresh process) restores the GPU checkpoint.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", RESTORE_CPU_ONLY, path, str(tmp_path / "weights.npz")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "RESTORED-ON-CPU" in out.stdout, out.stderr[-3000:]


@pytest.mark.parametrize("make", [
    lambda: IMPALAConfig().env_runners(num_envs_per_env_runner=2, rollout_fragment_length=20),
    lambda: APPOConfig().training(num_epochs=2, minibatch_size=40).env_runners(rollout_fragment_length=25),
], ids=["IMPALA", "APPO"])
def test_vtrace_algorithms_train_on_cuda(make) -> None:
    algo = make().environment("CartPole-v1").learners(num_gpus_per_learner=1).debugging(seed=0).build()
    try:
        module = algo.learner_group.local.module["default_policy"]
        assert all(p.device.type == "cuda" for p in module.parameters())
        before = {k: v.copy() for k, v in algo.learner_group.get_weights()["default_policy"].items()}
        stats = algo.train()["learners"]["default_policy"]
        _assert_finite_stats(stats)
        after = algo.learner_group.get_weights()["default_policy"]
        assert any(not np.array_equal(before[k], after[k]) for k in before)
    finally:
        algo.stop()


def test_tune_trial_hosts_the_gpu_local_learner(start_cluster, tmp_path) -> None:
    from distcore import tune

    start_cluster(num_cpus=4, num_gpus=1)
    space = _ppo(num_learners=0, num_gpus_per_learner=1).training(train_batch_size=256, num_epochs=1).to_dict()
    grid = tune.Tuner("PPO", param_space=space,
                      run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path),
                                                verbose=0)).fit()
    assert not grid.errors, grid.errors
    [result] = list(grid)
    assert result.metrics["training_iteration"] == 1
    _assert_finite_stats(result.metrics["learners"]["default_policy"])
