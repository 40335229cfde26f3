"""Search-space primitives and BasicVariantGenerator (grid x random, points_to_evaluate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distcore import tune
from distcore.tune._internal import variants
from distcore.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Repeater, Searcher


def draw(domain, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return [domain.sample(None, rng) for _ in range(n)]


def test_float_samplers_stay_in_bounds_and_quantize() -> None:
    xs = draw(tune.uniform(2, 5))
    assert min(xs) >= 2 and max(xs) <= 5 and abs(np.mean(xs) - 3.5) < 0.1
    qs = draw(tune.quniform(0, 1, 0.25))
    assert set(qs) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    logs = draw(tune.loguniform(1e-4, 1e-1))
    assert min(logs) >= 1e-4 and max(logs) <= 1e-1
    # log-uniform: about a third of the mass in each decade
    assert 0.25 < np.mean([x < 1e-3 for x in logs]) < 0.42
    qlogs = draw(tune.qloguniform(1, 100, 5))
    assert all(math.isclose(x / 5, round(x / 5)) for x in qlogs)
    normal = draw(tune.randn(10, 2))
    assert abs(np.mean(normal) - 10) < 0.2 and abs(np.std(normal) - 2) < 0.2
    qn = draw(tune.qrandn(0, 1, 0.5))
    assert all(math.isclose(x * 2, round(x * 2)) for x in qn)


def test_integer_samplers() -> None:
    ints = draw(tune.randint(0, 3))
    assert set(ints) == {0, 1, 2}  # upper excluded
    qints = draw(tune.qrandint(0, 10, 5))
    assert set(qints) == {0, 5, 10}  # upper included
    logints = draw(tune.lograndint(1, 1000))
    assert min(logints) >= 1 and max(logints) < 1000 and all(isinstance(x, int) for x in logints)
    assert np.mean([x < 10 for x in logints]) > 0.2
    assert set(draw(tune.choice(["a", "b"]))) == {"a", "b"}


@pytest.mark.parametrize("make, error", [
    (lambda: tune.uniform(3, 1), ValueError),
    (lambda: tune.loguniform(0, 1), ValueError),
    (lambda: tune.randint(3, 3), ValueError),
    (lambda: tune.choice([]), ValueError),
    (lambda: tune.choice("abc"), TypeError),
    (lambda: tune.grid_search(5), TypeError),
    (lambda: tune.sample_from(3), TypeError),
    (lambda: tune.randn(0, -1), ValueError),
])
def test_bad_domains_raise_clear_errors(make, error) -> None:
    with pytest.raises(error):
        make()


def generate(space, num_samples=1, **kwargs):
    gen = BasicVariantGenerator(**kwargs)
    gen.set_search_properties(None, None, space, num_samples=num_samples)
    out = []
    while True:
        config = gen.suggest(f"t{len(out)}")
        if config == Searcher.FINISHED:
            return out
        out.append(config)


def test_grid_crossed_with_random_samples() -> None:
    space = {"a": tune.grid_search([1, 2, 3]), "nested": {"b": tune.grid_search(["x", "y"]),
                                                           "c": tune.uniform(0, 1)}, "const": 7}
    configs = generate(space, num_samples=2, random_state=1)
    assert len(configs) == 12
    pairs = [(c["a"], c["nested"]["b"]) for c in configs]
    assert sorted(pairs[:6]) == sorted((a, b) for a in (1, 2, 3) for b in "xy")
    assert sorted(pairs[6:]) == sorted(pairs[:6])
    assert all(c["const"] == 7 and 0 <= c["nested"]["c"] <= 1 for c in configs)
    assert len({c["nested"]["c"] for c in configs}) == 12  # fresh random values per variant


def test_sample_from_with_dependencies_and_lists() -> None:
    space = {
        "a": tune.randint(1, 10),
        # depends on "b", itself a sample_from depending on "a": needs two passes
        "c": tune.sample_from(lambda spec: spec.config.b + 100),
        "b": tune.sample_from(lambda spec: spec.config["a"] * 2),
        "layers": [tune.choice([8, 16]), {"width": tune.sample_from(lambda spec: spec.config.a)}],
    }
    for config in generate(space, num_samples=20, random_state=0):
        assert config["b"] == 2 * config["a"] and config["c"] == config["b"] + 100
        assert config["layers"][0] in (8, 16) and config["layers"][1]["width"] == config["a"]


def test_sample_from_cycle_is_reported() -> None:
    space = {"x": tune.sample_from(lambda spec: spec.config.y), "y": tune.sample_from(lambda spec: spec.config.x)}
    with pytest.raises(ValueError, match="cycle"):
        generate(space)


def test_points_to_evaluate_come_first_and_count_toward_num_samples() -> None:
    space = {"x": tune.uniform(0, 1), "y": tune.choice([1, 2])}
    configs = generate(space, num_samples=4, points_to_evaluate=[{"x": 0.5, "y": 2}, {"x": 0.25}], random_state=0)
    assert len(configs) == 4
    assert configs[0] == {"x": 0.5, "y": 2}
    assert configs[1]["x"] == 0.25 and configs[1]["y"] in (1, 2)


def test_random_state_makes_variants_reproducible() -> None:
    space = {"x": tune.uniform(0, 1)}
    assert generate(space, 5, random_state=3) == generate(space, 5, random_state=3)
    assert generate(space, 5, random_state=3) != generate(space, 5, random_state=4)


def test_constant_grid_search_shares_random_values_across_the_grid() -> None:
    space = {"g": tune.grid_search([1, 2, 3]), "x": tune.uniform(0, 1)}
    configs = generate(space, num_samples=2, constant_grid_search=True, random_state=0)
    assert len({c["x"] for c in configs[:3]}) == 1 and len({c["x"] for c in configs}) == 2


def test_flatten() -> None:
    assert variants.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a/b": 1, "a/c/d": 2, "e": 3}


class _Counter(Searcher):
    def __init__(self) -> None:
        super().__init__(metric="m", mode="max")
        self.n = 0
        self.completed: list[tuple[str, dict | None]] = []

    def suggest(self, trial_id):
        self.n += 1
        return {"i": self.n}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, result))


def test_concurrency_limiter_caps_live_trials() -> None:
    limiter = ConcurrencyLimiter(_Counter(), max_concurrent=2)
    assert limiter.suggest("a") == {"i": 1} and limiter.suggest("b") == {"i": 2}
    assert limiter.suggest("c") is None
    limiter.on_trial_complete("a", {"m": 1})
    assert limiter.suggest("c") == {"i": 3}


def test_concurrency_limiter_batch_waits_for_the_whole_batch() -> None:
    limiter = ConcurrencyLimiter(_Counter(), max_concurrent=2, batch=True)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.on_trial_complete("a", {"m": 1})
    assert limiter.suggest("c") is None
    limiter.on_trial_complete("b", {"m": 1})
    assert limiter.suggest("c") == {"i": 3}


def test_repeater_repeats_and_reports_the_mean() -> None:
    inner = _Counter()
    rep = Repeater(inner, repeat=3)
    configs = [rep.suggest(f"t{i}") for i in range(4)]
    assert [c["i"] for c in configs] == [1, 1, 1, 2]
    assert [c["__trial_index__"] for c in configs] == [0, 1, 2, 0]
    for i, value in enumerate([1.0, 2.0, 6.0]):
        rep.on_trial_complete(f"t{i}", {"m": value})
    assert inner.completed == [("t0", {"m": 3.0})]


def test_searcher_save_and_restore(tmp_path) -> None:
    limiter = ConcurrencyLimiter(_Counter(), max_concurrent=3)
    limiter.suggest("a")
    limiter.suggest("b")
    limiter.save(str(tmp_path / "s.pkl"))
    fresh = ConcurrencyLimiter(_Counter(), max_concurrent=3)
    fresh.restore(str(tmp_path / "s.pkl"))
    assert fresh.suggest("c") == {"i": 3}
    assert fresh.suggest("d") is None
