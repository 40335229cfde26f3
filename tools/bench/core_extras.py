"""The side-by-side extras of ``core_micro.py``: start-up, footprint, size, bulk tasks, limits.

Each measurement that needs a cluster runs in a fresh subprocess of the
system's own interpreter (``python core_extras.py --probe NAME --system S``,
which prints one JSON line), with identical code for distcore and Ray:

- ``init``: cold ``init()`` to the first task's result, ``import`` time and
  ``shutdown()`` time (a fresh process each time, alternating systems);
- ``footprint``: a one-node cluster after 3 s idle: the driver and all its
  descendant processes, their count, total RSS and PSS;
- ``tasks100k``: ``get`` of 100,000 empty tasks submitted at once;
- ``transfer``: ``get`` on the head of a 1 GiB object made on a second node
  (``cluster_utils.Cluster``, two nodes on this machine), and, when
  ``tools/bench/transfer_bench.py`` exists, its distcore pull rows;
- ``memcpy`` (this process): numpy copy GB/s of the 0.8 GB array the
  put-gigabytes lines put, the physical limit of a put;
- ``install_size``: site-packages of a fresh venv with only ``pip install
  --no-cache-dir distcore`` (from ``packages/core``) or ``ray==<.venv-ray's
  version>``, minus a bare venv's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULT = "@@RESULT "
GiB = 1024**3


def _module(system: str) -> Any:
    if system == "ray":
        import ray

        return ray
    import distcore

    return distcore


# ---------------------------------------------------------------- probes (fresh process)


def probe_init(system: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    ray = _module(system)
    t1 = time.perf_counter()
    ray.init()

    @ray.remote
    def f() -> int:
        return 1

    assert ray.get(f.remote()) == 1
    t2 = time.perf_counter()
    ray.shutdown()
    t3 = time.perf_counter()
    return {"import_s": t1 - t0, "init_to_first_s": t2 - t1, "shutdown_s": t3 - t2}


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _mem_kib(pid: int, path: str, key: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def probe_footprint(system: str) -> dict[str, Any]:
    ray = _module(system)
    ray.init()

    @ray.remote
    def f() -> int:
        return 1

    ray.get(f.remote())
    time.sleep(3.0)
    pids = _descendants(os.getpid())
    rss = {pid: _mem_kib(pid, "status", "VmRSS:") for pid in pids}
    pss = {pid: _mem_kib(pid, "smaps_rollup", "Pss:") for pid in pids}
    names: dict[str, int] = {}
    for pid in pids:
        names[_comm(pid)] = names.get(_comm(pid), 0) + 1
    out = {"processes": len(pids), "rss_mib": sum(rss.values()) / 1024, "pss_mib": sum(pss.values()) / 1024,
           "driver_rss_mib": rss[os.getpid()] / 1024, "by_name": names}
    ray.shutdown()
    return out


def probe_tasks100k(system: str) -> dict[str, Any]:
    n = int(os.environ.get("CORE_EXTRAS_BULK_TASKS", "100000"))
    ray = _module(system)
    ray.init()

    @ray.remote
    def f() -> None:
        return None

    ray.get([f.remote() for _ in range(1000)])  # warm the workers
    start = time.perf_counter()
    refs = [f.remote() for _ in range(n)]
    submitted = time.perf_counter()
    ray.get(refs)
    done = time.perf_counter()
    ray.shutdown()
    return {"tasks": n, "seconds": done - start, "submit_s": submitted - start, "per_s": n / (done - start)}


def probe_transfer(system: str, size: int = GiB, repeat: int = 3) -> dict[str, Any]:
    import numpy as np

    ray = _module(system)
    cluster_utils = __import__(f"{ray.__name__}.cluster_utils", fromlist=["Cluster"])
    cluster = cluster_utils.Cluster()
    try:
        cluster.add_node(num_cpus=1, object_store_memory=3 * GiB)
        cluster.add_node(num_cpus=1, resources={"far": 1}, object_store_memory=3 * GiB)
        cluster.connect()

        @ray.remote(resources={"far": 1})
        def make(n: int) -> Any:
            return np.ones(n, dtype=np.uint8)

        times = []
        for _ in range(repeat):
            ref = make.remote(size)
            ray.wait([ref], timeout=300, fetch_local=False)  # made, but not pulled here yet
            start = time.perf_counter()
            value = ray.get(ref)
            times.append(time.perf_counter() - start)
            assert value.nbytes == size
            del value, ref
        return {"bytes": size, "seconds": times, "best_gbps": size / min(times) / 1e9,
                "median_gbps": size / statistics.median(times) / 1e9}
    finally:
        ray.shutdown()
        cluster.shutdown()


def probe_transfer_bench(system: str) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import transfer_bench

    chunk = getattr(transfer_bench, "DEFAULT_CHUNK_BYTES", 4 * 1024 * 1024)
    rows = transfer_bench._run_one(GiB, chunk, 3, unary=False)
    return {"chunk_mib": chunk / 2**20, "rows": [{"what": w, "seconds": s, "gbps": g} for w, s, g, _rss in rows]}


PROBES: dict[str, Callable[[str], dict[str, Any]]] = {
    "init": probe_init, "footprint": probe_footprint, "tasks100k": probe_tasks100k,
    "transfer": probe_transfer, "transfer_bench": probe_transfer_bench,
}


# ---------------------------------------------------------------- driver side


def _probe(python: list[str], probe: str, system: str, timeout: float = 300) -> dict[str, Any]:
    cmd = [*python, str(Path(__file__).resolve()), "--probe", probe, "--system", system]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}"}


def memcpy_reference(repeat: int = 5) -> dict[str, Any]:
    """numpy copy GB/s of the put-gigabytes array (100 Mi int64), counted as those lines count it (0.8 GB)."""
    import numpy as np

    src = np.ones(100 * 1024 * 1024, dtype=np.int64)
    dst = np.empty_like(src)
    gb = 8 * 0.1  # as the put-gigabytes lines count one array
    warm, fresh = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        np.copyto(dst, src)
        warm.append(time.perf_counter() - start)
    del dst
    for _ in range(repeat):
        start = time.perf_counter()
        out = np.empty_like(src)  # fresh pages: the page faults a put into a new segment pays
        np.copyto(out, src)
        fresh.append(time.perf_counter() - start)
        del out
    return {"warm_gbps": gb / min(warm), "fresh_pages_gbps": gb / min(fresh)}


def _site_size(venv: Path) -> int:
    (site,) = list(venv.glob("lib/python*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def _pip_count(venv: Path) -> int:
    out = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
                         capture_output=True, text=True)
    try:
        return len(json.loads(out.stdout))
    except json.JSONDecodeError:
        return -1


def install_size(ray_python: list[str] | None) -> dict[str, Any]:
    """MiB that ``pip install --no-cache-dir X`` adds to a fresh venv's site-packages."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="install_size_") as tmp:
        base = Path(tmp) / "bare"
        py = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([py, "-m", "venv", str(base)], check=True)
        bare = _site_size(base)
        out["bare_venv_mib"] = bare / 2**20
        specs = {"distcore": [str(ROOT / "packages/core")]}
        if ray_python is not None:
            version = subprocess.run([*ray_python, "-c", "import ray; print(ray.__version__)"],
                                     capture_output=True, text=True).stdout.strip()
            specs["ray"] = [f"ray=={version}"]
        for name, spec in specs.items():
            venv = Path(tmp) / name
            subprocess.run([py, "-m", "venv", str(venv)], check=True)
            start = time.perf_counter()
            proc = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-cache-dir", *spec],
                                  capture_output=True, text=True, timeout=600)
            took = time.perf_counter() - start
            if proc.returncode == 0:
                out[name] = {"mib": (_site_size(venv) - bare) / 2**20, "packages": _pip_count(venv) - 2,
                             "install_s": took, "how": f"fresh venv: pip install --no-cache-dir {' '.join(spec)}"}
            else:
                out[name] = {"error": proc.stderr[-400:]}
        if "error" in out.get("ray", {}) and ray_python is not None:
            existing = Path(ray_python[0]).parents[1]
            out["ray"] = {"mib": (_site_size(existing) - bare) / 2**20, "how": f"{existing} minus a bare venv "
                          "(the fresh install failed; includes numpy)", "packages": _pip_count(existing) - 2}
    return out


