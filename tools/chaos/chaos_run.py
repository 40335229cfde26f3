"""Chaos run: a mixed workload on a 3-node local cluster while processes and a node are killed.

Usage::

    .venv/bin/python tools/chaos/chaos_run.py --short          # the CI form (< 5 min on 2 cores)
    .venv/bin/python tools/chaos/chaos_run.py                  # the long form: 10,000 tasks, 20 actors
    .venv/bin/python tools/chaos/chaos_run.py --no-faults      # only the fault-free baseline
    .venv/bin/python tools/chaos/chaos_run.py --short --json   # one JSON object on the last line

A ``cluster_utils.Cluster`` of a head plus 2 worker nodes runs, in waves:

* plain tasks (``square``, ``slow_square``), chains of tasks passing refs
  (``add`` of an upstream ``square``), blobs of 1 KB to ``--max-bytes`` made by
  a task and digested by another task or an actor, ``put`` objects digested by
  tasks, and trees of nested tasks (``tree``: each level submits its children
  and sums their results); every task has ``max_retries`` (default 20);
* ``--actors`` ``Counter`` actors (``max_restarts=-1, max_task_retries=-1``).
  Each call ``add(seq, amount)`` is idempotent: the actor keeps its count and
  the set of applied sequence numbers in a file of its own (written with an
  atomic rename before it replies) and re-reads it in its constructor, so a
  restart or a re-sent call never counts twice and the final count must equal
  the sum of the amounts sent, exactly.

With faults (the default), a thread SIGKILLs a random worker process (found
with ``distcore.util.state.list_workers``) every ``--kill-interval`` seconds,
and once the run is ``--node-kill-at`` (a fraction) done, one worker node is
killed whole (``remove_node(allow_graceful=False)``) and a fresh one added.

Every result is compared with the answer computed here. ``get`` waits at most
``--get-timeout`` seconds: longer counts as a hang. The table gives tasks run,
retries, actor restarts, objects reconstructed, wrong and lost results, hangs
and wall time, against the same workload on a fresh cluster without faults
(skipped with ``--skip-baseline``). The exit status is 1 when wrong, lost or
hung results are not all 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter as _Tally
from dataclasses import asdict, dataclass, field
from typing import Any

import distcore
from distcore.cluster_utils import Cluster

MOD = 1_000_000_007
TREE_DEPTH = 2
TREE_FANOUT = 3
TREE_TASKS = sum(TREE_FANOUT ** d for d in range(TREE_DEPTH + 1))  # root + inner + leaves


# ----------------------------------------------------------------- pure helpers (also run locally)


def square_value(i: int, seed: int) -> int:
    return (i * i + seed) % MOD


def blob_bytes(size: int, key: int) -> bytes:
    """Deterministic bytes of ``size`` (cheap: one random 64 KB block, rotated per key)."""
    block = random.Random(key).randbytes(min(size, 65536))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def digest_value(data: bytes) -> tuple[int, int]:
    return len(data), zlib.crc32(data)


def tree_value(base: int, depth: int, seed: int) -> int:
    if depth == 0:
        return square_value(base, seed)
    return sum(tree_value(base * TREE_FANOUT + k + 1, depth - 1, seed) for k in range(TREE_FANOUT)) % MOD


# ----------------------------------------------------------------- remote functions and the actor


@distcore.remote
def square(i: int, seed: int) -> int:
    return square_value(i, seed)


@distcore.remote
def slow_square(i: int, seed: int) -> int:
    time.sleep(0.05)  # long enough for the killer to hit some mid-task
    return square_value(i, seed)


@distcore.remote
def add(x: int, y: int) -> int:
    return (x + y) % MOD


@distcore.remote
def make_blob(size: int, key: int) -> bytes:
    return blob_bytes(size, key)


@distcore.remote
def digest(data: bytes) -> tuple[int, int]:
    return digest_value(data)


@distcore.remote
def tree(base: int, depth: int, seed: int, retries: int) -> int:
    if depth == 0:
        return square_value(base, seed)
    children = [tree.options(max_retries=retries).remote(base * TREE_FANOUT + k + 1, depth - 1, seed, retries)
                for k in range(TREE_FANOUT)]
    return sum(distcore.get(children)) % MOD


@distcore.remote(num_cpus=0, resources={"chaos_worker_node": 1}, max_restarts=-1, max_task_retries=-1)
class Counter:
    """A counter persisted to ``path``; ``add`` is idempotent per sequence number."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.applied: set[int] = set()
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.count, self.applied = state["count"], set(state["applied"])

    def add(self, seq: int, amount: int) -> int:
        if seq not in self.applied:
            count, applied = self.count + amount, self.applied | {seq}
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"count": count, "applied": sorted(applied)}, f)
            os.replace(tmp, self.path)  # a kill before this line leaves the call unapplied
            self.count, self.applied = count, applied
        return seq

    def digest(self, data: bytes) -> tuple[int, int]:
        return digest_value(data)

    def value(self) -> tuple[int, int]:
        return self.count, len(self.applied)


