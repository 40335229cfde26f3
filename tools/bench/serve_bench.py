"""Serve benchmark: HTTP requests/s and latency for a no-op and a small numpy model, plus handle calls/s.

Each HTTP scenario runs the same handler three ways in one run: bare uvicorn +
Starlette in one process (the physical reference), distcore Serve (one replica),
and with ``--compare ray`` Ray Serve 2.60 from ``.venv-ray``. Load comes from
``wrk`` (fixed connections) when installed, else an asyncio HTTP/1.1 generator at
the same concurrency.

Bare and distcore servers run side by side and the load alternates between them
for ``--rounds`` rounds (the median is reported), so a change in the machine's
load hits both; the serving processes' CPU time per request (us/req, from /proc)
is reported too, as it moves much less with the load than req/s does.

    .venv/bin/python tools/bench/serve_bench.py                 # distcore + bare
    .venv/bin/python tools/bench/serve_bench.py --compare ray   # + Ray Serve
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY_PYTHON = os.path.join(ROOT, ".venv-ray", "bin", "python")

# ----------------------------------------------------------------------------- the workloads

MODEL_DIM = 256


def make_weights():
    import numpy as np

    return np.random.default_rng(0).standard_normal((MODEL_DIM, 16)).astype("float32")


def predict(weights, seed: int) -> list[int]:
    import numpy as np

    x = np.random.default_rng(seed).standard_normal((8, MODEL_DIM)).astype("float32")
    return (x @ weights).argmax(axis=1).tolist()


# ----------------------------------------------------------------------------- load generation


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, connections: int, duration: float) -> dict:
    # wrk and every server run in sessions of their own: on a kernel with sched_autogroup (this box), a
    # server sharing wrk's session is scheduled as one group with it and wins a loaded machine's CPU
    # (measured: the same uvicorn app did 15k req/s in wrk's group vs 5-9k in its own, as distcore's
    # workers are), which would measure the scheduler rather than the server
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", url],
                         capture_output=True, text=True, timeout=duration + 60, start_new_session=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # anchored: the thread-stats line ends in a percentage (e.g. "98.99%") that must not match
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": int(errors.group(1)) if errors else 0, "n": n}


async def _asyncio_load(host: str, port: int, path: str, connections: int, duration: float) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + duration

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "errors": errors, "n": len(latencies)}


def load(port: int, path: str, connections: int, duration: float, pids: list[int] | None = None) -> dict:
    """Warm up 1 s, then measure; with ``pids``, also their CPU microseconds per request."""
    url = f"http://127.0.0.1:{port}{path}"
    if shutil.which("wrk"):
        run_wrk(url, connections, 1)
        before = cpu_seconds(pids or [])
        out = run_wrk(url, connections, duration)
        out["tool"] = "wrk"
    else:
        asyncio.run(_asyncio_load("127.0.0.1", port, path, connections, 1))
        before = cpu_seconds(pids or [])
        out = asyncio.run(_asyncio_load("127.0.0.1", port, path, connections, duration))
        out["tool"] = "asyncio"
    if pids:
        out["cpu_us"] = (cpu_seconds(pids) - before) / max(1, out["n"]) * 1e6
    return out


# ----------------------------------------------------------------------------- the three servers


def bare_server(port: int) -> None:
    """Runs in a subprocess: the same handlers on plain uvicorn + Starlette."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    weights = make_weights()

    async def noop(request):
        return PlainTextResponse("ok")

    async def model(request):
        return JSONResponse(predict(weights, int(request.query_params.get("seed", "0"))))

    app = Starlette(routes=[Route("/noop", noop), Route("/model", model)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def handle_rate(handle, seconds: float, concurrent: int) -> float:
    """Calls/s: ``concurrent`` calls in flight (1 = a sync loop)."""
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if concurrent == 1:
            handle.remote().result()
            n += 1
        else:
            responses = [handle.remote() for _ in range(concurrent)]
            for r in responses:
                r.result()
            n += concurrent
    return n / (time.perf_counter() - t0)


def serve_side(system: str, port: int, handle_seconds: float) -> None:
    """Runs in a subprocess: starts distcore (or Ray) Serve with both apps, prints ``READY {port, pids}``,
    then answers ``handle`` (handle-call rates as ``RESULT {...}``) and ``quit`` read from stdin."""
    if system == "ray":
        import ray
        from ray import serve

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"port": port})
    else:
        import distcore as ray
        from distcore import serve

        ray.init(num_cpus=2, log_to_driver=False)
        serve.start(http_options={"port": port, "colocate_ingress": os.environ.get("SERVE_BENCH_COLOCATE") == "1"})

    @serve.deployment(max_ongoing_requests=100)
    class Noop:
        async def __call__(self, request=None):
            return "ok"

        def pid(self) -> int:
            return os.getpid()

    @serve.deployment(max_ongoing_requests=100)
    class Model:
        def __init__(self):
            self.weights = make_weights()

        async def __call__(self, request):
            return predict(self.weights, int(request.query_params.get("seed", "0")))

        def pid(self) -> int:
            return os.getpid()

    noop = serve.run(Noop.bind(), name="noop", route_prefix="/noop")
    model = serve.run(Model.bind(), name="model", route_prefix="/model")
    pids = {"noop": [noop.pid.remote().result()], "model": [model.pid.remote().result()]}
    if system == "distcore":
        proxy = ray.get_actor("SERVE_PROXY", namespace="serve")
        proxy_pid = ray.get(proxy.stats.remote())["pid"]
        pids = {k: [proxy_pid] + [p for p in v if p != proxy_pid] for k, v in pids.items()}
    else:
        pids = {}  # Ray's proxy process is not found here: no CPU per request for Ray
    print("READY " + json.dumps({"port": port, "pids": pids}), flush=True)
    for line in sys.stdin:
        if line.strip() == "handle":
            handle = serve.get_app_handle("noop")
            handle.remote().result()
            res = {"handle_sync": handle_rate(handle, handle_seconds, 1),
                   "handle_concurrent": handle_rate(handle, handle_seconds, 16)}
            print("RESULT " + json.dumps(res), flush=True)
        elif line.strip() == "quit":
            break
    serve.shutdown()
    ray.shutdown()


