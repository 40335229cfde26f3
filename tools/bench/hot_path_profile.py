"""Where a small task's time goes: the measurements behind docs/performance.md.

Diagnostics, not a benchmark: they patch distcore's internals (``rpc``,
``executor``) at run time, in every process of the cluster, through a
``sitecustomize`` put on ``PYTHONPATH`` (workers inherit the driver's
environment). A rename inside ``_private`` breaks them loudly; fix the patch.

    .venv/bin/python tools/bench/hot_path_profile.py segments   # per-task timeline, tasks sync + actor sync
    .venv/bin/python tools/bench/hot_path_profile.py rpcs       # RPCs per op, by process and method
    .venv/bin/python tools/bench/hot_path_profile.py cpu        # CPU per op in each process
    .venv-ray/bin/python tools/bench/hot_path_profile.py cpu --system ray   # the same for Ray
    .venv/bin/python tools/bench/hot_path_profile.py transport  # round trip: gRPC aio vs asyncio streams
    .venv/bin/python tools/bench/hot_path_profile.py cprofile tasks_sync   # driver's two threads
    .venv/bin/python tools/bench/hot_path_profile.py spy tasks_async       # py-spy every process

Clock: ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, so timestamps taken
in different processes are comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import pickle
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Installed as sitecustomize.py in every cluster process: records, per PushTask, when the
# handler was entered/left and when the executor ran the task; counts RPCs per method.
_SITECUSTOMIZE = r'''
import builtins, json, os, sys, threading, time
T, C = {}, {}
def _bump(key): C[key] = C.get(key, 0) + 1
def _dump():
    out = os.environ["HOT_PATH_DIR"]
    while True:
        time.sleep(0.3)
        try:
            data = json.dumps({"argv": sys.argv, "times": dict(T), "counts": dict(C)})
            with open(f"{out}/{os.getpid()}.tmp", "w") as f:
                f.write(data)
            os.replace(f"{out}/{os.getpid()}.tmp", f"{out}/{os.getpid()}.json")
        except (OSError, RuntimeError):
            pass
def _patch_rpc(rpc):
    orig_call = rpc.RpcClient.call
    async def call(self, service, method, request=None, timeout=None):
        _bump(f"out {service}.{method}")
        return await orig_call(self, service, method, request, timeout)
    rpc.RpcClient.call = call
    orig_wrap = rpc._wrap_unary
    def wrap(fn):
        inner = orig_wrap(fn)
        name = getattr(fn, "__name__", "?")
        async def handler(request, context):
            _bump(f"in {name}")
            if name != "rpc_PushTask":
                return await inner(request, context)
            tid = request.spec.task_id
            T.setdefault(tid, {})["srv_in"] = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                T[tid]["srv_out"] = time.perf_counter()
        return handler
    rpc._wrap_unary = wrap
    threading.Thread(target=_dump, daemon=True).start()
def _patch_framed(fr):
    orig = fr._ServerConnection._handle
    async def _handle(self, rid, method, request):
        _bump(f"in rpc_{method}")
        if method != "PushTask":
            return await orig(self, rid, method, request)
        tid = request.spec.task_id
        T.setdefault(tid, {})["srv_in"] = time.perf_counter()
        try:
            return await orig(self, rid, method, request)
        finally:
            T[tid]["srv_out"] = time.perf_counter()
    fr._ServerConnection._handle = _handle
def _patch_executor(ex):
    orig = ex.Executor.execute
    def execute(self, req):
        T.setdefault(req.spec.task_id, {})["exec_in"] = time.perf_counter()
        try:
            return orig(self, req)
        finally:
            T[req.spec.task_id]["exec_out"] = time.perf_counter()
    ex.Executor.execute = execute
_orig_import, _done = builtins.__import__, set()
def _import(name, *a, **k):
    module = _orig_import(name, *a, **k)
    rpc = sys.modules.get("distcore._private.rpc")
    if "rpc" not in _done and hasattr(rpc, "ClientPool"):
        _done.add("rpc"); _patch_rpc(rpc)
    ex = sys.modules.get("distcore._private.core_worker.executor")
    if "ex" not in _done and hasattr(ex, "Executor") and hasattr(ex, "_exit_after"):
        _done.add("ex"); _patch_executor(ex)
    fr = sys.modules.get("distcore._private.core_worker.framed_rpc")
    if "fr" not in _done and hasattr(fr, "_ServerConnection"):
        _done.add("fr"); _patch_framed(fr)
    if len(_done) == 3:
        builtins.__import__ = _orig_import
    return module
builtins.__import__ = _import
'''

SEGMENTS = (
    ("remote() on the caller's thread", "t0", "t1"),
    ("submit: hop to the io loop, lease if needed", "t1", "push_start"),
    ("PushTask request: transport to the worker's handler", "push_start", "srv_in"),
    ("worker: io loop to the executor thread", "srv_in", "exec_in"),
    ("execute: args, run, serialize the return", "exec_in", "exec_out"),
    ("worker: executor back to the io loop, reply", "exec_out", "srv_out"),
    ("PushTask reply: transport back to the owner's loop", "srv_out", "push_end"),
    ("owner: store the return, wake get(), deserialize", "push_end", "t2"),
    ("total", "t0", "t2"),
)


def _instrument() -> Path:
    """Write the sitecustomize, point PYTHONPATH at it; returns the directory processes report to."""
    site = Path(tempfile.mkdtemp(prefix="hot_path_site_"))
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    out = Path(tempfile.mkdtemp(prefix="hot_path_out_"))
    os.environ["HOT_PATH_DIR"] = str(out)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return out


def _reports(out: Path) -> list[dict[str, Any]]:
    reports = []
    for f in glob.glob(f"{out}/*.json"):
        try:
            reports.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError):
            pass
    return reports


def _reexec_instrumented(argv: list[str]) -> int:
    """Run this script again with the sitecustomize active from interpreter start (driver included)."""
    _instrument()
    return subprocess.call([sys.executable, __file__, *argv, "--instrumented"])


def _cluster() -> tuple[Any, Any, Any]:
    import importlib

    distcore = importlib.import_module(os.environ.get("HOT_PATH_SYSTEM", "distcore"))
    distcore.init()

    @distcore.remote
    def small_value() -> bytes:
        return b"ok"

    @distcore.remote(num_cpus=0)
    class Actor:
        def small_value(self) -> bytes:
            return b"ok"

    actor = Actor.remote()
    distcore.get(actor.small_value.remote())
    for _ in range(300):
        distcore.get(small_value.remote())
    distcore.get([small_value.remote() for _ in range(1000)])
    return distcore, small_value, actor


def cmd_segments(n: int) -> None:
    """Median and p90 of each segment of a sync task's life, tasks sync and 1:1 actor sync."""
    from distcore._private import rpc

    pushes: dict[str, dict[str, float]] = {}
    orig_call = rpc.RpcClient.call

    async def call(self: Any, service: str, method: str, request: Any = None, timeout: Any = None) -> Any:
        if method != "PushTask":
            return await orig_call(self, service, method, request, timeout)
        tid = request.spec.task_id
        pushes.setdefault(tid, {})["push_start"] = time.perf_counter()
        try:
            return await orig_call(self, service, method, request, timeout)
        finally:
            pushes[tid]["push_end"] = time.perf_counter()

    rpc.RpcClient.call = call  # type: ignore[method-assign]
    ray, small_value, actor = _cluster()
    for label, fn in (("single client tasks sync", small_value), ("1:1 actor calls sync", actor.small_value)):
        pushes.clear()
        order = []
        for _ in range(n):
            t0 = time.perf_counter()
            ref = fn.remote()
            t1 = time.perf_counter()
            ray.get(ref)
            order.append({"t0": t0, "t1": t1, "t2": time.perf_counter()})
        time.sleep(1.0)  # the workers' reports
        worker_times: dict[str, dict[str, float]] = {}
        for report in _reports(Path(os.environ["HOT_PATH_DIR"])):
            worker_times.update(report["times"])
        rows = []
        by_start = sorted(pushes.items(), key=lambda kv: kv[1]["push_start"])
        for stamps, (tid, push) in zip(order, by_start, strict=False):
            merged = {**stamps, **push, **worker_times.get(tid, {})}
            if all(k in merged for k in ("srv_in", "srv_out", "exec_in", "exec_out", "push_end")):
                rows.append(merged)
        print(f"\n{label}: {len(rows)} tasks; microseconds per segment (median, p90)")
        for what, a, b in SEGMENTS:
            xs = sorted(r[b] - r[a] for r in rows)
            print(f"  {what:<52} {statistics.median(xs) * 1e6:7.0f} {xs[int(len(xs) * 0.9)] * 1e6:7.0f}")
    ray.shutdown()


