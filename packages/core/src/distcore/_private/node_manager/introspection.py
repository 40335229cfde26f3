"""What a node manager tells the state API about its node: log files and
object-store entries.

Logs live at ``<session_dir>/logs/`` on each node (``worker-<id>.log`` per
worker, ``head-*.log`` / ``node-*.log`` for the node itself); they are read
through ``NodeManager.ListLogs`` / ``NodeManager.ReadLog`` so the CLI works
across nodes. Only plain file names inside that directory are served.

Example::

    chunk = await nm.call("NodeManager", "ReadLog", ReadLog("worker-0a1b2c3d4e5f.log", tail_lines=100))
    print(chunk.data.decode())
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from distcore._private.object_store.state import ObjectState

MAX_READ_BYTES = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(slots=True)
class LogFile:
    filename: str
    size: int
    modified: float


@dataclass(slots=True)
class ReadLog:
    """Read ``filename``: its last ``tail_lines`` lines (``offset < 0``) or the bytes from ``offset`` on."""

    filename: str
    offset: int = -1
    tail_lines: int = 1000
    max_bytes: int = MAX_READ_BYTES


@dataclass(slots=True)
class LogChunk:
    filename: str
    data: bytes
    offset: int  # where ``data`` starts in the file
    next_offset: int  # where the next read should start (to follow the file)
    size: int  # the file's size when read


def worker_log_name(worker_id: str) -> str:
    """The log file name of a worker (see ``WorkerPool.start_worker``)."""
    return f"worker-{worker_id[:12]}.log"


def list_logs(log_dir: str, node_id: str, own_worker_logs: set[str]) -> list[LogFile]:
    """This node's files in ``log_dir``.

    Nodes on one machine may share a session directory, so worker and node
    logs of other nodes are left out: only this node's own log and the logs
    of workers it started (``own_worker_logs``) are listed, plus any other file.
    """
    out = []
    try:
        names = sorted(os.listdir(log_dir))
    except OSError:
        return []
    for name in names:
        if name.startswith("worker-") and name not in own_worker_logs:
            continue
        if name.startswith(("head-", "node-")) and not name.startswith((f"head-{node_id[:12]}", f"node-{node_id[:12]}")):
            continue
        path = os.path.join(log_dir, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path):
            out.append(LogFile(name, st.st_size, st.st_mtime))
    return out


def read_log(log_dir: str, req: ReadLog, node_id: str = "") -> LogChunk:
    """Read part of a log file in ``log_dir``; raises ``FileNotFoundError`` or ``ValueError``."""
    name = req.filename
    if not _SAFE_NAME.match(name or "") or name in (".", ".."):
        raise ValueError(f"{name!r} is not a log file name (plain names only, as `distcore logs` lists them)")
    path = os.path.join(log_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no log file {name!r} on node {node_id[:12] or '?'}; `distcore logs --node-id {node_id}` lists them"
        )
    max_bytes = max(1, min(int(req.max_bytes), MAX_READ_BYTES))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if req.offset < 0:
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(size - start)
            if req.tail_lines >= 0:
                lines = data.splitlines(keepends=True)
                keep = lines[-req.tail_lines:] if req.tail_lines else []
                kept = b"".join(keep)
                start += len(data) - len(kept)
                data = kept
            return LogChunk(name, data, start, start + len(data), size)
        start = min(req.offset, size)
        f.seek(start)
        data = f.read(max_bytes)
    cut = data.rfind(b"\n")
    if 0 <= cut < len(data) - 1 and len(data) < max_bytes:
        data = data[: cut + 1]  # a partial last line waits for its end
    elif cut < 0 and len(data) < max_bytes:
        data = b""
    return LogChunk(name, data, start, start + len(data), size)


def object_infos(store: Any, object_ids: list[str]) -> list[dict[str, Any] | None]:
    """Per object: its size and whether it is in memory, spilled, pinned (None: not here)."""
    out: list[dict[str, Any] | None] = []
    for object_id in object_ids:
        info = store.info(object_id)
        if info is None:
            out.append(None)
            continue
        out.append({
            "size": info.size, "spilled": info.state is ObjectState.SPILLED,
            "in_memory": info.state is ObjectState.SEALED_IN_MEMORY, "pinned": info.pinned,
        })
    return out