def run_all(systems: list[str], skip: set[str], python_for: Callable[[str], list[str]],
            init_runs: int = 3) -> dict[str, Any]:
    """Every extra for ``systems``, alternating systems where a measurement repeats."""
    extras: dict[str, Any] = {}

    def say(what: str) -> None:
        print(f"  [extras] {what}", flush=True)

    if "init" not in skip:
        say("cold init() to first result, shutdown()")
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for i in range(init_runs):
            for s in systems if i % 2 == 0 else systems[::-1]:
                runs[s].append(_probe(python_for(s), "init", s, timeout=120))
        extras["init"] = runs
    if "footprint" not in skip:
        say("idle footprint")
        extras["footprint"] = {s: _probe(python_for(s), "footprint", s, timeout=120) for s in systems}
    if "tasks100k" not in skip:
        say("100,000 empty tasks")
        extras["tasks100k"] = {s: _probe(python_for(s), "tasks100k", s, timeout=400) for s in systems}
    if "memcpy" not in skip:
        say("memcpy reference")
        extras["memcpy"] = memcpy_reference()
    if "transfer" not in skip:
        say("cross-node transfer of 1 GiB")
        extras["transfer"] = {s: _probe(python_for(s), "transfer", s, timeout=300) for s in systems}
        if (HERE / "transfer_bench.py").exists():
            extras["transfer_bench"] = _probe(python_for("distcore"), "transfer_bench", "distcore", timeout=300)
    if "install_size" not in skip:
        say("installed size (fresh venvs, pip install --no-cache-dir)")
        extras["install_size"] = install_size(python_for("ray") if "ray" in systems else None)
    return extras


