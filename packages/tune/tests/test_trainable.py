"""The Class API (tune.Trainable) and the registry."""

from __future__ import annotations

import os

import pytest

from distcore import tune
from distcore.tune.registry import get_env_creator, get_trainable_cls


class Quadratic(tune.Trainable):
    def setup(self, config):
        self.x = config["x"]
        self.cleaned = False

    def step(self):
        self.x -= 0.5 * (self.x - 3)
        return {"loss": (self.x - 3) ** 2, "x": self.x}

    def save_checkpoint(self, checkpoint_dir):
        return {"x": self.x}

    def load_checkpoint(self, checkpoint):
        self.x = checkpoint["x"]

    def reset_config(self, new_config):
        self.x = new_config["x"]
        return True

    def cleanup(self):
        self.cleaned = True


class DirState(tune.Trainable):
    def setup(self, config):
        self.value = config.get("value", 0)

    def step(self):
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.txt"), "w") as f:
            f.write(str(self.value))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.txt")) as f:
            self.value = int(f.read())


def test_train_returns_metrics_and_standard_fields() -> None:
    t = Quadratic({"x": 7.0}, trial_id="abc")
    r1 = t.train()
    r2 = t.train()
    assert r1["x"] == 5.0 and r2["x"] == 4.0
    assert (r1["training_iteration"], r2["training_iteration"]) == (1, 2)
    for key in ("time_this_iter_s", "time_total_s", "timestamp", "trial_id", "done", "pid",
                "hostname", "node_ip", "iterations_since_restore", "time_since_restore"):
        assert key in r2, key
    assert r2["trial_id"] == "abc" and r2["done"] is False
    assert r2["time_total_s"] >= r1["time_total_s"]
    assert t.iteration == 2
    t.stop()
    assert t.cleaned


def test_dict_checkpoint_save_and_restore(tmp_path) -> None:
    t = Quadratic({"x": 7.0})
    t.train()
    checkpoint = t.save(str(tmp_path / "ck"))
    t.train()
    fresh = Quadratic({"x": 100.0})
    fresh.restore(checkpoint)
    assert fresh.x == 5.0 and fresh.iteration == 1
    assert fresh.train()["training_iteration"] == 2
    assert fresh.train()["iterations_since_restore"] == 2


def test_directory_checkpoint_save_and_restore(tmp_path) -> None:
    t = DirState({"value": 10})
    t.train()
    path = t.save(str(tmp_path / "ck")).path
    fresh = DirState({})
    fresh.restore(path)
    assert fresh.value == 11 and fresh.train()["value"] == 12


def test_reset_reuses_the_object_for_a_new_config() -> None:
    t = Quadratic({"x": 7.0})
    t.train()
    assert t.reset({"x": 1.0}, trial_id="new")
    assert t.iteration == 0 and t.config == {"x": 1.0} and t.trial_id == "new"
    assert t.train()["x"] == 2.0
    assert not DirState({}).reset({"value": 1})
    assert Quadratic.supports_reset() and not DirState.supports_reset()
    assert Quadratic.implements_checkpointing()


def test_step_must_return_a_dict() -> None:
    class Bad(tune.Trainable):
        def step(self):
            return 3

    with pytest.raises(TypeError, match="must return a dict"):
        Bad({}).train()
    with pytest.raises(NotImplementedError, match="step"):
        tune.Trainable({}).train()


def test_registry_round_trip_and_errors() -> None:
    tune.register_trainable("quad", Quadratic)
    assert get_trainable_cls("quad") is Quadratic

    def creator(env_config):
        return ("env", env_config)

    tune.register_env("my_env", creator)
    assert get_env_creator("my_env")({"a": 1}) == ("env", {"a": 1})
    assert get_env_creator("missing") is None
    with pytest.raises(ValueError, match="unknown trainable 'nope'.*register_trainable"):
        get_trainable_cls("nope")
    with pytest.raises(TypeError):
        tune.register_env("x", 3)
