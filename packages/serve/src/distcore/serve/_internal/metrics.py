"""The proxy's request metrics, written in Prometheus text format at ``/-/metrics``."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

BUCKETS_MS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class _Histogram:
    __slots__ = ("counts", "total", "n")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_MS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.total += ms
        self.n += 1


class ProxyMetrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], _Histogram] = defaultdict(_Histogram)

    def record(self, app: str, deployment: str, route: str, status: int, ms: float) -> None:
        self.requests[(app, deployment, route, status)] += 1
        if status >= 500 or status == 408:
            self.errors[(app, deployment, str(status))] += 1
        self.latency[(app, deployment)].observe(ms)

    def render(self, queue_lengths: Callable[[], dict[tuple[str, str], tuple[int, int]]]) -> str:
        out: list[str] = []
        out.append("# HELP serve_num_http_requests_total HTTP requests handled by the proxy.")
        out.append("# TYPE serve_num_http_requests_total counter")
        for (app, dep, route, status), n in sorted(self.requests.items()):
            out.append(f'serve_num_http_requests_total{{application="{app}",deployment="{dep}",route="{route}",'
                       f'status_code="{status}"}} {n}')
        out.append("# HELP serve_num_http_error_requests_total HTTP requests that failed (5xx, 408).")
        out.append("# TYPE serve_num_http_error_requests_total counter")
        for (app, dep, status), n in sorted(self.errors.items()):
            out.append(f'serve_num_http_error_requests_total{{application="{app}",deployment="{dep}",'
                       f'error_code="{status}"}} {n}')
        out.append("# HELP serve_http_request_latency_ms End-to-end latency of HTTP requests at the proxy.")
        out.append("# TYPE serve_http_request_latency_ms histogram")
        for (app, dep), h in sorted(self.latency.items()):
            labels = f'application="{app}",deployment="{dep}"'
            acc = 0
            for bound, c in zip(BUCKETS_MS, h.counts[:-1], strict=True):
                acc += c
                out.append(f'serve_http_request_latency_ms_bucket{{{labels},le="{bound}"}} {acc}')
            out.append(f'serve_http_request_latency_ms_bucket{{{labels},le="+Inf"}} {h.n}')
            out.append(f"serve_http_request_latency_ms_sum{{{labels}}} {h.total:.3f}")
            out.append(f"serve_http_request_latency_ms_count{{{labels}}} {h.n}")
        out.append("# HELP serve_deployment_queued_queries Requests waiting in this proxy for a replica.")
        out.append("# TYPE serve_deployment_queued_queries gauge")
        qs = queue_lengths()
        for (app, dep), (queued, _) in sorted(qs.items()):
            out.append(f'serve_deployment_queued_queries{{application="{app}",deployment="{dep}"}} {queued}')
        out.append("# HELP serve_deployment_ongoing_requests Requests this proxy has sent and not yet answered.")
        out.append("# TYPE serve_deployment_ongoing_requests gauge")
        for (app, dep), (_, ongoing) in sorted(qs.items()):
            out.append(f'serve_deployment_ongoing_requests{{application="{app}",deployment="{dep}"}} {ongoing}')
        return "\n".join(out) + "\n"