def cmd_rpcs(n: int) -> None:
    """RPCs per op for tasks sync, actor sync and tasks async, by process and method."""
    ray, small_value, actor = _cluster()
    out = Path(os.environ["HOT_PATH_DIR"])

    def snapshot() -> dict[tuple[str, str], int]:
        time.sleep(0.8)
        total: dict[tuple[str, str], int] = {}
        for report in _reports(out):
            role = Path(report["argv"][0]).stem
            role = "driver" if role == Path(__file__).stem else role
            for key, count in report["counts"].items():
                total[(role, key)] = total.get((role, key), 0) + count
        return total

    work = {
        "single client tasks sync": lambda: [ray.get(small_value.remote()) for _ in range(n)],
        "1:1 actor calls sync": lambda: [ray.get(actor.small_value.remote()) for _ in range(n)],
        "single client tasks async": lambda: ray.get([small_value.remote() for _ in range(n)]),
    }
    background = ("Heartbeat", "AddTaskEvents", "WatchClusterView", "Check", "ReportWorkerStats")
    for label, fn in work.items():
        before = snapshot()
        fn()
        after = snapshot()
        print(f"\n{label}: RPCs per op (n={n}; periodic heartbeats/task events left out)")
        for key in sorted(after):
            d = after[key] - before.get(key, 0)
            if d and not any(b in key[1] for b in background):
                print(f"  {key[0]:<16} {key[1]:<40} {d / n:6.3f}")
    ray.shutdown()


