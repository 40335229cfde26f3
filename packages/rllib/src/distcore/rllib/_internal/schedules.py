"""Piecewise-linear schedules: a float, or ``[[timestep, value], ...]`` interpolated (RLlib style)."""

from __future__ import annotations

from typing import Any


def check_schedule(name: str, value: Any) -> None:
    if isinstance(value, (int, float)):
        return
    ok = (isinstance(value, (list, tuple)) and len(value) >= 1
          and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value)
          and all(value[i][0] <= value[i + 1][0] for i in range(len(value) - 1)))
    if not ok:
        raise ValueError(f"{name} must be a number or a list of [timestep, value] pairs with increasing "
                         f"timesteps, got {value!r}")


def schedule_value(value: Any, timestep: int) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    points = [(float(t), float(v)) for t, v in value]
    if timestep <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if timestep <= t1:
            frac = (timestep - t0) / (t1 - t0) if t1 > t0 else 1.0
            return v0 + frac * (v1 - v0)
    return points[-1][1]
