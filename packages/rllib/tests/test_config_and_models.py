"""AlgorithmConfig validation, preprocessing of every supported space, action distributions, modules."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from distcore.rllib import AlgorithmConfigError, RLModule, RLModuleSpec
from distcore.rllib._internal.default_modules import (
    DefaultActorCriticModule,
    DefaultQModule,
    DefaultSACModule,
)
from distcore.rllib._internal.distributions import (
    Categorical,
    Gaussian,
    MultiCategorical,
    SquashedGaussian,
    make_distribution,
)
from distcore.rllib._internal.spaces import (
    UnsupportedSpaceError,
    flat_size,
    preprocess_batch,
    preprocess_one,
)
from distcore.rllib.algorithms.dqn import DQNConfig
from distcore.rllib.algorithms.ppo import PPOConfig


def test_builder_chains_and_round_trips_through_a_dict() -> None:
    config = (PPOConfig().environment("CartPole-v1", env_config={"a": 1})
              .env_runners(num_env_runners=2, num_envs_per_env_runner=4, rollout_fragment_length=16)
              .learners(num_learners=0).training(lr=1e-3, clip_param=0.1, train_batch_size=256, minibatch_size=64)
              .framework("torch").rl_module(model_config={"fcnet_hiddens": [32]}).debugging(seed=3)
              .evaluation(evaluation_interval=2, evaluation_duration=3))
    config.validate()
    again = PPOConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.clip_param == 0.1 and again.num_envs_per_env_runner == 4 and again.seed == 3
    assert config.get_rollout_fragment_length() == 16
    assert PPOConfig().training(train_batch_size=1000).env_runners(
        num_env_runners=2, num_envs_per_env_runner=5).get_rollout_fragment_length() == 100


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c.environment(None), "no env"),
    (lambda c: c.environment("NoSuchEnv-v9"), "is not registered"),
    (lambda c: c.env_runners(num_env_runners=-1), "num_env_runners must be an int >= 0"),
    (lambda c: c.env_runners(batch_mode="whole"), "batch_mode must be one of"),
    (lambda c: c.env_runners(rollout_fragment_length=0), "rollout_fragment_length"),
    (lambda c: c.training(minibatch_size=9000), r"minibatch_size \(9000\) must be <= train_batch_size"),
    (lambda c: c.training(lr=-1.0), "lr must be > 0"),
    (lambda c: c.training(gamma=1.5), "gamma must be in"),
    (lambda c: c.training(lambda_=2.0), "lambda_ must be in"),
    (lambda c: c.learners(num_gpus_per_learner=-1), "num_gpus_per_learner must be a number >= 0"),
    (lambda c: c.multi_agent(policies={"a", "b"}), "needs a policy_mapping_fn"),
])
def test_validation_names_the_bad_setting(mutate, message) -> None:
    config = PPOConfig().environment("CartPole-v1")
    with pytest.raises(AlgorithmConfigError, match=message):
        mutate(config)
        config.validate()


def test_unknown_training_keys_and_frameworks_fail_clearly() -> None:
    with pytest.raises(AlgorithmConfigError, match=r"unknown setting\(s\) \['learning_rate'\]"):
        PPOConfig().training(learning_rate=0.1)
    with pytest.raises(AlgorithmConfigError, match="framework 'tf2' is not supported"):
        PPOConfig().framework("tf2")
    with pytest.raises(AlgorithmConfigError, match="n_step must be"):
        DQNConfig().environment("CartPole-v1").training(n_step=0).validate()


def test_preprocessing_of_every_supported_space() -> None:
    space = gym.spaces.Dict({
        "pos": gym.spaces.Box(-1, 1, (2,)),
        "tag": gym.spaces.Discrete(3),
        "multi": gym.spaces.MultiDiscrete([2, 3]),
        "pair": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (1,)))),
    })
    assert flat_size(space) == 2 + 3 + 5 + 3
    obs = {"multi": np.array([1, 2]), "pair": (1, np.array([0.5], dtype=np.float32)),
           "pos": np.array([0.1, -0.2], dtype=np.float32), "tag": 2}
    out = preprocess_one(space, obs)
    # Dict keys in gymnasium's (sorted) order: multi, pair, pos, tag.
    expected = [0, 1, 0, 0, 1] + [0, 1, 0.5] + [0.1, -0.2] + [0, 0, 1]
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    assert preprocess_batch(gym.spaces.Discrete(4, start=1), np.array([1, 4])).tolist() == [[1, 0, 0, 0],
                                                                                            [0, 0, 0, 1]]
    image = gym.spaces.Box(0, 255, (8, 8, 3), dtype=np.uint8)
    assert preprocess_batch(image, np.zeros((2, 8, 8, 3))).shape == (2, 8, 8, 3)
    with pytest.raises(UnsupportedSpaceError, match="is not supported"):
        flat_size(gym.spaces.Graph(gym.spaces.Box(0, 1, (1,)), None))


def test_distributions_logp_entropy_kl_against_closed_forms() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    cat = Categorical(logits)
    assert float(cat.logp(torch.tensor([2]))) == pytest.approx(math.log(0.5), rel=1e-5)
    h = -(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))
    assert float(cat.entropy()) == pytest.approx(h, rel=1e-5)
    assert float(cat.kl(cat)) == pytest.approx(0.0, abs=1e-6)
    multi = MultiCategorical(torch.zeros(1, 5), [2, 3])
    assert float(multi.logp(torch.tensor([[1, 2]]))) == pytest.approx(math.log(0.5) + math.log(1 / 3), rel=1e-5)
    gauss = Gaussian(torch.tensor([[1.0, 0.0]]))  # mean 1, log_std 0
    assert float(gauss.logp(torch.tensor([[1.0]]))) == pytest.approx(-0.5 * math.log(2 * math.pi), rel=1e-5)
    other = Gaussian(torch.tensor([[0.0, 0.0]]))
    assert float(gauss.kl(other)) == pytest.approx(0.5, rel=1e-5)
    box = gym.spaces.Box(-2.0, 2.0, (1,))
    squashed = make_distribution(box, torch.tensor([[0.3, -1.0]]), squash=True)
    assert isinstance(squashed, SquashedGaussian)
    torch.manual_seed(0)
    actions, logp = squashed.rsample_with_logp()
    assert torch.all(actions.abs() <= 2.0)
    np.testing.assert_allclose(squashed.logp(actions).numpy(), logp.numpy(), rtol=1e-3, atol=1e-3)
    assert float(squashed.deterministic_sample()) == pytest.approx(2.0 * math.tanh(0.3), rel=1e-5)


def test_default_modules_shapes() -> None:
    obs = gym.spaces.Box(-1, 1, (4,))
    ac = DefaultActorCriticModule(obs, gym.spaces.Discrete(2), {"fcnet_hiddens": [16, 16]})
    batch = {"obs": torch.zeros(5, 4)}
    assert ac.forward_inference(batch)["action_dist_inputs"].shape == (5, 2)
    assert ac.compute_values(batch).shape == (5,)
    shared = DefaultActorCriticModule(obs, gym.spaces.Box(-1, 1, (3,)), {"vf_share_layers": True})
    out = shared.forward_train(batch)
    assert out["action_dist_inputs"].shape == (5, 6) and out["vf_preds"].shape == (5,)
    q = DefaultQModule(obs, gym.spaces.Discrete(3), {"dueling": True})
    assert q.forward_exploration({**batch, "epsilon": 1.0})["actions"].shape == (5,)
    sac = DefaultSACModule(obs, gym.spaces.Box(-2, 2, (1,)), {})
    q1, q2 = sac.q(batch["obs"], torch.zeros(5, 1))
    assert q1.shape == q2.shape == (5,)
    cnn = DefaultActorCriticModule(gym.spaces.Box(0, 1, (16, 16, 3)), gym.spaces.Discrete(4), {})
    assert cnn.forward_inference({"obs": torch.zeros(2, 16, 16, 3)})["action_dist_inputs"].shape == (2, 4)
    with pytest.raises(TypeError, match="DQN needs a Discrete action space"):
        DefaultQModule(obs, gym.spaces.Box(-1, 1, (1,)), {})


def test_module_spec_rejects_non_modules_and_state_round_trips() -> None:
    with pytest.raises(TypeError, match="must subclass RLModule"):
        RLModuleSpec(module_class=dict, observation_space=gym.spaces.Discrete(2),
                     action_space=gym.spaces.Discrete(2)).build()
    spec = RLModuleSpec(module_class=DefaultActorCriticModule, observation_space=gym.spaces.Box(-1, 1, (3,)),
                        action_space=gym.spaces.Discrete(2), model_config={"fcnet_hiddens": [8]})
    a, b = spec.build(), spec.build()
    b.set_state(a.get_state())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert isinstance(a, RLModule)
