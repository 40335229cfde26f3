"""Starting and stopping node processes on this machine.

A *session* is one cluster's directory under the temp root: logs, the
control store's SQLite file, spilled objects, the token file and the
address file that ``init(address="auto")`` reads.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import psutil

from distcore._private.ids import new_node_id

DEFAULT_OBJECT_STORE_FRACTION = 0.3
NODE_START_TIMEOUT_S = 30.0


def temp_root() -> str:
    return os.environ.get("DISTCORE_TMPDIR") or os.path.join(tempfile.gettempdir(), "distcore")


@dataclass
class NodeProcess:
    proc: subprocess.Popen
    address: str
    gcs_address: str
    node_id: str
    session_dir: str
    session_name: str
    token: str | None
    is_head: bool
    dashboard_address: str | None = None  # the head's jobs API, ``http://host:port``
    dashboard_error: str | None = None  # why the head has none, when one was asked for
    metrics_address: str | None = None  # ``host:port`` of its Prometheus endpoint (``/metrics``)
    metrics_error: str | None = None  # why it has none, when one was asked for

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        # The node's own cleanup removes segments; this catches a crashed node.
        from distcore._private.object_store.shm import cleanup_session

        cleanup_session(store_session(self.session_name, self.node_id))


def store_session(session_name: str, node_id: str) -> str:
    """The object-store session string of one node (unique per host)."""
    return f"{session_name}-{node_id[:8]}"


def new_session() -> tuple[str, str]:
    root = temp_root()
    os.makedirs(root, exist_ok=True)
    name = f"s{time.strftime('%Y%m%d%H%M%S')}{os.getpid()}{secrets.token_hex(2)}"
    session_dir = os.path.join(root, f"session_{name}")
    os.makedirs(os.path.join(session_dir, "logs"), exist_ok=True)
    return name, session_dir


def write_token(session_dir: str, token: str) -> str:
    path = os.path.join(session_dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def default_object_store_memory() -> int:
    total = psutil.virtual_memory().total
    size = int(total * DEFAULT_OBJECT_STORE_FRACTION)
    try:
        shm = shutil.disk_usage("/dev/shm").total
        size = min(size, int(shm * 0.9))
    except OSError:
        pass
    return max(size, 64 * 1024 * 1024)


def detect_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def node_resources(num_cpus: float | None, num_gpus: float | None, resources: dict | None, memory: int | None) -> dict:
    out = dict(resources or {})
    for reserved in ("CPU", "GPU"):
        if reserved in out:
            raise ValueError(f"pass {reserved} as num_{reserved.lower()}s=..., not inside resources=")
    out["CPU"] = float(os.cpu_count() or 1) if num_cpus is None else float(num_cpus)
    gpus = detect_gpus() if num_gpus is None else num_gpus
    if gpus:
        out["GPU"] = float(gpus)
    out["memory"] = float(memory if memory is not None else int(psutil.virtual_memory().available * 0.7))
    return {k: v for k, v in out.items() if v}


def start_node(
    *,
    head: bool,
    resources: dict,
    object_store_memory: int,
    session_name: str,
    session_dir: str,
    token: str | None,
    gcs_address: str = "",
    node_ip: str = "127.0.0.1",
    port: int = 0,
    parent_pid: int | None = None,
    prestart: int | None = None,
    labels: dict | None = None,
    dead_timeout_s: float = 30.0,
    dashboard_port: int | None = None,
    metrics_export_port: int | None = None,
    autoscaling_config: dict | None = None,
    memory_usage_threshold: float | None = None,
    recover: bool = False,
) -> NodeProcess:
    """Start a node process; ``recover=True`` (head only, with a fixed ``port``) restarts the head of an
    existing session from its ``gcs.sqlite`` (the new head's node manager gets a new node id)."""
    node_id = new_node_id()
    ready = os.path.join(session_dir, f"node-{node_id[:12]}.json")
    cmd = [
        sys.executable, "-m", "distcore._private.node_main",
        "--node-id", node_id, "--resources", json.dumps(resources), "--labels", json.dumps(labels or {}),
        "--object-store-memory", str(int(object_store_memory)), "--session-dir", session_dir,
        "--session-name", session_name, "--ready-file", ready, "--node-ip", node_ip, "--port", str(port),
        "--dead-timeout-s", str(dead_timeout_s),
    ]
    if head:
        cmd.append("--head")
        if recover:
            cmd.append("--recover")
        if dashboard_port is not None:
            cmd += ["--dashboard-port", str(dashboard_port)]
        if autoscaling_config is not None:
            cmd += ["--autoscaling-config", write_autoscaling_config(session_dir, autoscaling_config)]
    else:
        cmd += ["--gcs-address", gcs_address]
    if metrics_export_port is not None:
        cmd += ["--metrics-export-port", str(metrics_export_port)]
    if parent_pid:
        cmd += ["--parent-pid", str(parent_pid)]
    if prestart is not None:
        cmd += ["--prestart", str(prestart)]
    if memory_usage_threshold is not None:
        cmd += ["--memory-usage-threshold", str(memory_usage_threshold)]
    env = dict(os.environ)
    if token:
        env["DISTCORE_AUTH_TOKEN"] = token
    else:
        env.pop("DISTCORE_AUTH_TOKEN", None)
    log = open(os.path.join(session_dir, "logs", f"{'head' if head else 'node'}-{node_id[:12]}.log"), "ab")
    try:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()
    deadline = time.monotonic() + NODE_START_TIMEOUT_S
    while not os.path.exists(ready):
        if proc.poll() is not None:
            failed = _start_failure(log.name)
            if failed:  # the node said why (a port in use, a bad option): that line is the message
                raise RuntimeError(f"the distcore {'head' if head else 'node'} failed to start: {failed}")
            raise RuntimeError(
                f"the distcore {'head' if head else 'node'} process exited with code {proc.returncode} while starting; "
                f"its log: {_tail(log.name)}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"the distcore node did not start within {NODE_START_TIMEOUT_S:.0f} s; see {log.name}")
        time.sleep(0.01)
    with open(ready) as f:
        info = json.load(f)
    return NodeProcess(proc, info["address"], info["gcs_address"], node_id, session_dir, session_name, token, head,
                       info.get("dashboard_address"), info.get("dashboard_error"),
                       metrics_address=info.get("metrics_address"), metrics_error=info.get("metrics_error"))


def write_autoscaling_config(session_dir: str, config: dict) -> str:
    """Validate an autoscaling config (raises ``AutoscalingConfigError``) and write it for the head."""
    from distcore._private.autoscaler.config import AutoscalingConfig

    path = os.path.join(session_dir, "autoscaling_config.json")
    with open(path, "w") as f:
        f.write(AutoscalingConfig.from_dict(config).to_json())
    return path


def _tail(path: str, limit: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"


def _start_failure(path: str) -> str:
    """The reason ``node_main`` printed for not starting (``distcore node failed to start: ...``), if any."""
    prefix = "distcore node failed to start: "
    for line in reversed(_tail(path).splitlines()):
        if line.startswith(prefix):
            return line[len(prefix):]
    return ""


def write_address_file(session_dir: str, gcs_address: str) -> None:
    root = temp_root()
    with open(os.path.join(session_dir, "address"), "w") as f:
        f.write(gcs_address)
    latest = os.path.join(root, "session_latest")
    tmp = latest + f".{os.getpid()}"
    try:
        os.symlink(session_dir, tmp)
        os.replace(tmp, latest)
    except OSError:
        pass


def new_token() -> str:
    return secrets.token_urlsafe(32)


# Tokens of clusters this process started, by control-store address, so a
# driver in the same process connects without copying the token around.
_known_tokens: dict[str, str] = {}


def register_token(gcs_address: str, token: str | None) -> None:
    if token:
        _known_tokens[gcs_address] = token
    else:
        _known_tokens.pop(gcs_address, None)


def known_token(gcs_address: str) -> str | None:
    return _known_tokens.get(gcs_address)
