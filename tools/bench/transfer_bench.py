"""Cross-node object transfer throughput: one object pulled between two nodes.

Starts a two-node cluster on this machine (``distcore.cluster_utils.Cluster``:
separate node processes, separate object stores), makes an object on the far
node with a task, and times

- ``pull``: the head's node manager pulling it from the far node's
  (``NodeManager.PullObject``: chunked server streaming into shared memory),
- ``get``: a driver on the head node calling ``distcore.get`` on a fresh
  object of the far node (owner lookup + pull + zero-copy map),

for each chunk size asked for (``DISTCORE_TRANSFER_CHUNK_BYTES``). The
references in the same run: one ``pwrite`` of the whole object into a fresh
shared-memory segment (what the receiver's store write costs with no network),
and the whole object as one unary message (``NodeManager.ReadObject``, the
previous design: unbounded memory). The node managers' peak resident memory
(``VmHWM``) shows the transfer streams.

    .venv/bin/python tools/bench/transfer_bench.py                  # 1 GiB, default (4 MiB) chunks
    .venv/bin/python tools/bench/transfer_bench.py --chunk-mib 1,4,8,16 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import distcore
from distcore._private.node_manager.object_transfer import DEFAULT_CHUNK_BYTES
from distcore.cluster_utils import Cluster

MiB = 1024 * 1024


def _vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _write_baseline(size: int) -> float:
    """Seconds to pwrite ``size`` bytes into a fresh shared-memory segment (no network)."""
    from distcore._private.object_store import shm

    data = np.ones(size, dtype=np.uint8)
    name = shm.segment_name(f"bench{os.getpid()}", "ab")
    start = time.perf_counter()
    with shm.create_segment(name, size) as seg:
        seg.write(memoryview(data))
    elapsed = time.perf_counter() - start
    shm.unlink_segment(name)
    return elapsed


def _run_one(size: int, chunk: int, repeat: int, unary: bool) -> list[tuple[str, float, float, float]]:
    """Rows of (what, seconds, GB/s, peak RSS of the node managers in MiB) for one chunk size."""
    from distcore._private import worker_state
    from distcore._private.node_manager.object_transfer import PullObject

    os.environ["DISTCORE_TRANSFER_CHUNK_BYTES"] = str(chunk)
    store = size * 2 + 256 * MiB
    cluster = Cluster()
    rows = []
    try:
        head = cluster.add_node(num_cpus=1, object_store_memory=store)
        far = cluster.add_node(num_cpus=1, resources={"far": 1}, object_store_memory=store)
        cluster.connect()
        core = worker_state.core_worker()

        @distcore.remote(resources={"far": 1})
        def make(n: int) -> np.ndarray:
            return np.ones(n, dtype=np.uint8)

        def fresh():
            ref = make.remote(size)
            distcore.wait([ref], timeout=300)
            return ref

        baseline_rss = max(_vm_hwm_mib(head.pid), _vm_hwm_mib(far.pid))
        label = f"{chunk / MiB:g} MiB chunks"
        pulls = []
        for _ in range(repeat):
            ref = fresh()
            start = time.perf_counter()
            _, got = core.run(core.node().call("NodeManager", "PullObject", PullObject(ref.hex(), far.node_id)))
            pulls.append(time.perf_counter() - start)
            assert got >= size, got
            del ref
        peak = max(_vm_hwm_mib(head.pid), _vm_hwm_mib(far.pid))
        best = min(pulls)
        rows.append((f"pull, {label} (best of {repeat})", best, size / best / 1e9, peak - baseline_rss))
        med = statistics.median(pulls)
        rows.append((f"pull, {label} (median)", med, size / med / 1e9, peak - baseline_rss))
        ref = fresh()
        start = time.perf_counter()
        value = distcore.get(ref)
        elapsed = time.perf_counter() - start
        assert value.nbytes == size and value[0] == 1 and value[-1] == 1
        del value, ref
        peak = max(_vm_hwm_mib(head.pid), _vm_hwm_mib(far.pid))
        rows.append((f"get on the head, {label}", elapsed, size / elapsed / 1e9, peak - baseline_rss))
        if unary:
            ref = fresh()
            start = time.perf_counter()
            data = core.run(core.clients.get(far.address).call("NodeManager", "ReadObject", ref.hex()))
            elapsed = time.perf_counter() - start
            assert len(data) >= size
            del data, ref
            peak = max(_vm_hwm_mib(head.pid), _vm_hwm_mib(far.pid))
            rows.append(("one unary message (previous design, bytes only)", elapsed, size / elapsed / 1e9,
                         peak - baseline_rss))
    finally:
        cluster.shutdown()
        os.environ.pop("DISTCORE_TRANSFER_CHUNK_BYTES", None)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="object size in MiB (default 1024)")
    ap.add_argument("--chunk-mib", default=str(DEFAULT_CHUNK_BYTES / MiB).rstrip("0").rstrip("."),
                    help="comma-separated chunk sizes in MiB (default: the node manager's default)")
    ap.add_argument("--repeat", type=int, default=3, help="pulls per chunk size (default 3)")
    ap.add_argument("--no-unary", action="store_true", help="skip the whole-object unary reference")
    args = ap.parse_args(argv)
    size = args.size_mib * MiB
    chunks = [int(float(c) * MiB) for c in args.chunk_mib.split(",")]
    print(f"# {sys.executable} tools/bench/transfer_bench.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"# object: {size / MiB:.0f} MiB; two node processes on one machine ({os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start); GB = 1e9 bytes")
    rows = [("reference: pwrite into a fresh shm segment (no network)", t := _write_baseline(size), size / t / 1e9,
             float("nan"))]
    for i, chunk in enumerate(chunks):
        rows += _run_one(size, chunk, args.repeat, unary=not args.no_unary and i == len(chunks) - 1)
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  {'GB/s':>6}  {'node mgr peak RSS +MiB':>22}")
    for what, seconds, gbps, rss in rows:
        rss_text = "" if rss != rss else f"{rss:.0f}"
        print(f"{what:<{width}}  {seconds:>8.3f}  {gbps:>6.2f}  {rss_text:>22}")


if __name__ == "__main__":
    main()
