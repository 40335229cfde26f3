"""The driver-facing runtime calls: init, shutdown, get, put, wait, cancel, kill."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from distcore._private import node as node_mod
from distcore._private import protocol as p
from distcore._private import worker_state
from distcore._private.api.object_ref import ObjectRef, check_refs_alive
from distcore._private.core_worker.core_worker import CoreWorker
from distcore._version import __version__

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_head: node_mod.NodeProcess | None = None
_log_thread: threading.Thread | None = None


def is_initialized() -> bool:
    """True once ``init`` ran in this process (always True inside workers)."""
    return worker_state.core_worker() is not None


def _resolve_address(address: str | None) -> str | None:
    address = address or os.environ.get("DISTCORE_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if address in (None, "", "local"):
        return None
    if address == "auto":
        path = os.path.join(node_mod.temp_root(), "session_latest", "address")
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            raise ConnectionError(
                "init(address='auto') found no running distcore cluster on this machine "
                f"(no {path}); start one with `distcore start --head` or call init() without an address"
            ) from None
    if address.startswith("distcore://"):
        address = address[len("distcore://"):]
    if ":" not in address:
        raise ValueError(f"cluster address {address!r} must look like HOST:PORT (or 'auto')")
    return address


def _token_for(address: str | None) -> str | None:
    token = os.environ.get("DISTCORE_AUTH_TOKEN") or (node_mod.known_token(address) if address else None)
    if token:
        return token
    latest = os.path.join(node_mod.temp_root(), "session_latest")
    try:
        with open(os.path.join(latest, "token")) as f:
            return f.read().strip() or None
    except OSError:
        return None


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    log_to_driver: bool = True,
    ignore_reinit_error: bool = False,
    include_dashboard: bool | None = None,
    logging_level: int = logging.INFO,
    _memory: int | None = None,
    _node_ip_address: str = "127.0.0.1",
    _metrics_export_port: int | None = None,
    **_ignored: Any,
) -> dict[str, Any]:
    """Connect to a cluster, or start a one-node cluster in the background.

    With no ``address`` (and no ``DISTCORE_ADDRESS``), starts a local head
    node with ``num_cpus`` CPUs (default: all) and stops it when this process
    exits. ``address="auto"`` or ``"host:port"`` connects to a running
    cluster. ``_metrics_export_port`` (0: any free port) serves the local
    head's Prometheus metrics (off by default; see ``docs/ports.md``).

    Example::

        import distcore
        distcore.init(num_cpus=2)
        ...
        distcore.shutdown()
    """
    global _head
    with _lock:
        if is_initialized():
            if ignore_reinit_error:
                return _context()
            raise RuntimeError(
                "Maybe you called distcore.init twice by accident? This error can be suppressed by passing "
                "ignore_reinit_error=True, or by calling distcore.shutdown() first."
            )
        from distcore._private import runtime_env as renv

        submitted_env = os.environ.get("DISTCORE_JOB_RUNTIME_ENV")
        if submitted_env:  # a driver the jobs API started: its submission's runtime_env is the job's
            import json

            runtime_env = renv.merge(json.loads(submitted_env), runtime_env)
        job_env = renv.validate(runtime_env) if runtime_env else None
        gcs_address = _resolve_address(address)
        if gcs_address is None:
            session_name, session_dir = node_mod.new_session()
            token = os.environ.get("DISTCORE_AUTH_TOKEN") or node_mod.new_token()
            node_mod.write_token(session_dir, token)
            res = node_mod.node_resources(num_cpus, num_gpus, resources, _memory)
            store = object_store_memory or node_mod.default_object_store_memory()
            _head = node_mod.start_node(
                head=True, resources=res, object_store_memory=store, session_name=session_name,
                session_dir=session_dir, token=token, parent_pid=os.getpid(), node_ip=_node_ip_address,
                dashboard_port=0 if include_dashboard else None, metrics_export_port=_metrics_export_port,
            )
            node_mod.write_address_file(session_dir, _head.gcs_address)
            gcs_address = _head.gcs_address
        else:
            if num_cpus is not None or num_gpus is not None or resources or object_store_memory:
                raise ValueError(
                    "When connecting to an existing cluster, num_cpus, num_gpus, resources and "
                    "object_store_memory must not be given: they belong to `distcore start`"
                )
            token = _token_for(gcs_address)
        try:
            core = _connect(gcs_address, token, namespace, job_env)
        except BaseException:
            if _head is not None:
                _head.stop()
                _head = None
            raise
        worker_state.set_core_worker(core)
        if log_to_driver:
            _start_log_streaming(core)
        atexit.register(shutdown)
        return _context()


def _connect(gcs_address: str, token: str | None, namespace: str | None, job_env: dict | None) -> CoreWorker:
    from distcore._private.rpc import RpcClient, RpcUnavailable

    async def lookup() -> list[p.NodeInfo]:
        client = RpcClient(gcs_address, token)
        try:
            return await client.call("Gcs", "ListNodes", None, timeout=10)
        finally:
            await client.close()

    import asyncio

    try:
        nodes = asyncio.run(lookup())
    except (RpcUnavailable, TimeoutError) as exc:
        raise ConnectionError(f"could not reach a distcore cluster at {gcs_address}: {exc}") from None
    alive = [n for n in nodes if n.state == "ALIVE"]
    if not alive:
        raise ConnectionError(f"the distcore cluster at {gcs_address} has no alive node")
    local = sorted(alive, key=lambda n: (not n.is_head, n.start_time))[0]
    core = CoreWorker(
        is_driver=True, gcs_address=gcs_address, node_address=local.address, node_id=local.node_id,
        token=token, namespace=namespace or f"anon-{uuid.uuid4().hex[:12]}",
        session_dir=local.session_dir, ip=local.ip,
    )
    core.job_runtime_env = job_env
    core.start()
    if job_env:
        # Ship the job's working_dir / py_modules once, now, as Ray does (not on
        # every .remote(): files the driver writes later do not change the job's env).
        from distcore._private.api.task_builder import prepare_runtime_env

        try:
            core.job_runtime_env, _ = prepare_runtime_env(core, None)
        except BaseException:
            core.shutdown()
            raise
    job = core.gcs_call("RegisterJob", p.JobInfo(
        job_id="", driver_address=core.address, driver_pid=os.getpid(), namespace=core.namespace,
        entrypoint=" ".join(sys.argv), runtime_env=job_env, version=__version__,
        submission_id=os.environ.get("DISTCORE_JOB_SUBMISSION_ID", ""),
    ))
    core.job_id = job.job_id
    return core


def _start_log_streaming(core: CoreWorker) -> None:
    async def follow(address: str) -> None:
        try:
            async for lines in core.clients.get(address).stream("NodeManager", "StreamLogs", core.job_id):
                text = "\n".join(lines) + "\n"
                try:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                except Exception:  # noqa: BLE001 - a closed stdout must not kill the stream
                    return
        except Exception:  # noqa: BLE001 - the node went away
            return

    async def start() -> None:
        import asyncio

        nodes = await core.gcs().call("Gcs", "ListNodes")
        for node in nodes:
            if node.state == "ALIVE":
                asyncio.ensure_future(follow(node.address))

    core.spawn(start())


def _context() -> dict[str, Any]:
    core = worker_state.core_worker()
    assert core is not None
    return {
        "address": core.gcs_address,
        "node_id": core.node_id,
        "session_dir": core.session_dir,
        "namespace": core.namespace,
        "job_id": core.job_id,
    }


def shutdown() -> None:
    """Disconnect; stop the local cluster if ``init`` started it."""
    global _head
    with _lock:
        core = worker_state.core_worker()
        if core is not None and core.is_driver:
            try:
                core.gcs_call("JobFinished", core.job_id, timeout=10)
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                pass
            core.shutdown()
            worker_state.set_core_worker(None)
        if _head is not None:
            _head.stop()
            _head = None


def auto_init() -> CoreWorker:
    core = worker_state.core_worker()
    if core is None:
        init()
        core = worker_state.core_worker()
    assert core is not None
    return core


# ---------------------------------------------------------------- objects


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store ``value`` in the cluster and return a ref to it.

    Large numpy arrays and Arrow tables are stored once per node and read
    zero-copy (read-only) by every task on that node.

    Example::

        ref = distcore.put(np.zeros(10_000_000))
        total = distcore.get(sum_array.remote(ref))
    """
    return auto_init().put(value)


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value(s) of one ref or a list of refs; blocks until ready.

    Raises the task's error (a ``TaskError`` that is also an instance of the
    user's exception), or ``GetTimeoutError`` after ``timeout`` seconds.

    Example::

        assert distcore.get([f.remote(1), f.remote(2)], timeout=10) == [1, 2]
    """
    check_refs_alive([object_refs] if isinstance(object_refs, ObjectRef) else
                     object_refs if isinstance(object_refs, (list, tuple)) else ())
    core = auto_init()
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
    from distcore._private.api.object_ref import ObjectRefGenerator

    if isinstance(object_refs, ObjectRef):
        return core.get([object_refs], timeout)[0]
    if isinstance(object_refs, ObjectRefGenerator):
        return core.get(list(object_refs), timeout)
    if isinstance(object_refs, (list, tuple)):
        bad = [r for r in object_refs if not isinstance(r, ObjectRef)]
        if bad:
            raise TypeError(f"get expects ObjectRefs, but the list holds a {type(bad[0]).__name__}: {bad[0]!r}")
        return core.get(list(object_refs), timeout)
    raise TypeError(
        f"get expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}: {object_refs!r}"
    )


def wait(
    object_refs: Sequence[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split refs into (ready, not ready) once ``num_returns`` are ready or on timeout.

    Example::

        ready, pending = distcore.wait(refs, num_returns=2, timeout=5.0)
    """
    if isinstance(object_refs, (list, tuple)):
        check_refs_alive(object_refs)
    core = auto_init()
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait expects a list of ObjectRefs, got {type(object_refs).__name__}")
    refs = list(object_refs)
    if any(not isinstance(r, ObjectRef) for r in refs):
        raise TypeError("wait expects a list of ObjectRefs only")
    if len(set(refs)) != len(refs):
        raise ValueError("wait got the same ObjectRef more than once")
    if not isinstance(num_returns, int) or num_returns < 1 or num_returns > len(refs):
        if refs or num_returns != 1:
            raise ValueError(f"num_returns must be between 1 and the number of refs ({len(refs)}), got {num_returns}")
    if not refs:
        return [], []
    return core.wait(refs, num_returns, timeout, fetch_local)


