"""Optuna and HyperOpt searchers find the optimum of a noisy quadratic; space
conversion; save/restore; and one run through the Tuner."""

from __future__ import annotations

import numpy as np
import pytest

from distcore import tune
from distcore.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from distcore.tune.search.hyperopt import HyperOptSearch
from distcore.tune.search.optuna import OptunaSearch

SPACE = {"x": tune.uniform(-10, 10), "nested": {"y": tune.uniform(-10, 10)}, "const": 5}


def objective(config, rng):
    return (config["x"] - 3) ** 2 + (config["nested"]["y"] + 1) ** 2 + rng.normal(0, 0.01)


def drive(searcher, n, space=SPACE, seed=0):
    searcher.set_search_properties("loss", "min", space, num_samples=n)
    rng = np.random.default_rng(seed)
    best = float("inf")
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        assert isinstance(config, dict)
        full = dict(space)
        full.update(config)  # the Tuner merges suggestions over the constants the same way
        configs.append(full)
        loss = objective(full, rng)
        best = min(best, loss)
        searcher.on_trial_complete(f"t{i}", {"loss": loss})
    return best, configs


@pytest.mark.parametrize("make", [
    lambda: OptunaSearch(seed=0),
    lambda: HyperOptSearch(random_state_seed=0, n_initial_points=8),
], ids=["optuna", "hyperopt"])
def test_searcher_finds_the_optimum_region(make) -> None:
    best, configs = drive(make(), 60)
    assert best < 1.0, best  # within radius 1 of (3, -1)
    for c in configs:
        assert -10 <= c["x"] <= 10 and -10 <= c["nested"]["y"] <= 10
    # random search with the same budget is far less likely to get there
    random_best, _ = drive(_Random(), 60)
    assert best < random_best


class _Random(Searcher):
    def __init__(self):
        super().__init__()
        self.rng = np.random.default_rng(0)

    def suggest(self, trial_id):
        return {"x": self.rng.uniform(-10, 10), "nested": {"y": self.rng.uniform(-10, 10)}}


def test_optuna_space_conversion_and_types() -> None:
    space = {"f": tune.quniform(0, 1, 0.25), "lf": tune.loguniform(1e-3, 1), "i": tune.randint(0, 3),
             "qi": tune.qrandint(0, 10, 5), "li": tune.lograndint(1, 100), "c": tune.choice(["a", "b"])}
    searcher = OptunaSearch(seed=1)
    searcher.set_search_properties("m", "max", space)
    for i in range(30):
        config = searcher.suggest(str(i))
        assert config["f"] in (0, 0.25, 0.5, 0.75, 1.0)
        assert 1e-3 <= config["lf"] <= 1 and config["i"] in (0, 1, 2) and config["qi"] in (0, 5, 10)
        assert 1 <= config["li"] < 100 and config["c"] in ("a", "b")
        searcher.on_trial_complete(str(i), {"m": 1.0})
    with pytest.raises(ValueError, match="grid_search"):
        OptunaSearch().set_search_properties("m", "max", {"g": tune.grid_search([1, 2])})
    with pytest.raises(ValueError, match="randn"):
        OptunaSearch().set_search_properties("m", "max", {"g": tune.randn()})


def test_optuna_define_by_run_and_multi_objective() -> None:
    def space(trial):
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("a_value", 0, 1)
        return {"fixed": 1}

    searcher = OptunaSearch(space=space, metric=["m1", "m2"], mode=["max", "min"], seed=0)
    searcher.set_search_properties(None, None, {})
    for i in range(10):
        config = searcher.suggest(str(i))
        assert config["fixed"] == 1 and ("a_value" in config) == (config["kind"] == "a")
        searcher.on_trial_complete(str(i), {"m1": i, "m2": -i})
    assert len(searcher.study.best_trials) >= 1
    assert searcher.study.directions[1].name == "MINIMIZE"


def test_optuna_points_to_evaluate_and_failures() -> None:
    searcher = OptunaSearch(points_to_evaluate=[{"x": 1.5}], seed=0)
    searcher.set_search_properties("loss", "min", {"x": tune.uniform(0, 5)})
    assert searcher.suggest("a") == {"x": 1.5}
    searcher.on_trial_complete("a", None, error=True)
    assert searcher.study.trials[0].state.name == "FAIL"


def test_hyperopt_points_and_choice_space() -> None:
    space = {"act": tune.choice(["relu", "tanh"]), "n": tune.randint(1, 4), "lr": tune.loguniform(1e-4, 1e-1)}
    searcher = HyperOptSearch(points_to_evaluate=[{"act": "tanh", "n": 2, "lr": 0.01}], random_state_seed=0)
    searcher.set_search_properties("loss", "min", space)
    assert searcher.suggest("p") == {"act": "tanh", "n": 2, "lr": 0.01}
    searcher.on_trial_complete("p", {"loss": 1.0})
    for i in range(15):
        config = searcher.suggest(str(i))
        assert config["act"] in ("relu", "tanh") and isinstance(config["n"], int) and 1 <= config["n"] <= 3
        assert 1e-4 <= config["lr"] <= 1e-1
        searcher.on_trial_complete(str(i), {"loss": config["lr"]})


@pytest.mark.parametrize("make", [lambda: OptunaSearch(seed=0), lambda: HyperOptSearch(random_state_seed=0)],
                         ids=["optuna", "hyperopt"])
def test_searcher_save_and_restore_continue_the_search(make, tmp_path) -> None:
    first = make()
    drive(first, 12)
    path = str(tmp_path / "state.pkl")
    first.save(path)
    restored = make()
    restored.restore(path)
    assert isinstance(restored.suggest("next"), dict)
    if isinstance(restored, OptunaSearch):
        assert len(restored.study.trials) == 13


@pytest.mark.integration
def test_optuna_through_the_tuner(cluster, tmp_path) -> None:
    def trainable(config):
        tune.report({"loss": (config["x"] - 3) ** 2 + (config["nested"]["y"] + 1) ** 2, "const": config["const"]})

    grid = tune.Tuner(trainable, param_space=SPACE, tune_config=tune.TuneConfig(
        metric="loss", mode="min", num_samples=30, search_alg=ConcurrencyLimiter(OptunaSearch(seed=0), 2)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="optuna", verbose=0)).fit()
    assert len(grid) == 30
    best = grid.get_best_result()
    assert best.metrics["loss"] < 5.0 and best.config["const"] == 5 and best.metrics["const"] == 5


def test_basic_variant_generator_rejects_bad_points() -> None:
    with pytest.raises(TypeError):
        BasicVariantGenerator(points_to_evaluate={"x": 1})
