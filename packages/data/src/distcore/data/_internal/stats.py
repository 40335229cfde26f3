"""Per-operator execution statistics and the text of ``Dataset.stats()``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


@dataclass
class OpStats:
    name: str
    tasks_started: int = 0
    tasks_done: int = 0
    rows_out: int = 0
    bytes_out: int = 0
    blocks_out: int = 0
    task_wall_s: float = 0.0
    task_cpu_s: float = 0.0
    max_task_rss: int = 0
    peak_memory: int = 0
    actors: int = 0
    #: times the cluster had no CPU for this operator's tasks and it shrank its concurrency
    starved_count: int = 0
    #: bytes an exchange spilled to local files (its map output over its share of the budget)
    spilled_bytes: int = 0
    first_start: float | None = None
    last_end: float | None = None
    task_walls: list[float] = field(default_factory=list)

    def task_started(self) -> None:
        self.tasks_started += 1
        if self.first_start is None:
            self.first_start = time.perf_counter()

    def task_done(self, meta: Any, wall: float) -> None:
        self.tasks_done += 1
        self.last_end = time.perf_counter()
        self.task_walls.append(wall)
        ex = getattr(meta, "exec_stats", None)
        if ex is not None:
            self.task_wall_s += ex.wall_s
            self.task_cpu_s += ex.cpu_s
            self.max_task_rss = max(self.max_task_rss, ex.max_rss_bytes)

    def record_output(self, meta: Any) -> None:
        self.rows_out += int(meta.num_rows or 0)
        self.bytes_out += int(meta.size_bytes or 0)
        self.blocks_out += 1
        if self.first_start is None:
            self.first_start = time.perf_counter()
        self.last_end = time.perf_counter()

    def note_memory(self, held: int) -> None:
        self.peak_memory = max(self.peak_memory, held)

    @property
    def wall_s(self) -> float:
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


@dataclass
class ExecutionStats:
    ops: list[OpStats]
    wall_s: float = 0.0
    peak_memory: int = 0
    memory_budget: int = 0
    iter_wait_s: float = 0.0
    iter_user_s: float = 0.0

    def to_string(self, verbose: bool = False) -> str:
        lines = []
        for i, op in enumerate(self.ops):
            lines.append(f"Operator {i} {op.name}: {op.tasks_done} tasks executed, {op.blocks_out} blocks produced")
            lines.append(f"* Wall time: {op.wall_s:.3f}s (operator); task wall total {op.task_wall_s:.3f}s")
            lines.append(f"* CPU time: {op.task_cpu_s:.3f}s")
            lines.append(f"* Output rows: {op.rows_out}; output bytes: {_fmt_bytes(op.bytes_out)}")
            lines.append(f"* Peak memory held: {_fmt_bytes(op.peak_memory)}; "
                         f"peak task RSS: {_fmt_bytes(op.max_task_rss)}")
            if op.actors:
                lines.append(f"* Actors: up to {op.actors}")
            if op.spilled_bytes:
                lines.append(f"* Spilled to disk: {_fmt_bytes(op.spilled_bytes)}")
            if op.starved_count:
                lines.append(f"* Shrank {op.starved_count} time(s): the cluster had no CPU for its tasks")
            if verbose and op.task_walls:
                walls = sorted(op.task_walls)
                lines.append(f"* Task wall min/median/max: {walls[0]:.3f}s / {walls[len(walls) // 2]:.3f}s / "
                             f"{walls[-1]:.3f}s")
            lines.append("")
        lines.append(f"Dataset execution: {self.wall_s:.3f}s wall; peak pipeline memory "
                     f"{_fmt_bytes(self.peak_memory)} of a {_fmt_bytes(self.memory_budget)} budget")
        if self.iter_wait_s or self.iter_user_s:
            lines.append(f"Iterator: {self.iter_wait_s:.3f}s waiting for blocks, "
                         f"{self.iter_user_s:.3f}s in user code")
        return "\n".join(lines)