# ----------------------------------------------------------------- the workload


@dataclass
class Stats:
    mode: str = ""
    tasks_submitted: int = 0  # counting each nested tree task and both halves of a chain
    results_checked: int = 0
    wrong: int = 0
    lost: int = 0
    hangs: int = 0
    actor_calls: int = 0
    actor_state_wrong: int = 0
    retries: int = -1  # extra attempts recorded by the state API (-1: unknown)
    actor_restarts: int = -1
    objects_reconstructed: int = -1
    worker_kills: int = 0
    node_kills: int = 0
    waves_skipped: int = 0
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    task_rows: dict[str, int] = field(default_factory=dict)  # list_tasks rows by state, at the end
    unfinished_rows: dict[str, int] = field(default_factory=dict)  # "name/state" of rows not FINISHED
    failed_causes: dict[str, int] = field(default_factory=dict)  # FAILED rows by error type and cause
    examples: list[str] = field(default_factory=list)

    def failure(self, kind: str, what: str, exc: BaseException | None = None) -> None:
        name = type(exc).__name__ if exc is not None else kind
        self.errors[f"{kind}:{name}"] = self.errors.get(f"{kind}:{name}", 0) + 1
        if len(self.examples) < 12:
            lines = str(exc).strip().splitlines() if exc is not None else []
            msg = lines[0][:300] if lines else ""
            if len(lines) > 1:  # a remote error: its first line names the task, its last says what happened
                msg += " ... " + lines[-1].strip()[:400]
            self.examples.append(f"{kind} {what}: {name}: {msg}")


def plan_waves(args: argparse.Namespace) -> list[list[tuple]]:
    """The whole workload as waves of jobs; the same seed gives the same plan."""
    rng = random.Random(args.seed)
    jobs: list[tuple] = []
    n = 0
    i = 0
    lo, hi = math.log(1024), math.log(args.max_bytes)
    while n < args.tasks:
        i += 1
        r = rng.random()
        if r < 0.40:
            jobs.append(("square", i))
            n += 1
        elif r < 0.55:
            jobs.append(("slow", i))
            n += 1
        elif r < 0.75:
            jobs.append(("chain", i))
            n += 2
        elif r < 0.85:
            size = int(math.exp(rng.uniform(lo, hi)))
            jobs.append(("blob", i, size, rng.random() < 0.3))  # digested by an actor 30% of the time
            n += 2
        elif r < 0.92:
            jobs.append(("put", i, int(math.exp(rng.uniform(lo, min(hi, math.log(1 << 20)))))))
            n += 1
        else:
            jobs.append(("tree", i))
            n += TREE_TASKS
    size = args.wave
    return [jobs[k:k + size] for k in range(0, len(jobs), size)]


