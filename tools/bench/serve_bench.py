"""Serve benchmark: HTTP requests/s and latency for a no-op and a small numpy model, plus handle calls/s.

Each HTTP scenario runs the same handler three ways in one run: bare uvicorn +
Starlette in one process (the physical reference), distcore Serve (one replica),
and with ``--compare ray`` Ray Serve 2.60 from ``.venv-ray``. Load comes from
``wrk`` (fixed connections) when installed, else an asyncio HTTP/1.1 generator at
the same concurrency.

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


def run_wrk(url: str, connections: int, duration: float) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "--latency", url],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": int(errors.group(1)) if errors else 0}


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
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "errors": errors}


def load(port: int, path: str, connections: int, duration: float) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    # warm up, then measure
    if shutil.which("wrk"):
        run_wrk(url, connections, 1)
        out = run_wrk(url, connections, duration)
        out["tool"] = "wrk"
        return out
    asyncio.run(_asyncio_load("127.0.0.1", port, path, connections, 1))
    out = asyncio.run(_asyncio_load("127.0.0.1", port, path, connections, duration))
    out["tool"] = "asyncio"
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


def serve_side(system: str, port: int, connections: int, duration: float, handle_seconds: float) -> dict:
    """Runs the distcore (or Ray) Serve scenarios in this process; returns the results."""
    if system == "ray":
        import ray
        from ray import serve

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"port": port})
    else:
        import distcore as ray
        from distcore import serve

        ray.init(num_cpus=2, log_to_driver=False)
        serve.start(http_options={"port": port})

    @serve.deployment(max_ongoing_requests=100)
    class Noop:
        async def __call__(self, request=None):
            return "ok"

    @serve.deployment(max_ongoing_requests=100)
    class Model:
        def __init__(self):
            self.weights = make_weights()

        async def __call__(self, request):
            return predict(self.weights, int(request.query_params.get("seed", "0")))

    results = {}
    serve.run(Noop.bind(), name="noop", route_prefix="/noop")
    serve.run(Model.bind(), name="model", route_prefix="/model")
    results["noop"] = load(port, "/noop", connections, duration)
    results["model"] = load(port, "/model?seed=3", connections, duration)
    handle = serve.get_app_handle("noop")
    handle.remote().result()
    results["handle_sync"] = handle_rate(handle, handle_seconds, 1)
    results["handle_concurrent"] = handle_rate(handle, handle_seconds, 16)
    serve.shutdown()
    ray.shutdown()
    return results


# ----------------------------------------------------------------------------- orchestration


def run_bare(connections: int, duration: float) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--_bare", str(port)])
    try:
        wait_port(port)
        return {"noop": load(port, "/noop", connections, duration),
                "model": load(port, "/model?seed=3", connections, duration)}
    finally:
        proc.terminate()
        proc.wait(30)


def run_serve(system: str, connections: int, duration: float, handle_seconds: float) -> dict:
    python = RAY_PYTHON if system == "ray" else sys.executable
    args = [python, __file__, "--_serve", system, "--connections", str(connections), "--duration", str(duration),
            "--handle-seconds", str(handle_seconds)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{system} serve benchmark failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["ray"], default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--handle-seconds", type=float, default=3.0)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--_bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._bare is not None:
        bare_server(args._bare)
        return
    if args._serve is not None:
        res = serve_side(args._serve, free_port(), args.connections, args.duration, args.handle_seconds)
        print("RESULT " + json.dumps(res), flush=True)
        return

    print(f"load: {'wrk' if shutil.which('wrk') else 'asyncio generator'}, {args.connections} connections, "
          f"{args.duration:g} s per point; machine: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results = {"bare": run_bare(args.connections, args.duration),
               "distcore": run_serve("distcore", args.connections, args.duration, args.handle_seconds)}
    if args.compare == "ray":
        results["ray"] = run_serve("ray", args.connections, args.duration, args.handle_seconds)
    print()
    print("| workload | system | req/s | p50 ms | p99 ms | non-2xx | vs bare |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for workload in ("noop", "model"):
        bare_rps = results["bare"][workload]["rps"]
        for system in ("bare", "distcore", "ray"):
            if system not in results:
                continue
            r = results[system][workload]
            print(f"| {workload} | {system} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['errors']} | {r['rps'] / bare_rps:.0%} |")
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