# ----------------------------------------------------------------------------- orchestration


class Server:
    """A serving subprocess (bare, distcore or Ray) and the pids whose CPU counts for it."""

    def __init__(self, system: str, handle_seconds: float) -> None:
        self.system = system
        if system == "bare":
            self.port = free_port()
            self.proc = subprocess.Popen([sys.executable, __file__, "--_bare", str(self.port)], start_new_session=True)
            wait_port(self.port)
            self.pids = {"noop": [self.proc.pid], "model": [self.proc.pid]}
            return
        python = RAY_PYTHON if system == "ray" else sys.executable
        self.proc = subprocess.Popen([python, __file__, "--_serve", system, "--handle-seconds", str(handle_seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        info = self._expect("READY ", 600)
        self.port, self.pids = info["port"], info["pids"]

    def _expect(self, prefix: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return json.loads(line[len(prefix):])
            if time.monotonic() > deadline:
                break
        self.proc.kill()
        self.proc.wait(30)
        raise RuntimeError(f"{self.system} serve benchmark process failed (exit {self.proc.poll()})")

    def handle_rates(self) -> dict:
        self.proc.stdin.write("handle\n")
        self.proc.stdin.flush()
        return self._expect("RESULT ", 300)

    def stop(self) -> None:
        if self.system == "bare":
            self.proc.terminate()
        else:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


PATHS = {"noop": "/noop", "model": "/model?seed=3"}


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _summarize(runs: list[dict]) -> dict:
    out = {k: _median([r[k] for r in runs]) for k in ("rps", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    if all("cpu_us" in r for r in runs):
        out["cpu_us"] = _median([r["cpu_us"] for r in runs])
    out["rounds"] = [round(r["rps"]) for r in runs]
    return out


def measure(servers: list[Server], connections: int, duration: float, rounds: int) -> dict:
    """Alternate the load between the servers, ``rounds`` times per workload; medians per server."""
    raw: dict[str, dict[str, list[dict]]] = {s.system: {w: [] for w in PATHS} for s in servers}
    for _ in range(rounds):
        for workload, path in PATHS.items():
            for server in servers:
                raw[server.system][workload].append(
                    load(server.port, path, connections, duration, server.pids.get(workload)))
    return {system: {w: _summarize(runs) for w, runs in per.items()} for system, per in raw.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["ray"], default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured point")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--handle-seconds", type=float, default=3.0)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--colocate", action="store_true",
                        help="distcore: host the ingress replica in the proxy (http_options colocate_ingress)")
    parser.add_argument("--_bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._bare is not None:
        bare_server(args._bare)
        return
    if args._serve is not None:
        serve_side(args._serve, free_port(), args.handle_seconds)
        return

    print(f"load: {'wrk' if shutil.which('wrk') else 'asyncio generator'}, {args.connections} connections, "
          f"{args.duration:g} s per point, {args.rounds} alternating rounds (medians); machine: "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.colocate:
        os.environ["SERVE_BENCH_COLOCATE"] = "1"
    servers = [Server("bare", args.handle_seconds), Server("distcore", args.handle_seconds)]
    try:
        results = measure(servers, args.connections, args.duration, args.rounds)
        results["distcore"].update(servers[1].handle_rates())
    finally:
        for server in servers:
            server.stop()
    print(f"load average after bare/distcore: {os.getloadavg()[0]:.1f}", flush=True)
    if args.compare == "ray":
        report(results)  # printed first, so a Ray that fails to start does not lose them
        try:
            ray_server = Server("ray", args.handle_seconds)
            try:
                results.update(measure([ray_server], args.connections, args.duration, 1))
                results["ray"].update(ray_server.handle_rates())
            finally:
                ray_server.stop()
        except RuntimeError as exc:
            print(f"Ray Serve run failed: {exc}", flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict) -> None:
    print()
    print("| workload | system | req/s | p50 ms | p99 ms | non-2xx | vs bare | CPU us/req | req/s per round |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for workload in PATHS:
        bare_rps = results["bare"][workload]["rps"]
        for system in ("bare", "distcore", "ray"):
            if system not in results:
                continue
            r = results[system][workload]
            cpu = f"{r['cpu_us']:.0f}" if "cpu_us" in r else "-"
            print(f"| {workload} | {system} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['errors']} | {r['rps'] / bare_rps:.0%} | {cpu} | {', '.join(map(str, r['rounds']))} |")
    print()
    print("| handle calls (no HTTP) | distcore calls/s | ray calls/s | distcore / ray |")
    print("|---|---:|---:|---:|")
    for key, label in (("handle_sync", "sync loop, 1 in flight"), ("handle_concurrent", "16 in flight")):
        d = results["distcore"][key]
        r = results.get("ray", {}).get(key)
        ratio = f"{d / r:.1f}x" if r else "-"
        print(f"| {label} | {d:,.0f} | {f'{r:,.0f}' if r else '-'} | {ratio} |")
    if "ray" in results:
        print()
        print(f"no-op HTTP: distcore / ray = {results['distcore']['noop']['rps'] / results['ray']['noop']['rps']:.1f}x")


if __name__ == "__main__":
    main()
