"""Where serve's tail latency is spent: wrk's p50/p99 against the proxy's own latency histogram.

Starts a local cluster with a no-op deployment (as ``serve_bench.py``'s), drives it with
``wrk -t2 -c16`` for ``--rounds`` rounds of ``--duration`` s, and scrapes the proxy's
``serve_http_request_latency_ms`` histogram (request parsed to response written) from
``/-/metrics`` around each round. When wrk's p99 is far above the proxy's, the time is spent outside
the proxy's handling of a request (socket queues, the load generator, the machine's scheduling).
``--sched`` also records ``perf sched`` over 3 s of the last round and prints the per-task
scheduling delays (needs ``perf`` and permission to trace).

    .venv/bin/python tools/bench/serve_tail.py --rounds 3
    .venv/bin/python tools/bench/serve_tail.py --rounds 1 --sched
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import distcore
from distcore import serve


def scrape(port: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/-/metrics", timeout=10).read().decode()
    pattern = r'serve_http_request_latency_ms_bucket\{[^}]*application="noop"[^}]*le="([^"]+)"\} (\d+)'
    return {bound: int(count) for bound, count in re.findall(pattern, text)}


def bucket_at(before: dict[str, int], after: dict[str, int], q: float) -> tuple[str, int]:
    """The smallest bucket bound holding a fraction ``q`` of the round's requests, and their count."""
    deltas = [(bound, after[bound] - before.get(bound, 0)) for bound in after]
    total = deltas[-1][1]
    for bound, count in deltas:
        if count >= q * total:
            return bound, total
    return "+Inf", total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--sched", action="store_true", help="perf sched record over 3 s of the last round")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    distcore.init(num_cpus=2, log_to_driver=False)
    try:
        serve.start(http_options={"port": args.port})

        @serve.deployment(max_ongoing_requests=100)
        class Noop:
            async def __call__(self, request=None):
                return "ok"

        serve.run(Noop.bind(), name="noop", route_prefix="/noop")
        url = f"http://127.0.0.1:{args.port}/noop"
        subprocess.run(["wrk", "-t2", "-c16", "-d1s", url], capture_output=True, timeout=60)  # warm-up
        print("| round | wrk req/s | wrk p50 | wrk p99 | proxy p50 <= | proxy p99 <= | proxy p99.9 <= | requests |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        perf_data = tempfile.mktemp(suffix=".perf")
        for i in range(args.rounds):
            before = scrape(args.port)
            perf = None
            if args.sched and i == args.rounds - 1 and shutil.which("perf"):
                perf = subprocess.Popen(["perf", "sched", "record", "-o", perf_data, "--", "sleep", "3"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = subprocess.run(["wrk", "-t2", "-c16", f"-d{args.duration}s", "--latency", url], capture_output=True,
                                 text=True, timeout=args.duration + 60, start_new_session=True).stdout
            after = scrape(args.port)
            if perf is not None:
                perf.wait(timeout=60)
            lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
            p50, n = bucket_at(before, after, 0.5)
            p99, _ = bucket_at(before, after, 0.99)
            p999, _ = bucket_at(before, after, 0.999)
            print(f"| {i + 1} | {float(rps):,.0f} | {lat.get('50')} | {lat.get('99')} | {p50} ms | {p99} ms "
                  f"| {p999} ms | {n:,} |")
        if args.sched and shutil.which("perf"):
            report = subprocess.run(["perf", "sched", "latency", "-i", perf_data, "--sort", "max"],
                                    capture_output=True, text=True, timeout=120).stdout
            print("\nperf sched latency (per task: CPU time, context switches, scheduling delays):")
            print("\n".join(report.splitlines()[:14]))
    finally:
        serve.shutdown()
        distcore.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