def check(stats: Stats, what: str, ref: Any, expected: Any, deadline: float) -> None:
    try:
        got = distcore.get(ref, timeout=max(1.0, deadline - time.monotonic()))
    except distcore.exceptions.GetTimeoutError as exc:
        stats.hangs += 1
        stats.failure("hang", what, exc)
        return
    except Exception as exc:  # noqa: BLE001 - every failure is counted, by type
        stats.lost += 1
        stats.failure("lost", what, exc)
        return
    stats.results_checked += 1
    if isinstance(got, list):
        got = tuple(got)
    if got != expected:
        stats.wrong += 1
        stats.failure("wrong", what)
        if len(stats.examples) < 12:
            stats.examples.append(f"wrong {what}: got {str(got)[:80]} expected {str(expected)[:80]}")


def run_wave(stats: Stats, wave: list[tuple], actors: list, next_seq: list[int], sent: list[int],
             args: argparse.Namespace, rng: random.Random) -> None:
    seed, retries = args.seed, args.max_retries
    opts = {"max_retries": retries}
    pending: list[tuple[str, Any, Any]] = []
    for job in wave:
        kind, i = job[0], job[1]
        if kind == "square":
            pending.append((f"square({i})", square.options(**opts).remote(i, seed), square_value(i, seed)))
            stats.tasks_submitted += 1
        elif kind == "slow":
            pending.append((f"slow_square({i})", slow_square.options(**opts).remote(i, seed),
                            square_value(i, seed)))
            stats.tasks_submitted += 1
        elif kind == "chain":
            up = square.options(**opts).remote(i, seed)
            pending.append((f"add(square({i}))", add.options(**opts).remote(up, i),
                            (square_value(i, seed) + i) % MOD))
            stats.tasks_submitted += 2
        elif kind == "blob":
            size, to_actor = job[2], job[3]
            blob = make_blob.options(**opts).remote(size, seed * 1_000_003 + i)
            expected = digest_value(blob_bytes(size, seed * 1_000_003 + i))
            if to_actor and actors:
                actor = actors[i % len(actors)]
                pending.append((f"actor.digest(blob {size} B)", actor.digest.remote(blob), expected))
                stats.actor_calls += 1
            else:
                pending.append((f"digest(blob {size} B)", digest.options(**opts).remote(blob), expected))
            stats.tasks_submitted += 2
        elif kind == "put":
            data = blob_bytes(job[2], seed + i)
            ref = distcore.put(data)
            pending.append((f"digest(put {job[2]} B)", digest.options(**opts).remote(ref), digest_value(data)))
            stats.tasks_submitted += 1
        elif kind == "tree":
            pending.append((f"tree({i})", tree.options(**opts).remote(i, TREE_DEPTH, seed, retries),
                            tree_value(i, TREE_DEPTH, seed)))
            stats.tasks_submitted += TREE_TASKS
    # a few counter increments per wave for every actor
    for a, actor in enumerate(actors):
        for _ in range(args.actor_calls_per_wave):
            seq, amount = next_seq[a], rng.randint(1, 1000)
            next_seq[a] += 1
            sent[a] += amount
            pending.append((f"counter[{a}].add({seq})", actor.add.remote(seq, amount), seq))
            stats.actor_calls += 1
    # one deadline for the wave: what is not ready by then is a hang (checked without further waiting)
    refs = [ref for _, ref, _ in pending]
    try:
        ready, _ = distcore.wait(refs, num_returns=len(refs), timeout=args.get_timeout)
    except Exception as exc:  # noqa: BLE001
        stats.failure("wait", "wave", exc)
        ready = []
    ready_ids = {r.hex() for r in ready}
    for what, ref, expected in pending:
        if ref.hex() in ready_ids:
            check(stats, what, ref, expected, time.monotonic() + 30.0)
        else:
            stats.hangs += 1
            stats.failure("hang", what)


# ----------------------------------------------------------------- faults