def _med(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def format_extras(extras: dict[str, Any]) -> str:
    """The extras as a markdown table: what | distcore | Ray."""
    rows: list[tuple[str, str, str]] = []

    def cell(d: dict[str, Any] | None, fmt: Callable[[dict[str, Any]], str]) -> str:
        if not d:
            return ""
        if "error" in d:
            return "error: " + d["error"].strip().splitlines()[-1][:80]
        return fmt(d)

    if "init" in extras:
        runs = extras["init"]
        for key, label in (("init_to_first_s", "cold init() to first task result"),
                           ("shutdown_s", "shutdown()"), ("import_s", "import")):
            vals = []
            for s in ("distcore", "ray"):
                ok = [r for r in runs.get(s, []) if "error" not in r]
                med = _med(ok, key)
                vals.append("" if s not in runs else f"{med:.2f} s (median of {len(ok)})" if med is not None
                            else "error: " + str(runs[s][0].get("error", "?"))[-80:])
            rows.append((label, vals[0], vals[1]))
    if "footprint" in extras:
        fp = extras["footprint"]

        def show(d: dict[str, Any]) -> str:
            return f"{d['processes']} processes, {d['rss_mib']:.0f} MiB RSS ({d['pss_mib']:.0f} MiB PSS)"

        rows.append(("idle one-node cluster after 3 s", cell(fp.get("distcore"), show), cell(fp.get("ray"), show)))
    if "tasks100k" in extras:
        t = extras["tasks100k"]

        def show(d: dict[str, Any]) -> str:
            return f"{d['per_s']:,.0f} tasks/s ({d['seconds']:.1f} s; submit {d['submit_s']:.1f} s)"

        rows.append(("100,000 empty tasks", cell(t.get("distcore"), show), cell(t.get("ray"), show)))
    if "transfer" in extras:
        t = extras["transfer"]

        def show(d: dict[str, Any]) -> str:
            return f"{d['best_gbps']:.2f} GB/s best, {d['median_gbps']:.2f} median"

        rows.append(("cross-node get of 1 GiB (2 nodes, 1 machine)", cell(t.get("distcore"), show),
                     cell(t.get("ray"), show)))
    if "install_size" in extras:
        size = extras["install_size"]

        def show(d: dict[str, Any]) -> str:
            return f"{d['mib']:.0f} MiB, {d['packages']} packages"

        rows.append(("pip install size (site-packages)", cell(size.get("distcore"), show),
                     cell(size.get("ray"), show)))
    lines = ["| extra | distcore | Ray |", "|---|---:|---:|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if "memcpy" in extras:
        m = extras["memcpy"]
        lines.append(f"\nmemcpy reference (the physical limit of a put; numpy copy of the 0.8 GB array, one "
                     f"thread): {m['warm_gbps']:.2f} GB/s into warm pages, {m['fresh_pages_gbps']:.2f} GB/s "
                     "into fresh pages")
    if "transfer_bench" in extras and "rows" in extras["transfer_bench"]:
        chunk = extras["transfer_bench"].get("chunk_mib", "?")
        lines.append(f"\ntools/bench/transfer_bench.py (distcore, 1 GiB, {chunk:g} MiB chunks):")
        lines += [f"- {r['what']}: {r['gbps']:.2f} GB/s ({r['seconds']:.2f} s)" for r in
                  extras["transfer_bench"]["rows"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="one extra measurement in a fresh process (used by core_micro.py)")
    ap.add_argument("--probe", choices=sorted(PROBES), required=True)
    ap.add_argument("--system", choices=("distcore", "ray"), required=True)
    args = ap.parse_args()
    result = PROBES[args.probe](args.system)
    sys.stdout.write(RESULT + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
