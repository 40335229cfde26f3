"""``distcore-rllib train`` and ``distcore-rllib evaluate``."""

from __future__ import annotations

import json

import pytest

from distcore.rllib.scripts import main


def test_train_then_evaluate_a_checkpoint(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(tmp_path / "ckpt")
    config = {"train_batch_size": 200, "minibatch_size": 100, "num_epochs": 1,
              "model_config": {"fcnet_hiddens": [16]}}
    code = main(["train", "--algo", "PPO", "--env", "CartPole-v1", "--max-iterations", "2",
                 "--config", json.dumps(config), "--checkpoint-dir", ckpt, "--seed", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "iter    2  steps      400" in out and f"checkpoint: {ckpt}" in out
    assert main(["evaluate", ckpt, "--episodes", "2"]) == 0
    assert "episodes 2" in capsys.readouterr().out


def test_stop_reward_not_reached_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--algo", "PPO", "--env", "CartPole-v1", "--max-iterations", "1", "--stop", "1000",
                 "--config", '{"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 1}'])
    assert code == 1
    assert "did not reach the stop reward" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--algo", "XYZ", "--env", "CartPole-v1"], "unknown algorithm 'XYZ'"),
    (["train", "--algo", "PPO", "--env", "CartPole-v1", "--config", "[1]"], "must be a JSON object"),
    (["train", "--algo", "PPO", "--env", "CartPole-v1", "--config", '{"nope": 1}'], "unknown config key 'nope'"),
    (["train", "--algo", "PPO", "--env", "Nope-v0"], "is not registered"),
    (["evaluate", "/nonexistent/ckpt"], "not an rllib checkpoint"),
])
def test_bad_input_gets_a_clear_error(argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