def cancel(object_ref: Any, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref`` (or a streaming generator); ``get`` then raises ``TaskCancelledError``."""
    from distcore._private.api.object_ref import ObjectRefGenerator

    core = auto_init()
    if isinstance(object_ref, ObjectRefGenerator) and object_ref._task_id is not None:
        task_id = object_ref._task_id
    elif isinstance(object_ref, ObjectRef):
        task_id = object_ref.task_id()
    else:
        raise TypeError(f"cancel expects an ObjectRef or a streaming ObjectRefGenerator, got {type(object_ref).__name__}")
    core.run(core.submitter.cancel(task_id, force, recursive))


# ---------------------------------------------------------------- actors


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor now (pending calls fail with ``ActorDiedError``)."""
    from distcore._private.api.actor import ActorHandle

    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill expects an actor handle, got {type(actor).__name__}")
    core = auto_init()
    core.gcs_call("KillActor", p.KillActor(actor._actor_id, force=True, no_restart=no_restart))


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the named actor ``name`` (in ``namespace``, default: this job's)."""
    from distcore._private.api.actor import ActorHandle

    if not isinstance(name, str) or not name:
        raise ValueError(f"actor name must be a non-empty string, got {name!r}")
    core = auto_init()
    ns = namespace if namespace is not None else core.namespace
    info = core.gcs_call("GetNamedActor", p.NamedActor(name, ns))
    if info is None:
        raise ValueError(f"Failed to look up actor with name {name!r} in namespace {ns!r}: no live actor has that name")
    return ActorHandle(info.actor_id, info.class_name, info.method_meta)


# ---------------------------------------------------------------- cluster


def nodes() -> list[dict[str, Any]]:
    """Every node the cluster knows, alive or dead, as dicts (Ray's keys)."""
    core = auto_init()
    out = []
    for n in core.gcs_call("ListNodes"):
        out.append({
            "NodeID": n.node_id, "Alive": n.state == "ALIVE", "NodeManagerAddress": n.ip,
            "NodeManagerPort": int(n.address.rsplit(":", 1)[1]), "Resources": dict(n.resources),
            "Labels": dict(n.labels), "IsHead": n.is_head, "state": n.state, "DeathReason": n.death_reason,
            "MetricsExportPort": int(n.metrics_address.rsplit(":", 1)[1]) if n.metrics_address else None,
        })
    return out


def cluster_resources() -> dict[str, float]:
    """Total resources of the alive nodes."""
    total: dict[str, float] = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n["Resources"].items():
                total[k] = total.get(k, 0.0) + v
    return total


def available_resources() -> dict[str, float]:
    """Resources free right now on the alive nodes (a heartbeat old)."""
    core = auto_init()
    view: p.ClusterView = core.gcs_call("GetClusterView")
    total: dict[str, float] = {}
    for n in view.nodes.values():
        if n.alive:
            for k, v in n.available.items():
                total[k] = total.get(k, 0.0) + v
    return {k: v for k, v in total.items() if v > 0}


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """Task executions of this cluster as a Chrome trace (events arrive within ~1 s).

    With ``filename``, writes the JSON there (open it in chrome://tracing or
    Perfetto) and returns None; otherwise returns the list of trace events.

    Example::

        distcore.timeline("trace.json")
    """
    import json

    from distcore._private.core_worker.task_events import chrome_trace

    core = auto_init()
    events = chrome_trace(core.gcs_call("GetTaskEvents", None))
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
