"""Schedulers as pure state machines, checked against hand-computed decisions."""

from __future__ import annotations

import numpy as np
import pytest

from distcore import tune
from distcore.tune._internal.trial import PAUSED, RUNNING, TERMINATED
from distcore.tune.schedulers import (
    PB2,
    ASHAScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)

C, P, S = TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP


class FakeTrial:
    def __init__(self, trial_id, config=None):
        self.trial_id = trial_id
        self.config = config or {}
        self.status = RUNNING
        self.checkpoint_path = None
        self.pending_exploit = None

    def is_finished(self):
        return self.status == TERMINATED


class FakeRunner:
    def __init__(self, trials):
        self.trials = trials
        self.searcher_finished = False
        self.stopped = []

    def get_trials(self):
        return self.trials

    def get_trial(self, trial_id):
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    def stop_trial(self, trial):
        trial.status = TERMINATED
        self.stopped.append(trial.trial_id)


def r(it, score):
    return {"training_iteration": it, "score": score}


def test_asha_rungs_match_hand_computed_decisions() -> None:
    sched = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    assert [m for m, _ in sched.brackets[0].rungs] == [9, 3, 1]
    trials = {name: FakeTrial(name) for name in "ABCD"}
    runner = FakeRunner(list(trials.values()))
    for t in trials.values():
        sched.on_trial_add(runner, t)
    decide = lambda name, it, score: sched.on_trial_result(runner, trials[name], r(it, score))  # noqa: E731
    assert decide("A", 1, 1.0) == C          # first at rung 1: no cutoff yet
    assert decide("B", 1, 5.0) == C          # cutoff = 1.0
    assert decide("C", 1, 3.0) == S          # cutoff = 66.7th pct of [1, 5] = 3.67
    assert decide("D", 1, 0.5) == S          # cutoff of [1, 5, 3] = 3.67
    assert decide("B", 2, 5.5) == C          # between rungs
    assert decide("B", 3, 6.0) == C          # first at rung 3
    assert decide("A", 2, 1.5) == C
    assert decide("A", 3, 2.0) == S          # rung 3 cutoff = 6.0
    assert decide("B", 9, 7.0) == S          # max_t reached


def test_asha_min_mode_flips_the_sign() -> None:
    sched = ASHAScheduler(metric="score", mode="min", max_t=9, grace_period=1, reduction_factor=3)
    a, b = FakeTrial("a"), FakeTrial("b")
    runner = FakeRunner([a, b])
    sched.on_trial_add(runner, a)
    sched.on_trial_add(runner, b)
    assert sched.on_trial_result(runner, a, r(1, 1.0)) == C
    assert sched.on_trial_result(runner, b, r(1, 2.0)) == S  # higher loss than the cutoff


def test_asha_validates_arguments() -> None:
    with pytest.raises(ValueError, match="reduction_factor"):
        ASHAScheduler(reduction_factor=1)
    with pytest.raises(ValueError, match="max_t"):
        ASHAScheduler(max_t=1, grace_period=5)


def test_hyperband_bracket_shapes_and_successive_halving() -> None:
    sched = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    assert sched.s_max_1 == 3
    assert [sched.bracket_shape(s) for s in (2, 1, 0)] == [(9, 1.0), (5, 3.0), (3, 9.0)]
    trials = [FakeTrial(f"t{i}") for i in range(9)]
    runner = FakeRunner(trials)
    for t in trials:
        sched.on_trial_add(runner, t)
    assert len(sched.brackets) == 1 and sched.brackets[0].filled()
    # every trial runs to r=1 and pauses until the whole bracket has arrived
    for i, t in enumerate(trials[:-1]):
        assert sched.on_trial_result(runner, t, r(1, float(i))) == P
        t.status = PAUSED
    # the last arrival triggers halving: keep the top 9 // 3 = 3 (scores 8, 7, 6)
    assert sched.on_trial_result(runner, trials[8], r(1, 8.0)) == C
    assert sorted(runner.stopped) == [f"t{i}" for i in range(6)]
    assert sched.brackets[0].r == 3
    resumed = []
    while (t := sched.choose_trial_to_run(runner)) is not None:
        t.status = RUNNING
        resumed.append(t.trial_id)
    assert sorted(resumed) == ["t6", "t7"]  # t8 kept running
    assert sched.on_trial_result(runner, trials[6], r(3, 1.0)) == P
    trials[6].status = PAUSED
    assert sched.on_trial_result(runner, trials[7], r(3, 9.0)) == P
    trials[7].status = PAUSED
    assert sched.on_trial_result(runner, trials[8], r(3, 2.0)) == S  # keep 1: t7
    assert runner.stopped[-1] == "t6"
    assert sched.choose_trial_to_run(runner).trial_id == "t7"
    assert sched.on_trial_result(runner, trials[7], r(9, 10.0)) == S  # max_t


def test_hyperband_fills_brackets_in_order() -> None:
    sched = HyperBandScheduler(metric="score", mode="max", max_t=9, reduction_factor=3)
    runner = FakeRunner([])
    for i in range(9 + 5 + 3 + 1):
        t = FakeTrial(f"t{i}")
        runner.trials.append(t)
        sched.on_trial_add(runner, t)
    assert [(b.n0, b.r, len(b.trials)) for b in sched.brackets] == [(9, 1.0, 9), (5, 3.0, 5), (3, 9.0, 3),
                                                                    (9, 1.0, 1)]


