"""The autoscaling decision, pure: ongoing requests in, a replica count out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from distcore.serve._internal.config import AutoscalingConfig


@dataclass
class AutoscalingState:
    """What the policy remembers between ticks: since when it has wanted more or fewer replicas."""

    want_up_since: float | None = None
    want_down_since: float | None = None
    smoothed: float | None = None


def desired_replicas(cfg: AutoscalingConfig, current: int, total_ongoing: float) -> int:
    """The count that brings ongoing requests per replica to the target (before delays)."""
    if current == 0:
        return max(cfg.min_replicas, 1 if total_ongoing > 0 else 0)
    raw = total_ongoing / cfg.target_ongoing_requests
    error = raw / current
    factor = cfg.upscaling_factor if error > 1 and cfg.upscaling_factor else (
        cfg.downscaling_factor if error < 1 and cfg.downscaling_factor else cfg.smoothing_factor)
    target = current * (1 + (error - 1) * factor)
    want = math.ceil(target - 1e-9) if error > 1 else max(math.ceil(target - 1e-9), 0)
    return int(min(cfg.max_replicas, max(cfg.min_replicas, want)))


def decide(cfg: AutoscalingConfig, state: AutoscalingState, current: int, total_ongoing: float, now: float) -> int:
    """The new target replica count, applying the up/down-scale delays."""
    want = desired_replicas(cfg, current, total_ongoing)
    if want > current:
        state.want_down_since = None
        if current == 0:
            state.want_up_since = None
            return want  # scale from zero at once: a request is waiting
        if state.want_up_since is None:
            state.want_up_since = now
        if now - state.want_up_since >= cfg.upscale_delay_s:
            state.want_up_since = None
            return want
        return current
    if want < current:
        state.want_up_since = None
        if state.want_down_since is None:
            state.want_down_since = now
        if now - state.want_down_since >= cfg.downscale_delay_s:
            state.want_down_since = None
            return want
        return current
    state.want_up_since = state.want_down_since = None
    return current