def cmd_cprofile(mode: str, seconds: float) -> None:
    """cProfile the driver's caller thread and its io-loop thread separately."""
    import cProfile
    import io
    import pstats
    import threading

    from distcore._private import worker_state

    ray, small_value, actor = _cluster()
    core = worker_state.core_worker()
    steps = {
        "tasks_sync": (lambda: ray.get(small_value.remote()), 1),
        "actor_sync": (lambda: ray.get(actor.small_value.remote()), 1),
        "tasks_async": (lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000),
    }
    step, per = steps[mode]
    main_pr, loop_pr = cProfile.Profile(), cProfile.Profile()
    ready = threading.Event()
    core.loop.call_soon_threadsafe(lambda: (loop_pr.enable(), ready.set()))
    ready.wait()
    main_pr.enable()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        n += per
    elapsed = time.perf_counter() - start
    main_pr.disable()
    ready.clear()
    core.loop.call_soon_threadsafe(lambda: (loop_pr.disable(), ready.set()))
    ready.wait()
    print(f"{mode}: {n / elapsed:.0f} ops/s under cProfile")
    for label, pr in (("caller thread", main_pr), ("io loop thread", loop_pr)):
        text = io.StringIO()
        pstats.Stats(pr, stream=text).sort_stats("tottime").print_stats(15)
        print(f"\n--- {label}, by own time:\n" + "\n".join(text.getvalue().splitlines()[4:]))
    ray.shutdown()