class Killer(threading.Thread):
    """SIGKILL a random worker process of the cluster every ``interval`` seconds."""

    def __init__(self, interval: float, rng: random.Random, stats: Stats) -> None:
        super().__init__(daemon=True, name="chaos-killer")
        self.interval, self.rng, self.stats = interval, rng, stats
        self.stop_event = threading.Event()
        self.paused = threading.Event()
        self.kill_errors = 0

    def run(self) -> None:
        from distcore.util.state import list_workers

        while not self.stop_event.wait(self.interval):
            if self.paused.is_set():
                continue
            try:
                workers = [w for w in list_workers(limit=10_000, timeout=5, raise_on_missing_output=False)
                           if w.worker_type == "WORKER" and w.is_alive and w.pid
                           and w.state in ("LEASED", "ACTOR")]
                if not workers:
                    continue
                actors = [w for w in workers if w.state == "ACTOR"]
                victim = self.rng.choice(actors if actors and self.rng.random() < 0.3 else workers)
                os.kill(victim.pid, signal.SIGKILL)
                self.stats.worker_kills += 1
            except ProcessLookupError:
                pass
            except Exception:  # noqa: BLE001 - a state call failing mid-chaos is not a result failure
                self.kill_errors += 1


def kill_node(cluster: Cluster, victim: Any, node_kw: dict, stats: Stats, args: argparse.Namespace) -> None:
    """SIGKILL a whole worker node ``--node-kill-delay`` s into a wave, then add a fresh one."""
    time.sleep(args.node_kill_delay)
    t0 = time.monotonic()
    try:
        cluster.remove_node(victim, allow_graceful=False)
        stats.node_kills += 1
        cluster.add_node(**node_kw)
        print(f"[chaos] killed node {victim.node_id[:8]} and added a fresh one "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
    except Exception as exc:  # noqa: BLE001
        stats.failure("node-kill", victim.node_id[:8], exc)
        traceback.print_exc()


def collect_state(stats: Stats, job_id: str | None) -> None:
    from distcore.util.state import list_actors, list_tasks

    try:
        filters = [("job_id", "=", job_id)] if job_id else None
        tasks = list_tasks(filters=filters, limit=200_000, timeout=60, raise_on_missing_output=False)
        top: dict[str, int] = {}
        for t in tasks:
            top[t.task_id] = max(top.get(t.task_id, 0), t.attempt_number)
        stats.retries = sum(top.values())
        stats.task_rows = dict(_Tally(t.state for t in tasks))
        stats.unfinished_rows = {f"{k[0]}/{k[1]}": v for k, v in _Tally(
            (t.func_or_class_name or t.name, t.state) for t in tasks if t.state != "FINISHED").items()}
        stats.failed_causes = dict(_Tally(
            f"{t.error_type}: {_cause(t.error_message)}" for t in tasks if t.state == "FAILED").most_common(8))
    except Exception as exc:  # noqa: BLE001
        stats.failure("state", "list_tasks", exc)
    try:
        actors = list_actors(filters=[("class_name", "=", "Counter")], limit=10_000, timeout=30,
                             raise_on_missing_output=False)
        stats.actor_restarts = sum(a.num_restarts for a in actors)
    except Exception as exc:  # noqa: BLE001
        stats.failure("state", "list_actors", exc)
    try:
        from distcore._private import worker_state

        core = worker_state.core_worker()
        stats.objects_reconstructed = int(getattr(getattr(core, "lineage", None), "reconstructions", -1))
    except Exception:  # noqa: BLE001 - private counter; -1 when it is not there
        stats.objects_reconstructed = -1


def _cause(message: str | None) -> str:
    """A FAILED row's message without ids and numbers, so that rows of one cause count together."""
    import re

    text = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return re.sub(r"\b[0-9a-f]{6,}\b|\b\d+\b", "N", text)[:140]


def run_once(args: argparse.Namespace, faults: bool) -> Stats:
    stats = Stats(mode="faults" if faults else "no-faults")
    rng = random.Random(args.seed + 7)
    waves = plan_waves(args)
    state_dir = tempfile.mkdtemp(prefix="chaos_actors_")
    node_kw = {"num_cpus": args.cpus_per_node, "object_store_memory": args.store_bytes}
    cluster = Cluster(node_dead_timeout_s=args.node_dead_timeout)
    killer: Killer | None = None
    start = time.monotonic()
    try:
        cluster.add_node(**node_kw)  # the head: tasks, but no actors (it is never killed whole)
        node_kw["resources"] = {"chaos_worker_node": 1000}  # actors live on the worker nodes
        cluster.add_node(**node_kw)
        cluster.add_node(**node_kw)
        cluster.connect()
        job_id = distcore.get_runtime_context().get_job_id()
        actors = [Counter.remote(os.path.join(state_dir, f"counter_{a}.json")) for a in range(args.actors)]
        next_seq, sent = [0] * len(actors), [0] * len(actors)
        if faults:
            killer = Killer(args.kill_interval, random.Random(args.seed + 11), stats)
            killer.start()
        node_kill_wave = int(len(waves) * args.node_kill_at) if faults else -1
        for w, wave in enumerate(waves):
            if args.duration and time.monotonic() - start > args.duration:
                stats.waves_skipped = len(waves) - w
                break
            node_killer = None
            if w == node_kill_wave and cluster.worker_nodes:
                victim = rng.choice(cluster.worker_nodes)
                node_killer = threading.Thread(target=kill_node, args=(cluster, victim, node_kw, stats, args),
                                               daemon=True, name="chaos-node-killer")
                node_killer.start()  # mid-wave: tasks, actors and objects are on the node when it dies
            run_wave(stats, wave, actors, next_seq, sent, args, rng)
            if args.verbose:
                print(f"[{stats.mode}] wave {w + 1}/{len(waves)} {time.monotonic() - start:.1f}s "
                      f"wrong={stats.wrong} lost={stats.lost} hangs={stats.hangs} kills={stats.worker_kills}",
                      flush=True)
            if node_killer is not None:
                node_killer.join()
        if killer is not None:
            killer.stop_event.set()
            killer.join()
        for a, actor in enumerate(actors):
            what = f"counter[{a}].value()"
            try:
                count, n_applied = distcore.get(actor.value.remote(), timeout=args.get_timeout)
            except distcore.exceptions.GetTimeoutError as exc:
                stats.hangs += 1
                stats.failure("hang", what, exc)
                continue
            except Exception as exc:  # noqa: BLE001
                stats.lost += 1
                stats.failure("lost", what, exc)
                continue
            if (count, n_applied) != (sent[a], next_seq[a]):
                stats.actor_state_wrong += 1
                stats.wrong += 1
                stats.failure("wrong", what)
                stats.examples.append(f"wrong {what}: got count={count} applied={n_applied}, "
                                      f"expected count={sent[a]} applied={next_seq[a]}")
        stats.wall_s = time.monotonic() - start
        time.sleep(3.0)  # task events reach the control store within about a second
        collect_state(stats, job_id)
    except Exception as exc:  # noqa: BLE001 - the run itself broke: report it as lost
        stats.lost += 1
        stats.failure("lost", "driver", exc)
        traceback.print_exc()
        stats.wall_s = time.monotonic() - start
    finally:
        if killer is not None:
            killer.stop_event.set()
        try:
            cluster.shutdown()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    return stats


# ----------------------------------------------------------------- report


ROWS = [
    ("tasks run", "tasks_submitted"), ("results checked", "results_checked"), ("actor calls", "actor_calls"),
    ("retries (extra attempts)", "retries"), ("actor restarts", "actor_restarts"),
    ("objects reconstructed", "objects_reconstructed"), ("worker processes killed", "worker_kills"),
    ("nodes killed", "node_kills"), ("wrong results", "wrong"), ("  of which actor state", "actor_state_wrong"),
    ("lost results (exceptions)", "lost"), ("hangs", "hangs"), ("waves skipped (--duration)", "waves_skipped"),
    ("wall time (s)", "wall_s"),
]


def render(runs: list[Stats]) -> str:
    width = 28
    lines = [f"{'':{width}}" + "".join(f"{s.mode:>14}" for s in runs)]
    for label, attr in ROWS:
        cells = []
        for s in runs:
            v = getattr(s, attr)
            cells.append(f"{v:>14.1f}" if isinstance(v, float) else f"{v:>14}")
        lines.append(f"{label:{width}}" + "".join(cells))
    for s in runs:
        if s.errors:
            lines.append(f"[{s.mode}] by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(s.errors.items())))
        if s.task_rows:
            lines.append(f"[{s.mode}] list_tasks by state: "
                         + ", ".join(f"{k}={v}" for k, v in sorted(s.task_rows.items())))
        if s.unfinished_rows:
            lines.append(f"[{s.mode}] list_tasks rows not FINISHED: "
                         + ", ".join(f"{k}={v}" for k, v in sorted(s.unfinished_rows.items())))
        for cause, n in s.failed_causes.items():
            lines.append(f"[{s.mode}]   FAILED x{n}: {cause}")
        for e in s.examples:
            lines.append(f"[{s.mode}]   {e}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI form: 1,000 tasks, 5 actors, <= 10 MB, kills every 2 s")
    ap.add_argument("--tasks", type=int, help="tasks to run (default 10,000; --short 1,000)")
    ap.add_argument("--actors", type=int, help="stateful actors (default 20; --short 5)")
    ap.add_argument("--duration", type=float, default=0.0, help="stop starting waves after this many seconds (0: no cap)")
    ap.add_argument("--max-bytes", type=int, help="largest object (default 100 MB; --short 10 MB)")
    ap.add_argument("--kill-interval", type=float, help="seconds between worker kills (default 1; --short 2)")
    ap.add_argument("--node-kill-at", type=float, default=0.4, help="fraction of the waves after which a node dies")
    ap.add_argument("--node-kill-delay", type=float, default=2.0, help="seconds into that wave the node dies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wave", type=int, default=200, help="jobs submitted before their results are checked")
    ap.add_argument("--max-retries", type=int, default=20, help="max_retries of every task")
    ap.add_argument("--actor-calls-per-wave", type=int, default=3)
    ap.add_argument("--get-timeout", type=float,
                    help="a wave's results not ready after this many s are hangs (default 120; --short 60)")
    ap.add_argument("--cpus-per-node", type=int, default=2)
    ap.add_argument("--store-bytes", type=int, help="object store per node (default 512 MB; --short 256 MB)")
    ap.add_argument("--node-dead-timeout", type=float, default=5.0)
    ap.add_argument("--no-faults", action="store_true", help="run only the baseline without faults")
    ap.add_argument("--skip-baseline", action="store_true", help="run only the run with faults")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON line at the end")
    ap.add_argument("--verbose", "-v", action="store_true", help="print progress after every wave")
    args = ap.parse_args(argv)
    short = args.short
    if args.tasks is None:
        args.tasks = 1_000 if short else 10_000
    if args.actors is None:
        args.actors = 5 if short else 20
    if args.max_bytes is None:
        args.max_bytes = (10 if short else 100) * 2**20
    if args.get_timeout is None:
        args.get_timeout = 60.0 if short else 120.0
    if args.kill_interval is None:
        args.kill_interval = 2.0 if short else 1.0
    if args.store_bytes is None:
        args.store_bytes = (256 if short else 512) * 2**20
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (``timeout``, a CI deadline) unwinds like Ctrl-C: the cluster's nodes are shut down, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    runs: list[Stats] = []
    if not args.skip_baseline:
        runs.append(run_once(args, faults=False))
    if not args.no_faults:
        runs.append(run_once(args, faults=True))
    print(render(runs), flush=True)
    if args.json:
        print(json.dumps({"args": vars(args), "runs": [asdict(s) for s in runs]}), flush=True)
    bad = sum(s.wrong + s.lost + s.hangs for s in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
