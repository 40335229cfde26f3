"""Return and advantage estimators over flat sample batches.

A flat batch concatenates, per env, contiguous segments of steps. ``terminateds[t]``
marks a true episode end (no bootstrap); ``segment_ends[t]`` marks the last step of a
segment (episode end, truncation, or the end of a rollout fragment): recursions stop
there and bootstrap from ``next_values[t]`` = V(obs after step t) unless terminated.
"""

from __future__ import annotations

import numpy as np


def _as_f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminateds: np.ndarray,
                segment_ends: np.ndarray, gamma: float, lambda_: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation: (advantages, value_targets), both float32 [N]."""
    r, v, nv = _as_f64(rewards), _as_f64(values), _as_f64(next_values)
    not_term = 1.0 - _as_f64(terminateds)
    cont = (1.0 - _as_f64(segment_ends)) * gamma * lambda_
    delta = r + gamma * not_term * nv - v
    adv = np.empty_like(delta)
    running = 0.0
    delta_l, cont_l = delta.tolist(), cont.tolist()
    for t in range(len(delta_l) - 1, -1, -1):
        running = delta_l[t] + cont_l[t] * running
        adv[t] = running
    return adv.astype(np.float32), (adv + v).astype(np.float32)


def compute_vtrace(behaviour_logp: np.ndarray, target_logp: np.ndarray, rewards: np.ndarray,
                   values: np.ndarray, next_values: np.ndarray, terminateds: np.ndarray,
                   segment_ends: np.ndarray, gamma: float, rho_clip: float = 1.0, c_clip: float = 1.0,
                   pg_rho_clip: float = 1.0, lambda_: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """V-trace (Espeholt et al. 2018): (vs value targets, policy-gradient advantages), float32 [N]."""
    rho = np.exp(_as_f64(target_logp) - _as_f64(behaviour_logp))
    r, v, nv = _as_f64(rewards), _as_f64(values), _as_f64(next_values)
    not_term = 1.0 - _as_f64(terminateds)
    seg_end = _as_f64(segment_ends)
    rho_bar = np.minimum(rho_clip, rho)
    cs = lambda_ * np.minimum(c_clip, rho)
    delta = rho_bar * (r + gamma * not_term * nv - v)
    cont = gamma * cs * (1.0 - seg_end)
    acc = np.empty_like(delta)
    running = 0.0
    delta_l, cont_l = delta.tolist(), cont.tolist()
    for t in range(len(delta_l) - 1, -1, -1):
        running = delta_l[t] + cont_l[t] * running
        acc[t] = running
    vs = v + acc
    # The target for step t+1 inside a segment is vs[t+1]; at a segment end it is V(next obs).
    vs_next = np.where(seg_end > 0, nv, np.append(vs[1:], 0.0))
    pg_adv = np.minimum(pg_rho_clip, rho) * (r + gamma * not_term * vs_next - v)
    return vs.astype(np.float32), pg_adv.astype(np.float32)


def compute_n_step(rewards: np.ndarray, terminateds: np.ndarray, segment_ends: np.ndarray, n: int,
                   gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns inside segments.

    Returns (n-step rewards, index of the step whose next obs to bootstrap from,
    terminated flag of that step, bootstrap discount gamma**k) where k <= n is the
    number of steps summed (fewer at a segment end).
    """
    if n < 1:
        raise ValueError(f"n_step must be >= 1, got {n}")
    r = _as_f64(rewards).tolist()
    seg_end = np.asarray(segment_ends, dtype=bool).reshape(-1).tolist()
    term = np.asarray(terminateds, dtype=bool).reshape(-1)
    size = len(r)
    out_r = np.zeros(size, dtype=np.float64)
    last = np.zeros(size, dtype=np.int64)
    disc = np.zeros(size, dtype=np.float64)
    for t in range(size):
        total, g, j = 0.0, 1.0, t
        while True:
            total += g * r[j]
            g *= gamma
            if seg_end[j] or j - t + 1 >= n or j + 1 >= size:
                break
            j += 1
        out_r[t], last[t], disc[t] = total, j, g
    return out_r.astype(np.float32), last, term[last], disc.astype(np.float32)
