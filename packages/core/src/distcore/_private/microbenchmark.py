"""The core microbenchmark: Ray's ``ray microbenchmark`` workloads, written once.

Every workload is defined against a ``ray``-like module object passed in
(``distcore``, or ``ray`` itself), so the identical definitions run on both
runtimes: ``distcore microbenchmark`` runs them on distcore, and
``tools/bench/core_micro.py --compare ray`` runs them on distcore and Ray in
the same invocation. The names are Ray's (``ray/_private/ray_perf.py``).

This module imports nothing from distcore (only the standard library; numpy
when a "gigabytes" workload runs), so the comparison script loads it by file
path into Ray's interpreter.
The remote functions and actor classes are made inside :func:`workloads`, so
cloudpickle ships them by value and no worker has to import this module.

Call order: :func:`workloads` (cheap; makes no remote objects) →
:func:`run_suite`, which, per selected workload, calls its ``setup`` (creates
the actors it needs), times the returned callable with :func:`measure` and
kills the actors before the next workload.

Example::

    import distcore
    from distcore._private import microbenchmark as mb

    distcore.init(resources={"custom": 100})
    for r in mb.run_suite(distcore, mb.workloads(distcore), only="tasks sync"):
        print(r.name, mb.format_rate(r.mean, r.std))
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Per-call batch sizes. "ray" are the sizes of ray_perf.py; "small" (the default)
# shrinks the batches that take seconds per call on a 2-core machine, so a full
# side-by-side run fits in about ten minutes. Rates are per op either way.
SIZES: dict[str, dict[str, int]] = {
    "ray": {"multi_tasks_n": 10_000, "multi_tasks_m": 4, "one_to_n": 5_000, "n_to_n": 5_000,
            "n_to_n_m": 4, "n_to_n_arg": 1_000, "multi_put_tasks": 10, "pgs": 100},
    "small": {"multi_tasks_n": 1_000, "multi_tasks_m": 4, "one_to_n": 1_000, "n_to_n": 1_000,
              "n_to_n_m": 4, "n_to_n_arg": 1_000, "multi_put_tasks": 4, "pgs": 100},
}


@dataclass(frozen=True)
class Workload:
    """One metric: ``setup(actors)`` makes what it needs, appends its actors, returns the call to time.

    ``multiplier`` is the number of ops (or gigabytes) one call does, so rates are per op.
    """

    name: str
    setup: Callable[[list[Any]], Callable[[], Any]]
    multiplier: float = 1.0
    unit: str = "ops/s"


@dataclass
class Result:
    """The rates of the timed rounds of one workload (ops/s, or GB/s)."""

    name: str
    rates: list[float] = field(default_factory=list)
    unit: str = "ops/s"
    error: str | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.rates) if self.rates else float("nan")

    @property
    def std(self) -> float:
        return statistics.pstdev(self.rates) if len(self.rates) > 1 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rates": self.rates, "unit": self.unit, "error": self.error,
                "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(data["name"], list(data["rates"]), data.get("unit", "ops/s"), data.get("error"))


def format_rate(mean: float, std: float | None = None) -> str:
    """``12345 ± 67``: ops/s with no decimals, GB/s (small numbers) with two."""
    if mean != mean:  # NaN
        return "n/a"
    digits = 2 if abs(mean) < 100 else 0
    text = f"{mean:,.{digits}f}"
    return text if std is None else f"{text} ± {std:,.{digits}f}"


def measure(fn: Callable[[], Any], multiplier: float = 1.0, *, rounds: int = 4,
            round_s: float = 2.0, warmup_s: float = 1.0) -> list[float]:
    """Rates (``multiplier`` × calls per second) of ``rounds`` timed rounds after a warm-up.

    As Ray's ``timeit``: the warm-up runs ``fn`` for ``warmup_s`` (at least once) and
    sizes a step of about a tenth of the round; each round runs whole steps until
    ``round_s`` has passed (at least one call).
    """
    start = time.perf_counter()
    count = 0
    while count == 0 or time.perf_counter() - start < warmup_s:
        fn()
        count += 1
    per_call = (time.perf_counter() - start) / count
    step = max(1, int(round_s / max(per_call, 1e-9) / 10))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        count = 0
        while True:
            for _ in range(step):
                fn()
            count += step
            elapsed = time.perf_counter() - start
            if elapsed >= round_s:
                break
        rates.append(multiplier * count / elapsed)
    return rates


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise RuntimeError("the put-gigabytes workloads need numpy: pip install numpy "
                           "(or leave them out with --only)") from None
    return numpy


def workloads(ray: Any, sizes: str = "small", cpus: int | None = None) -> list[Workload]:
    """Ray's microbenchmark workloads against the module ``ray`` (distcore or Ray), in Ray's order.

    ``sizes`` picks a row of :data:`SIZES`; ``cpus`` is the machine's CPU count
    (Ray's ``n_cpu`` is half of it, at least one).
    """
    size = SIZES[sizes]
    n_cpu = max(1, (cpus or os.cpu_count() or 2) // 2)

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self) -> bytes:
            return b"ok"

        def small_value_arg(self, x: Any) -> bytes:
            return b"ok"

        def small_value_batch(self, n: int) -> None:
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote
    class AsyncActor:
        async def small_value(self) -> bytes:
            return b"ok"

        async def small_value_with_arg(self, x: Any) -> bytes:
            return b"ok"

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers: Any) -> None:
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n: int) -> None:
            results = []
            for s in self.servers:
                results.extend([s.small_value.remote() for _ in range(n)])
            ray.get(results)

        def small_value_batch_arg(self, n: int) -> None:
            x = ray.put(0)
            results = []
            for s in self.servers:
                results.extend([s.small_value_arg.remote(x) for _ in range(n)])
            ray.get(results)

    @ray.remote
    def small_value() -> bytes:
        return b"ok"

    @ray.remote
    def create_object_containing_ref() -> list[Any]:
        return [ray.put(1) for _ in range(10_000)]

    @ray.remote
    def do_put_small() -> None:
        for _ in range(100):
            ray.put(0)

    @ray.remote
    def do_put() -> None:
        import numpy as np

        for _ in range(10):
            ray.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))

    @ray.remote
    def actor_work(actors: list[Any], n: int) -> None:
        ray.get([actors[i % len(actors)].small_value.remote() for i in range(n)])

    def put_multi(actors: list[Any]) -> Callable[[], Any]:
        _numpy()
        return lambda: ray.get([do_put.remote() for _ in range(size["multi_put_tasks"])])

    def plain(fn: Callable[[], Any]) -> Callable[[list[Any]], Callable[[], Any]]:
        return lambda actors: fn

    def get_small(actors: list[Any]) -> Callable[[], Any]:
        value = ray.put(0)
        return lambda: ray.get(value)

    def put_large(actors: list[Any]) -> Callable[[], Any]:
        np = _numpy()
        arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
        return lambda: ray.put(arr)

    def get_containing(actors: list[Any]) -> Callable[[], Any]:
        ref = create_object_containing_ref.remote()
        ray.get(ref)
        return lambda: ray.get(ref)

    def wait_1k() -> None:
        not_ready = [small_value.remote() for _ in range(1000)]
        fetch_local = True
        for _ in range(1000):
            _ready, not_ready = ray.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False

    def spawn(actors: list[Any], cls: Any, count: int, **options: Any) -> list[Any]:
        made = [(cls.options(**options) if options else cls).remote() for _ in range(count)]
        actors.extend(made)
        return made

    def ready(handles: list[Any]) -> None:
        ray.get([h.small_value.remote() for h in handles])

    def one_actor(cls: Any, method: str, batch: int, arg: bool = False, **options: Any):
        def setup(actors: list[Any]) -> Callable[[], Any]:
            (a,) = spawn(actors, cls, 1, **options)
            call = getattr(a, method)
            ray.get(call.remote(0) if arg else call.remote())
            if batch == 0:
                return lambda: ray.get(call.remote())
            if arg:
                return lambda: ray.get([call.remote(i) for i in range(batch)])
            return lambda: ray.get([call.remote() for _ in range(batch)])
        return setup

    def multi_tasks(actors: list[Any]) -> Callable[[], Any]:
        clients = spawn(actors, Actor, size["multi_tasks_m"])
        ready(clients)
        return lambda: ray.get([c.small_value_batch.remote(size["multi_tasks_n"]) for c in clients])

    def one_to_n(server_cls: Any) -> Callable[[list[Any]], Callable[[], Any]]:
        def setup(actors: list[Any]) -> Callable[[], Any]:
            servers = spawn(actors, server_cls, n_cpu)
            client = Client.remote(servers)
            actors.append(client)
            ready(servers)
            return lambda: ray.get(client.small_value_batch.remote(size["one_to_n"]))
        return setup

    def n_to_n(server_cls: Any) -> Callable[[list[Any]], Callable[[], Any]]:
        def setup(actors: list[Any]) -> Callable[[], Any]:
            servers = spawn(actors, server_cls, n_cpu)
            ready(servers)
            n, m = size["n_to_n"], size["n_to_n_m"]
            return lambda: ray.get([actor_work.remote(servers, n) for _ in range(m)])
        return setup

    def n_to_n_arg(actors: list[Any]) -> Callable[[], Any]:
        servers = spawn(actors, Actor, n_cpu)
        clients = [Client.remote(s) for s in servers]
        actors.extend(clients)
        ready(servers)
        n = size["n_to_n_arg"]
        return lambda: ray.get([c.small_value_batch_arg.remote(n) for c in clients])

    def pg_create_removal(actors: list[Any]) -> Callable[[], Any]:
        util = importlib.import_module(ray.__name__ + ".util")

        def run() -> None:
            pgs = [util.placement_group(bundles=[{"custom": 0.001}]) for _ in range(size["pgs"])]
            for pg in pgs:
                pg.wait(timeout_seconds=30)
            for pg in pgs:
                util.remove_placement_group(pg)
        return run

    gb = 8 * 0.1  # one 100 Mi int64 array: 0.8 GiB-ish, counted as Ray counts it
    m_tasks, m_n = size["multi_tasks_m"], size["multi_tasks_n"]
    return [
        Workload("single client get calls (Plasma Store)", get_small),
        Workload("single client put calls (Plasma Store)", plain(lambda: ray.put(0))),
        Workload("multi client put calls (Plasma Store)",
                 plain(lambda: ray.get([do_put_small.remote() for _ in range(10)])), 1000),
        Workload("single client put gigabytes", put_large, gb, "GB/s"),
        Workload("single client tasks and get batch",
                 plain(lambda: ray.get([small_value.remote() for _ in range(1000)]))),
        Workload("multi client put gigabytes", put_multi, size["multi_put_tasks"] * gb, "GB/s"),
        Workload("single client get object containing 10k refs", get_containing),
        Workload("single client wait 1k refs", plain(wait_1k)),
        Workload("single client tasks sync", plain(lambda: ray.get(small_value.remote()))),
        Workload("single client tasks async",
                 plain(lambda: ray.get([small_value.remote() for _ in range(1000)])), 1000),
        Workload("multi client tasks async", multi_tasks, m_tasks * m_n),
        Workload("1:1 actor calls sync", one_actor(Actor, "small_value", 0)),
        Workload("1:1 actor calls async", one_actor(Actor, "small_value", 1000), 1000),
        Workload("1:1 actor calls concurrent",
                 one_actor(Actor, "small_value", 1000, max_concurrency=16), 1000),
        Workload("1:n actor calls async", one_to_n(Actor), size["one_to_n"] * n_cpu),
        Workload("n:n actor calls async", n_to_n(Actor), size["n_to_n"] * size["n_to_n_m"]),
        Workload("n:n actor calls with arg async", n_to_n_arg, size["n_to_n_arg"] * n_cpu),
        Workload("1:1 async-actor calls sync", one_actor(AsyncActor, "small_value", 0)),
        Workload("1:1 async-actor calls async", one_actor(AsyncActor, "small_value", 1000), 1000),
        Workload("1:1 async-actor calls with args async",
                 one_actor(AsyncActor, "small_value_with_arg", 1000, arg=True), 1000),
        Workload("1:n async-actor calls async", one_to_n(AsyncActor), size["one_to_n"] * n_cpu),
        Workload("n:n async-actor calls async", n_to_n(AsyncActor),
                 size["n_to_n"] * size["n_to_n_m"]),
        Workload("placement group create/removal", pg_create_removal, size["pgs"]),
    ]


class _Namer:
    """Stands in for the ``ray`` module so :func:`workloads` can be listed without a cluster."""

    __name__ = "namer"

    @staticmethod
    def remote(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda obj: obj


def names(sizes: str = "small", only: Sequence[str] | str | None = None) -> list[str]:
    """The metric names, in Ray's order (nothing is started)."""
    return [w.name for w in select(workloads(_Namer, sizes=sizes), only)]


def select(items: Sequence[Workload], only: Sequence[str] | str | None) -> list[Workload]:
    """The workloads whose name contains one of the ``only`` substrings (all when none)."""
    if not only:
        return list(items)
    needles = [only] if isinstance(only, str) else list(only)
    return [w for w in items if any(n in w.name for n in needles)]


def run_suite(ray: Any, items: Sequence[Workload], *, only: Sequence[str] | str | None = None,
              rounds: int = 4, round_s: float = 2.0, warmup_s: float = 1.0,
              on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Time each selected workload on the connected cluster; an error is kept, not raised."""
    results = []
    for w in select(items, only):
        result = Result(w.name, unit=w.unit)
        actors: list[Any] = []
        try:
            fn = w.setup(actors)
            result.rates = measure(fn, w.multiplier, rounds=rounds, round_s=round_s,
                                   warmup_s=warmup_s)
        except Exception as exc:  # keep going: one broken workload must not hide the others
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            result.error = f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
        finally:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:
                    pass  # best effort: the actor may be gone already
            fn = None
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