def cmd_spy(mode: str, seconds: float) -> None:
    """py-spy every process of the cluster during a hot loop; top own-time frames per process."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        raise SystemExit(f"{spy} is missing: {sys.executable} -m pip install py-spy")
    ready = Path(tempfile.mkdtemp()) / "ready"
    driver = subprocess.Popen([sys.executable, __file__, "_loop", mode, str(seconds + 8), str(ready)])
    while not ready.exists():
        time.sleep(0.2)
    pids = [driver.pid]
    for pid in list(pids):
        pids += [int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                 text=True).stdout.split()]
        for child in pids[1:]:
            pids += [int(x) for x in subprocess.run(["pgrep", "-P", str(child)], capture_output=True,
                                                     text=True).stdout.split() if int(x) not in pids]
    names = {}
    for pid in pids:
        try:
            names[pid] = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:70]
        except OSError:
            names[pid] = "(exited)"
    outdir = Path(tempfile.mkdtemp(prefix="hot_path_spy_"))
    spies = [subprocess.Popen([str(spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100",
                               "--nonblocking", "--format", "raw", "-o", str(outdir / f"{pid}.raw")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]
    for s in spies:
        s.wait()
    driver.wait()
    for pid in pids:
        path = outdir / f"{pid}.raw"
        if not path.exists():
            continue
        own: dict[str, int] = {}
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            total += int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        print(f"\n### pid {pid} {names[pid]} — {total} samples; own time:")
        for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  {count / max(total, 1):6.1%}  {frame[:120]}")


def cmd_loop(mode: str, seconds: float, ready: str) -> None:
    ray, small_value, actor = _cluster()
    steps = {"tasks_sync": lambda: ray.get(small_value.remote()),
             "actor_sync": lambda: ray.get(actor.small_value.remote()),
             "tasks_async": lambda: ray.get([small_value.remote() for _ in range(1000)])}
    Path(ready).touch()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps[mode]()
    ray.shutdown()


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """utime + stime (clock ticks) of this process and its descendants, by pid."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                pass
    family, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        family.append(pid)
        todo += [c for c, parent in parents.items() if parent == pid]
    out = {}
    for pid in family:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            role = argv[argv.index("-m") + 1].rsplit(".", 1)[-1] if "-m" in argv else Path(argv[0]).name
            if pid == os.getpid():
                role = "driver"
            elif role == "python" or role.startswith("python3"):
                role = Path(f"/proc/{pid}/comm").read_text().strip()  # Ray's workers name themselves
            out[pid] = (role, int(fields[11]) + int(fields[12]))
        except (OSError, IndexError):
            pass
    return out


def cmd_cpu(seconds: float) -> None:
    """CPU microseconds per op in each process (driver, node manager, workers) for the three hot paths."""
    ray, small_value, actor = _cluster()
    hz = os.sysconf("SC_CLK_TCK")
    steps = {
        "single client tasks sync": (lambda: ray.get(small_value.remote()), 1),
        "1:1 actor calls sync": (lambda: ray.get(actor.small_value.remote()), 1),
        "single client tasks async": (lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000),
    }
    for label, (step, per) in steps.items():
        before = _cpu_ticks()
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            step()
            n += per
        wall = time.perf_counter() - start
        after = _cpu_ticks()
        print(f"\n{label}: {n / wall:.0f} ops/s; CPU microseconds per op by process")
        total = 0.0
        for pid, (role, ticks) in sorted(after.items()):
            used = (ticks - before.get(pid, (role, ticks))[1]) / hz / n * 1e6
            total += used
            if used >= 1:
                print(f"  {role:<14} pid {pid:<8} {used:7.0f}")
        print(f"  {'all':<14} {'':12} {total:7.0f}  (wall per op {wall / n * 1e6:.0f} us, 2 CPUs)")
    ray.shutdown()


# ---------------------------------------------------------------- transport round trip

_MSG = {"task_id": "ab" * 14, "args": [b"x" * 50], "name": "small_value"}