def test_median_stopping_rule() -> None:
    sched = MedianStoppingRule(time_attr="training_iteration", metric="score", mode="max", grace_period=1,
                               min_samples_required=2)
    a, b, c, d = (FakeTrial(x) for x in "abcd")
    runner = FakeRunner([a, b, c, d])
    for it in (1, 2, 3):
        assert sched.on_trial_result(runner, a, r(it, 1.0)) == C  # too few others
    for it in (1, 2, 3):
        sched.on_trial_result(runner, b, r(it, 2.0))
    # c at t=1: running means of a and b at t<=1 are 1 and 2 -> median 1.5 > best 0.5
    assert sched.on_trial_result(runner, c, r(1, 0.5)) == S
    assert sched.on_trial_result(runner, d, r(1, 3.0)) == C
    soft = MedianStoppingRule(time_attr="training_iteration", metric="score", mode="max", grace_period=0,
                              min_samples_required=1, hard_stop=False)
    soft.on_trial_result(runner, a, r(1, 5.0))
    assert soft.on_trial_result(runner, b, r(1, 1.0)) == P


def test_pbt_exploits_the_top_quantile_and_mutates_within_the_space() -> None:
    space = {"lr": tune.uniform(0.001, 0.1), "bs": [16, 32, 64], "depth": tune.randint(1, 5)}
    trials = [FakeTrial(f"t{i}", {"lr": 0.01 * (i + 1), "bs": 32, "depth": 2, "fixed": "x"}) for i in range(4)]
    for t in trials:
        t.checkpoint_path = f"/ckpt/{t.trial_id}"
    runner = FakeRunner(trials)
    for seed in range(20):
        pbt = PopulationBasedTraining(metric="score", mode="max", perturbation_interval=2,
                                      hyperparam_mutations=space, quantile_fraction=0.25, seed=seed)
        for t in trials:
            t.pending_exploit = None
            pbt.on_trial_add(runner, t)
        for i, t in enumerate(trials):  # first interval not reached yet
            assert pbt.on_trial_result(runner, t, r(1, float(i))) == C
        for i, t in enumerate(trials[1:], start=1):
            assert pbt.on_trial_result(runner, t, r(2, float(i))) == C  # not in the lower quantile
        # t0 has the lowest score: it copies t3's checkpoint and an explored version of t3's config
        assert pbt.on_trial_result(runner, trials[0], r(2, 0.0)) == P
        exploit = trials[0].pending_exploit
        assert exploit["source"] == "t3" and exploit["checkpoint"] == "/ckpt/t3"
        new = exploit["config"]
        assert 0.001 <= new["lr"] <= 0.1 and new["bs"] in (16, 32, 64) and 1 <= new["depth"] <= 4
        assert new["fixed"] == "x"
        assert isinstance(new["depth"], int)


def test_pbt_requires_mutations_and_rejects_searchers() -> None:
    with pytest.raises(ValueError, match="hyperparam_mutations"):
        PopulationBasedTraining(metric="s", mode="max")
    from distcore.tune.search import Searcher

    class S(Searcher):
        def suggest(self, trial_id):
            return {}

    with pytest.raises(ValueError, match="cannot be combined"):
        tune.Tuner(lambda c: None, tune_config=tune.TuneConfig(
            search_alg=S(), scheduler=PopulationBasedTraining(metric="s", mode="max", hyperparam_mutations={"a": [1]})))


def test_schedulers_that_pause_need_checkpointing_classes() -> None:
    class NoSave(tune.Trainable):
        def step(self):
            return {"s": 1}

    with pytest.raises(ValueError, match="does not implement save_checkpoint"):
        tune.Tuner(NoSave, tune_config=tune.TuneConfig(
            metric="s", mode="max", scheduler=HyperBandScheduler()))


def test_pb2_explores_within_bounds() -> None:
    bounds = {"lr": [1e-4, 0.1], "momentum": [0.5, 0.99]}
    trials = [FakeTrial(f"t{i}", {"lr": 0.01 * (i + 1), "momentum": 0.9}) for i in range(4)]
    for t in trials:
        t.checkpoint_path = f"/ckpt/{t.trial_id}"
    runner = FakeRunner(trials)
    pb2 = PB2(metric="score", mode="max", perturbation_interval=2, hyperparam_bounds=bounds, seed=0)
    for t in trials:
        pb2.on_trial_add(runner, t)
    rng = np.random.default_rng(0)
    exploits = 0
    for it in range(1, 30):
        for i, t in enumerate(trials):
            t.pending_exploit = None
            decision = pb2.on_trial_result(runner, t, r(it, i * it + rng.normal()))
            if decision == P:
                exploits += 1
                new = t.pending_exploit["config"]
                assert 1e-4 <= new["lr"] <= 0.1 and 0.5 <= new["momentum"] <= 0.99
    assert exploits > 5
    with pytest.raises(ValueError, match="lower < upper"):
        PB2(metric="s", mode="max", hyperparam_bounds={"lr": [1, 0]})


def test_scheduler_state_round_trips(tmp_path) -> None:
    sched = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    a, b = FakeTrial("a"), FakeTrial("b")
    runner = FakeRunner([a, b])
    sched.on_trial_add(runner, a)
    sched.on_trial_add(runner, b)
    sched.on_trial_result(runner, a, r(1, 5.0))
    path = str(tmp_path / "sched.pkl")
    sched.save(path)
    fresh = ASHAScheduler(metric="score", mode="max", max_t=9, grace_period=1, reduction_factor=3)
    fresh.restore(path)
    assert fresh.on_trial_result(runner, b, r(1, 1.0)) == S  # the rung still holds a's 5.0
