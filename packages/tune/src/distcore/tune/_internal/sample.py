"""Search-space domains (uniform, choice, sample_from, ...) and how to sample them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class Domain:
    """A value to sample: the base of every search-space primitive."""

    def sample(self, spec: Any = None, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError

    def is_grid(self) -> bool:
        return False

    def is_function(self) -> bool:
        return False

    def domain_str(self) -> str:
        return repr(self)


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _quantize(value: float, q: float | None) -> float:
    if q is None:
        return value
    return float(np.round(value / q) * q)


def _check_bounds(name: str, lower: float, upper: float) -> None:
    if not (isinstance(lower, (int, float)) and isinstance(upper, (int, float))):
        raise TypeError(f"{name}: lower and upper must be numbers, got {lower!r} and {upper!r}")
    if lower > upper:
        raise ValueError(f"{name}: lower ({lower}) must not exceed upper ({upper})")


class Float(Domain):
    """A float in [lower, upper]: uniform, log-uniform or normal, optionally quantized."""

    def __init__(self, lower: float | None, upper: float | None, sampler: str = "uniform",
                 q: float | None = None, base: float = 10, mean: float = 0.0, sd: float = 1.0) -> None:
        self.lower, self.upper, self.sampler = lower, upper, sampler
        self.q, self.base, self.mean, self.sd = q, base, mean, sd

    def sample(self, spec: Any = None, rng: np.random.Generator | None = None) -> float:
        r = _rng(rng)
        if self.sampler == "uniform":
            value = float(r.uniform(self.lower, self.upper))
        elif self.sampler == "loguniform":
            lo, hi = math.log(self.lower) / math.log(self.base), math.log(self.upper) / math.log(self.base)
            value = float(self.base ** r.uniform(lo, hi))
        else:  # normal
            value = float(r.normal(self.mean, self.sd))
        value = _quantize(value, self.q)
        if self.lower is not None and self.upper is not None:
            lo, hi = self.lower, self.upper
            if self.q is not None:  # the nearest multiples of q inside the bounds
                lo, hi = math.ceil(lo / self.q - 1e-9) * self.q, math.floor(hi / self.q + 1e-9) * self.q
            value = min(max(value, lo), hi)
        return value

    def __repr__(self) -> str:
        if self.sampler == "normal":
            return f"randn({self.mean}, {self.sd}{', q=' + str(self.q) if self.q else ''})"
        return f"{self.sampler}({self.lower}, {self.upper}{', q=' + str(self.q) if self.q else ''})"


class Integer(Domain):
    """An integer in [lower, upper) (or [lower, upper] when quantized, as Ray's qrandint)."""

    def __init__(self, lower: int, upper: int, sampler: str = "uniform", q: int = 1, base: float = 10,
                 inclusive: bool = False) -> None:
        self.lower, self.upper, self.sampler, self.q, self.base = lower, upper, sampler, q, base
        self.inclusive = inclusive

    def sample(self, spec: Any = None, rng: np.random.Generator | None = None) -> int:
        r = _rng(rng)
        hi = self.upper + (1 if self.inclusive else 0)
        if self.sampler == "loguniform":
            lo_e, hi_e = math.log(self.lower) / math.log(self.base), math.log(hi) / math.log(self.base)
            value = int(math.floor(self.base ** r.uniform(lo_e, hi_e)))
            value = min(max(value, self.lower), hi - 1)
        else:
            value = int(r.integers(self.lower, hi))
        if self.q != 1:
            value = int(np.round(value / self.q) * self.q)
            value = min(max(value, self.lower), self.upper)
        return value

    def __repr__(self) -> str:
        kind = "lograndint" if self.sampler == "loguniform" else ("qrandint" if self.inclusive else "randint")
        return f"{kind}({self.lower}, {self.upper})"


class Categorical(Domain):
    """One of a list of values."""

    def __init__(self, categories: Sequence[Any]) -> None:
        self.categories = list(categories)

    def sample(self, spec: Any = None, rng: np.random.Generator | None = None) -> Any:
        return self.categories[int(_rng(rng).integers(0, len(self.categories)))]

    def __repr__(self) -> str:
        return f"choice({self.categories!r})"


class Function(Domain):
    """A value computed by ``func(spec)``; ``spec.config`` holds the other resolved values."""

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise TypeError(f"sample_from needs a callable, got {type(func).__name__}")
        self.func = func

    def is_function(self) -> bool:
        return True

    def sample(self, spec: Any = None, rng: np.random.Generator | None = None) -> Any:
        try:
            return self.func(spec)
        except TypeError as error:
            if "positional argument" in str(error):
                return self.func()
            raise

    def __repr__(self) -> str:
        return f"sample_from({getattr(self.func, '__name__', self.func)!r})"


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from [lower, upper]. Example: ``tune.uniform(0, 1)``."""
    _check_bounds("uniform", lower, upper)
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """A uniform float rounded to a multiple of ``q``."""
    _check_bounds("quniform", lower, upper)
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose log is uniform in [log lower, log upper]; lower must be > 0."""
    _check_bounds("loguniform", lower, upper)
    if lower <= 0:
        raise ValueError(f"loguniform: lower must be > 0, got {lower}")
    return Float(lower, upper, sampler="loguniform", base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """A log-uniform float rounded to a multiple of ``q``."""
    _check_bounds("qloguniform", lower, upper)
    if lower <= 0:
        raise ValueError(f"qloguniform: lower must be > 0, got {lower}")
    return Float(lower, upper, sampler="loguniform", q=q, base=base)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A normally distributed float."""
    if sd <= 0:
        raise ValueError(f"randn: sd must be > 0, got {sd}")
    return Float(None, None, sampler="normal", mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float rounded to a multiple of ``q``."""
    if sd <= 0:
        raise ValueError(f"qrandn: sd must be > 0, got {sd}")
    return Float(None, None, sampler="normal", mean=mean, sd=sd, q=q)


def randint(lower: int, upper: int) -> Integer:
    """An integer in [lower, upper) (upper excluded)."""
    _check_bounds("randint", lower, upper)
    if upper <= lower:
        raise ValueError(f"randint: upper ({upper}) must exceed lower ({lower}); upper is excluded")
    return Integer(int(lower), int(upper))


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """An integer in [lower, upper] (upper included) rounded to a multiple of ``q``."""
    _check_bounds("qrandint", lower, upper)
    return Integer(int(lower), int(upper), q=int(q), inclusive=True)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An integer in [lower, upper) whose log is uniform; lower must be >= 1."""
    _check_bounds("lograndint", lower, upper)
    if lower < 1:
        raise ValueError(f"lograndint: lower must be >= 1, got {lower}")
    return Integer(int(lower), int(upper), sampler="loguniform", base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A log-uniform integer in [lower, upper] rounded to a multiple of ``q``."""
    _check_bounds("qlograndint", lower, upper)
    return Integer(int(lower), int(upper), sampler="loguniform", q=int(q), base=base, inclusive=True)


def choice(categories: Sequence[Any]) -> Categorical:
    """One of ``categories``, uniformly. Example: ``tune.choice(["relu", "tanh"])``."""
    if isinstance(categories, (str, bytes)) or not isinstance(categories, Sequence):
        raise TypeError(f"choice needs a list of values, got {type(categories).__name__}")
    if len(categories) == 0:
        raise ValueError("choice needs at least one value")
    return Categorical(categories)


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed from the rest of the config: ``sample_from(lambda spec: 2 * spec.config.x)``."""
    return Function(func)


def grid_search(values: Sequence[Any]) -> dict[str, list[Any]]:
    """Try every value (crossed with every other grid): ``tune.grid_search([1, 2, 3])``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"grid_search needs a list of values, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError("grid_search needs at least one value")
    return {"grid_search": list(values)}
