"""GAE, V-trace, n-step returns and prioritized replay against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from distcore.rllib.utils.postprocessing import compute_gae, compute_n_step, compute_vtrace
from distcore.rllib.utils.replay_buffers import PrioritizedReplayBuffer, ReplayBuffer


def test_gae_matches_hand_computation_across_a_termination_and_a_fragment_end() -> None:
    g, lam = 0.9, 0.8
    r = np.array([1.0, 2.0, 3.0, 4.0])
    v = np.array([0.5, 1.0, 1.5, 2.0])
    nv = np.array([1.0, 1.5, 9.0, 3.0])  # V(next obs); step 2 terminates so 9.0 must be ignored
    term = np.array([0, 0, 1, 0])
    seg = np.array([0, 0, 1, 1])  # step 3 is a one-step segment cut by the fragment end
    adv, targets = compute_gae(r, v, nv, term, seg, g, lam)
    d2 = 3.0 - 1.5
    d1 = 2.0 + g * 1.5 - 1.0
    d0 = 1.0 + g * 1.0 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    a3 = 4.0 + g * 3.0 - 2.0
    np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(targets, np.array([a0, a1, a2, a3]) + v, rtol=1e-6)


def test_gae_truncation_bootstraps_from_the_final_observation() -> None:
    adv, _ = compute_gae(np.array([1.0]), np.array([0.0]), np.array([10.0]), np.array([0]), np.array([1]), 0.5, 1.0)
    assert adv[0] == pytest.approx(1.0 + 0.5 * 10.0)


def test_vtrace_on_policy_equals_n_step_td_lambda_one() -> None:
    # Same behaviour and target policy: rho = c = 1, vs = discounted return with a bootstrap.
    g = 0.9
    r = np.array([1.0, 0.0, 2.0])
    v = np.array([0.3, 0.2, 0.1])
    nv = np.array([0.2, 0.1, 5.0])
    logp = np.log(np.array([0.5, 0.5, 0.5]))
    vs, pg = compute_vtrace(logp, logp, r, v, nv, np.zeros(3), np.array([0, 0, 1]), g)
    expected = [1.0 + g * 0.0 + g * g * 2.0 + g ** 3 * 5.0, 0.0 + g * 2.0 + g * g * 5.0, 2.0 + g * 5.0]
    np.testing.assert_allclose(vs, expected, rtol=1e-6)
    np.testing.assert_allclose(pg, [r[0] + g * vs[1] - v[0], r[1] + g * vs[2] - v[1], r[2] + g * 5.0 - v[2]],
                               rtol=1e-6)


def test_vtrace_clips_importance_weights() -> None:
    g = 0.5
    behaviour = np.log(np.array([0.25, 0.5]))
    target = np.log(np.array([0.75, 0.25]))  # rho = 3 (clipped to 1), 0.5
    r, v, nv = np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([0.0, 2.0])
    vs, pg = compute_vtrace(behaviour, target, r, v, nv, np.zeros(2), np.array([0, 1]), g)
    delta1 = 0.5 * (1.0 + g * 2.0 - 0.0)
    delta0 = 1.0 * (1.0 + g * 0.0 - 0.0)
    vs1 = 0.0 + delta1
    vs0 = 0.0 + delta0 + g * 1.0 * delta1  # c0 = min(1, 3) = 1
    np.testing.assert_allclose(vs, [vs0, vs1], rtol=1e-6)
    np.testing.assert_allclose(pg, [1.0 * (1.0 + g * vs1 - 0.0), 0.5 * (1.0 + g * 2.0)], rtol=1e-6)


def test_n_step_returns_stop_at_segment_ends() -> None:
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    term = np.array([0, 1, 0, 0, 0])
    seg = np.array([0, 1, 0, 0, 1])
    rewards, last, terminated, disc = compute_n_step(r, term, seg, 3, 0.5)
    np.testing.assert_allclose(rewards, [1 + 0.5 * 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5])
    assert last.tolist() == [1, 1, 4, 4, 4]
    assert terminated.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(disc, [0.25, 0.5, 0.125, 0.25, 0.5])
    with pytest.raises(ValueError, match="n_step must be >= 1"):
        compute_n_step(r, term, seg, 0, 0.5)


def test_prioritized_replay_probabilities_and_weights() -> None:
    buf = PrioritizedReplayBuffer(4, alpha=0.5, seed=0)
    buf.add({"x": np.arange(4, dtype=np.float32)})
    buf.update_priorities(np.arange(4), np.array([1.0, 4.0, 9.0, 16.0]))
    # p^alpha = 1, 2, 3, 4 -> P = 0.1, 0.2, 0.3, 0.4
    counts = np.zeros(4)
    for _ in range(400):
        out = buf.sample(10, beta=1.0)
        np.add.at(counts, out["batch_indexes"], 1)
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.2, 0.3, 0.4], atol=0.02)
    out = buf.sample(4, beta=1.0)
    probs = (out["batch_indexes"] + 1) / 10.0
    expected = (4 * probs) ** -1.0 / ((4 * 0.1) ** -1.0)
    np.testing.assert_allclose(out["weights"], expected, rtol=1e-6)
    assert out["x"].tolist() == out["batch_indexes"].astype(np.float32).tolist()


def test_prioritized_replay_new_items_get_the_max_priority_and_bad_priorities_fail() -> None:
    buf = PrioritizedReplayBuffer(8, alpha=1.0, seed=1)
    buf.add({"x": np.zeros(2)})
    buf.update_priorities(np.array([0, 1]), np.array([5.0, 1.0]))
    buf.add({"x": np.ones(1)})
    assert buf._sum.tree[buf._sum.size + 2] == pytest.approx(5.0)
    assert buf._sum.root() == pytest.approx(11.0)
    with pytest.raises(ValueError, match="priorities must be > 0"):
        buf.update_priorities(np.array([0]), np.array([0.0]))


def test_uniform_replay_wraps_around() -> None:
    buf = ReplayBuffer(3, seed=0)
    buf.add({"x": np.arange(5)})
    assert len(buf) == 3
    assert sorted(buf._columns["x"].tolist()) == [2, 3, 4]
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2).sample(1)
