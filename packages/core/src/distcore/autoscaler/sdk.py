"""``request_resources``: ask the autoscaler for capacity ahead of demand.

Example::

    import distcore
    from distcore.autoscaler.sdk import request_resources

    distcore.init(address="auto")
    request_resources(num_cpus=4, bundles=[{"GPU": 1}])
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence

__all__ = ["request_resources"]


def request_resources(
    num_cpus: int | None = None,
    bundles: Sequence[Mapping[str, float]] | None = None,
) -> None:
    """Scale the cluster to fit ``num_cpus`` one-CPU bundles plus ``bundles``, right away.

    As in Ray, a call replaces the previous request (call with nothing to
    clear it), and the request counts the cluster's *total* capacity, not its
    free capacity: ``request_resources(num_cpus=100)`` while 45 one-CPU tasks
    run adds nodes until 100 CPUs exist, not 145. The autoscaler keeps the
    nodes that hold the request, even when idle, until the request changes.
    Without an autoscaler on the head the request is stored and has no effect.

    Example::

        request_resources(num_cpus=2)                          # 2 x {"CPU": 1}
        request_resources(bundles=[{"CPU": 1, "GPU": 1}] * 2)  # replaces it
        request_resources()                                    # clears it
    """
    from distcore._private import protocol as p
    from distcore._private import worker_state
    from distcore._private.autoscaler.config import REQUEST_KV_KEY, REQUEST_KV_NAMESPACE

    to_request: list[dict[str, float]] = []
    if num_cpus is not None:
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 0:
            raise TypeError(f"request_resources: num_cpus must be an integer >= 0, got {num_cpus!r}")
        to_request += [{"CPU": 1.0} for _ in range(num_cpus)]
    if bundles is not None:
        if isinstance(bundles, Mapping) or not isinstance(bundles, Sequence):
            raise TypeError(
                f"request_resources: bundles must be a list of dicts like [{{'CPU': 1}}], got {bundles!r}"
            )
        for i, bundle in enumerate(bundles):
            to_request.append(_bundle(bundle, i))
    core = worker_state.core_worker()
    if core is None:
        raise RuntimeError("request_resources() needs a connected cluster: call distcore.init() first")
    value = json.dumps({"bundles": to_request, "time": time.time()}).encode()
    core.run(
        core.gcs().call("Gcs", "KvPut", p.KvPut(REQUEST_KV_NAMESPACE, REQUEST_KV_KEY, value, overwrite=True)),
        timeout=30,
    )


def _bundle(bundle: object, index: int) -> dict[str, float]:
    if not isinstance(bundle, Mapping) or not bundle:
        raise TypeError(f"request_resources: bundles[{index}] must be a non-empty dict of resource amounts, got {bundle!r}")
    out: dict[str, float] = {}
    for name, amount in bundle.items():
        if (
            not isinstance(name, str) or isinstance(amount, bool) or not isinstance(amount, int | float)
            or amount < 0 or math.isnan(amount)
        ):
            raise ValueError(
                f"request_resources: bundles[{index}] must map resource names to numbers >= 0, "
                f"got {name!r}: {amount!r}"
            )
        out[name] = float(amount)
    return out
