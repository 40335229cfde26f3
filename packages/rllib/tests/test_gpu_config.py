"""num_gpus_per_learner on a machine without CUDA: validation, the no-CUDA errors on the local-learner
and learner-actor paths, the learner actor's GPU request, and the CPU path staying on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distcore.rllib import AlgorithmConfigError, GPUNotAvailableError
from distcore.rllib._internal.devices import check_cluster_gpus, learner_gpus, to_numpy, to_tensor
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.ppo import PPOConfig

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")


def _ppo(**learners) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").learners(**learners)
            .training(train_batch_size=64, minibatch_size=32, num_epochs=1).debugging(seed=0))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c.learners(num_gpus_per_learner=-0.5), r"num_gpus_per_learner must be a number >= 0, got -0.5"),
    (lambda c: c.learners(num_gpus_per_learner="1"), r"num_gpus_per_learner must be a number >= 0, got '1'"),
    (lambda c: c.learners(num_gpus_per_learner=True), r"num_gpus_per_learner must be a number >= 0, got True"),
    (lambda c: c.learners(num_gpus_per_learner=float("nan")), "num_gpus_per_learner must be a number >= 0"),
    (lambda c: c.learners(num_gpus_per_learner=2), r"num_gpus_per_learner must be <= 1 .*num_learners=N"),
    (lambda c: c.learners(num_cpus_per_learner=-1), "num_cpus_per_learner must be a number >= 0"),
    (lambda c: c.resources(num_gpus=-1), "num_gpus must be a number >= 0"),
    (lambda c: c.resources(num_gpus=1).learners(num_gpus_per_learner=1), "are both set"),
    (lambda c: c.resources(num_gpus=1).learners(num_learners=2), r"num_gpus=1 with num_learners=2.*num_gpus_per_learner"),
    (lambda c: c.resources(num_gpus=2), r"num_gpus must be <= 1 for the local learner"),
])
def test_gpu_settings_are_validated(mutate, message) -> None:
    config = PPOConfig().environment("CartPole-v1")
    with pytest.raises(AlgorithmConfigError, match=message):
        mutate(config)
        config.validate()


def test_valid_gpu_settings_pass_validation_and_name_the_learner_gpus() -> None:
    for config, gpus in [(_ppo(num_gpus_per_learner=0.25, num_learners=4), 0.25),
                         (_ppo(num_gpus_per_learner=1), 1.0),
                         (_ppo().resources(num_gpus=1), 1.0),  # the old stack's local-learner GPU
                         (_ppo(), 0.0)]:
        config.validate()
        assert learner_gpus(config) == gpus
    assert issubclass(GPUNotAvailableError, AlgorithmConfigError) and issubclass(GPUNotAvailableError, RuntimeError)


@needs_no_cuda
@pytest.mark.parametrize("setting", [{"num_gpus_per_learner": 1}, {"num_gpus_per_learner": 0.5}, {"num_gpus": 1}])
def test_local_learner_without_cuda_raises_a_clear_error(setting) -> None:
    config = _ppo(num_learners=0)
    if "num_gpus" in setting:
        config.resources(num_gpus=setting["num_gpus"])
        named = "num_gpus=1"
    else:
        config.learners(num_gpus_per_learner=setting["num_gpus_per_learner"])
        named = f"num_gpus_per_learner={setting['num_gpus_per_learner']}"
    with pytest.raises(GPUNotAvailableError) as info:
        config.build()
    message = str(info.value)
    assert named in message
    assert "torch.cuda.is_available() is False in the local learner's process (num_learners=0" in message
    assert "num_gpus_per_learner=0" in message  # the fix


@needs_no_cuda
@pytest.mark.integration
def test_learner_actor_gets_the_gpu_it_asks_for_then_reports_no_cuda(start_cluster) -> None:
    import distcore

    start_cluster(num_cpus=2, num_gpus=1)
    config = _ppo(num_learners=2, num_gpus_per_learner=0.5, num_cpus_per_learner=0.5)
    with pytest.raises(GPUNotAvailableError) as info:
        config.build()
    message = str(info.value)
    # The actor was scheduled with the GPU: distcore assigned it GPU 0 (the fake one) and set
    # CUDA_VISIBLE_DEVICES, but torch in that process finds no CUDA.
    assert "num_gpus_per_learner=0.5 asks for a GPU" in message
    assert "learner actor" in message and "GPU ids [0]" in message and "CUDA_VISIBLE_DEVICES='0'" in message
    assert "torch.cuda.is_available() is False" in message
    assert "Traceback" not in message
    # The failed learners were stopped: their GPU (and CPU) shares come back.
    import time

    deadline = time.monotonic() + 30
    while distcore.available_resources().get("GPU", 0.0) < 1.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert distcore.available_resources().get("GPU", 0.0) == pytest.approx(1.0)


@pytest.mark.integration
def test_more_learner_gpus_than_the_cluster_has_fail_at_once(start_cluster) -> None:
    start_cluster(num_cpus=2, num_gpus=1)
    with pytest.raises(GPUNotAvailableError, match=r"num_learners=2 with num_gpus_per_learner=1 need 2 GPUs"):
        _ppo(num_learners=2, num_gpus_per_learner=1, num_cpus_per_learner=0.5).build()
    # Three learners of 0.4 GPU: two fit on one GPU, the third would wait forever.
    config = _ppo(num_learners=3, num_gpus_per_learner=0.4)
    with pytest.raises(GPUNotAvailableError, match=r"GPUs \[1.0\] per node \(2 slots\)"):
        check_cluster_gpus(config)
    check_cluster_gpus(_ppo(num_learners=2, num_gpus_per_learner=0.5))


def test_cpu_learner_keeps_everything_on_the_cpu_without_copies() -> None:
    array = np.arange(6, dtype=np.float32)
    tensor = to_tensor(array)
    assert tensor.device.type == "cpu" and tensor.data_ptr() == array.__array_interface__["data"][0]
    assert to_tensor(array, torch.device("cpu")).data_ptr() == array.__array_interface__["data"][0]
    assert np.array_equal(to_numpy(tensor * 2), array * 2)
    algo = DQNConfig().environment("CartPole-v1").training(num_steps_sampled_before_learning_starts=32,
                                                           train_batch_size=16).build()
    try:
        learner = algo.learner_group.local
        assert learner.device == torch.device("cpu")
        assert all(p.device.type == "cpu" for p in learner.module.parameters())
        info = learner.device_info()
        assert info["device"] == "cpu" and info["param_device"] == "cpu" and info["backend"] is None
    finally:
        algo.stop()


def test_tune_trials_reserve_the_local_learner_gpu() -> None:
    from distcore.rllib.algorithms.ppo import PPO

    assert PPO.default_resource_request(_ppo().to_dict()) is None  # CPU: tune's default, as before
    assert PPO.default_resource_request(_ppo(num_gpus_per_learner=0.5)) == {"CPU": 1.0, "GPU": 0.5}
    assert PPO.default_resource_request({"num_gpus": 1, "num_cpus_for_main_process": 2}) == {"CPU": 2.0, "GPU": 1.0}
    # Learner actors ask for their own GPUs: the trial itself needs none.
    assert PPO.default_resource_request(_ppo(num_learners=1, num_gpus_per_learner=1).to_dict()) is None
    assert PPO.default_resource_request({"num_gpus_per_learner": "bad"}) is None  # validation reports it later


@needs_no_cuda
@pytest.mark.integration
def test_tune_trial_gets_the_gpu_and_reports_no_cuda(start_cluster, tmp_path) -> None:
    from distcore import tune

    start_cluster(num_cpus=2, num_gpus=1)
    grid = tune.Tuner("PPO", param_space=_ppo(num_gpus_per_learner=1).to_dict(),
                      run_config=tune.RunConfig(stop={"training_iteration": 1}, storage_path=str(tmp_path),
                                                verbose=0)).fit()
    assert len(grid.errors) == 1
    message = str(grid.errors[0])
    assert "GPUNotAvailableError" in message or isinstance(grid.errors[0], GPUNotAvailableError)
    # The trial's process was given the GPU (CUDA_VISIBLE_DEVICES='0'), so only CUDA itself is missing.
    assert "local learner's process" in message and "CUDA_VISIBLE_DEVICES='0'" in message


@needs_no_cuda
def test_a_gpu_checkpoint_restores_on_this_cpu_only_machine_with_an_override(tmp_path) -> None:
    import json

    from distcore.rllib import Algorithm

    algo = _ppo().build()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        weights = algo.learner_group.get_weights()["default_policy"]
    finally:
        algo.stop()
    # Make it a checkpoint of a GPU run (what a GPU learner writes: the same CPU files, its config).
    config_file = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_file.read_text())
    config["num_gpus_per_learner"] = 1
    config_file.write_text(json.dumps(config))
    with pytest.raises(GPUNotAvailableError, match=r"Algorithm.from_checkpoint\(path, num_gpus_per_learner=0\)"):
        Algorithm.from_checkpoint(path)
    restored = Algorithm.from_checkpoint(path, num_gpus_per_learner=0)
    try:
        for key, value in restored.learner_group.get_weights()["default_policy"].items():
            np.testing.assert_array_equal(value, weights[key])
        restored.train()
    finally:
        restored.stop()


@needs_no_cuda
def test_cli_evaluates_a_gpu_checkpoint_without_a_gpu(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from distcore.rllib.scripts import main

    ckpt = tmp_path / "ckpt"
    assert main(["train", "--algo", "PPO", "--env", "CartPole-v1", "--max-iterations", "1", "--checkpoint-dir",
                 str(ckpt), "--config", '{"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 1}']) == 0
    config = json.loads((ckpt / "config.json").read_text())
    config["num_gpus_per_learner"] = 1  # as a GPU run writes it
    (ckpt / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--episodes", "2"]) == 0
    assert "episodes 2" in capsys.readouterr().out
    # train on a GPU this machine lacks: a clear error, exit code 2
    assert main(["train", "--algo", "PPO", "--env", "CartPole-v1", "--config", '{"num_gpus_per_learner": 1}']) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