def _grpc_server(port_q: Any, interceptor: bool) -> None:
    import grpc

    class Auth(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            dict(details.invocation_metadata or ())
            return await continuation(details)

    async def main() -> None:
        async def echo(req: Any, ctx: Any) -> bytes:
            return pickle.dumps(req)

        server = grpc.aio.server(interceptors=[Auth()] if interceptor else [])
        handler = grpc.unary_unary_rpc_method_handler(echo, request_deserializer=pickle.loads)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("S", {"Echo": handler}),))
        port_q.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _stream_server(port_q: Any) -> None:
    async def main() -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while True:
                try:
                    (size,) = struct.unpack("!I", await r.readexactly(4))
                except asyncio.IncompleteReadError:
                    return
                out = pickle.dumps(pickle.loads(await r.readexactly(size)))
                w.write(struct.pack("!I", len(out)) + out)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


async def _grpc_client(port: int, n: int) -> list[float]:
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = channel.unary_unary("/S/Echo", request_serializer=pickle.dumps, response_deserializer=pickle.loads)
    md = (("authorization", "Bearer x"),)
    for _ in range(300):
        await stub(_MSG, metadata=md)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await stub(_MSG, metadata=md)
        times.append(time.perf_counter() - t)
    await channel.close()
    return times


async def _stream_client(port: int, n: int) -> list[float]:
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def round_trip() -> Any:
        body = pickle.dumps(_MSG)
        w.write(struct.pack("!I", len(body)) + body)
        (size,) = struct.unpack("!I", await r.readexactly(4))
        return pickle.loads(await r.readexactly(size))

    for _ in range(300):
        await round_trip()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await round_trip()
        times.append(time.perf_counter() - t)
    w.close()
    return times


def cmd_transport(n: int) -> None:
    """One small pickled request/reply between two processes, sequentially, three ways."""
    import multiprocessing as mp

    cases = (("gRPC aio unary + auth interceptor (distcore today)", _grpc_server, (True,), _grpc_client),
             ("gRPC aio unary, no interceptor", _grpc_server, (False,), _grpc_client),
             ("asyncio streams, length-prefixed pickle", _stream_server, (), _stream_client))
    for label, target, extra, client in cases:
        q: Any = mp.Queue()
        proc = mp.Process(target=target, args=(q, *extra), daemon=True)
        proc.start()
        times = sorted(asyncio.run(client(q.get(), n)))
        proc.terminate()
        print(f"  {label:<52} median {statistics.median(times) * 1e6:5.0f} us, "
              f"p90 {times[int(len(times) * 0.9)] * 1e6:5.0f} us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("segments", "rpcs", "cpu", "transport", "cprofile", "spy", "_loop"))
    ap.add_argument("mode", nargs="?", default="tasks_sync", help="tasks_sync, actor_sync or tasks_async")
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("-n", type=int, default=1000, help="ops per measurement (default 1000)")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--system", choices=("distcore", "ray"), default="distcore",
                    help="cpu only: measure Ray instead (run this script with Ray's interpreter)")
    ap.add_argument("--instrumented", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.what != "_loop" and (args.instrumented or args.what not in ("segments", "rpcs")):
        print(f"# load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    os.environ["HOT_PATH_SYSTEM"] = args.system
    if args.what in ("segments", "rpcs") and not args.instrumented:
        return _reexec_instrumented(sys.argv[1:])
    if args.what == "segments":
        cmd_segments(args.n)
    elif args.what == "rpcs":
        cmd_rpcs(args.n)
    elif args.what == "cpu":
        cmd_cpu(args.seconds)
    elif args.what == "transport":
        cmd_transport(args.n)
    elif args.what == "cprofile":
        cmd_cprofile(args.mode, args.seconds)
    elif args.what == "spy":
        cmd_spy(args.mode, args.seconds)
    else:
        cmd_loop(args.mode, float(args.rest[0]), args.rest[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
