"""The console view: a live trial table on a TTY, periodic status lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

from distcore.tune._internal.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


class ProgressReporter:
    """Renders the experiment's progress. ``verbose`` 0: silent; 1: status; 2+: also per-trial events."""

    def __init__(self, metric: str | None, mode: str | None, verbose: int = 1, out: IO[str] | None = None,
                 max_rows: int = 20, tty_interval: float = 1.0, line_interval: float = 10.0) -> None:
        self.metric, self.mode, self.verbose = metric, mode, verbose
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.max_rows = max_rows
        self.interval = tty_interval if self.tty else line_interval
        self._last = 0.0
        self._lines_drawn = 0
        self._start = time.monotonic()

    def _best(self, trials: list[Any]) -> tuple[Any, float] | None:
        if not self.metric:
            return None
        scored = [(t, t.flat_result[self.metric]) for t in trials
                  if isinstance(t.flat_result.get(self.metric), (int, float))]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda item: item[1])

    def status_line(self, trials: list[Any]) -> str:
        counts = Counter(t.status for t in trials)
        parts = [f"{counts[s]} {s.lower()}" for s in (RUNNING, PENDING, PAUSED, TERMINATED, ERROR) if counts[s]]
        line = f"[{time.monotonic() - self._start:7.1f}s] trials: {len(trials)} ({', '.join(parts) or 'none'})"
        best = self._best(trials)
        if best is not None:
            line += f" | best {self.metric}={_fmt(best[1])} ({best[0]})"
        return line

    def table(self, trials: list[Any]) -> list[str]:
        config_keys: list[str] = []
        for t in trials[:50]:
            for key, value in _flat(t.config).items():
                if key not in config_keys and not isinstance(value, (dict, list)):
                    config_keys.append(key)
        config_keys = config_keys[:5]
        metric_cols = ["training_iteration"] + ([self.metric] if self.metric else [])
        header = ["Trial name", "status", *config_keys, *metric_cols]
        shown = sorted(trials, key=lambda t: (t.status != RUNNING, t.index))[: self.max_rows]
        rows = [header]
        for t in shown:
            flat = _flat(t.config)
            rows.append([str(t), t.status, *[_fmt(flat.get(k, "")) for k in config_keys],
                         *[_fmt(t.flat_result.get(m, "")) for m in metric_cols]])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if len(trials) > len(shown):
            lines.append(f"... {len(trials) - len(shown)} more trials")
        return lines

    def report(self, trials: list[Any], force: bool = False) -> None:
        if self.verbose <= 0:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            lines = [self.status_line(trials), *self.table(trials)]
            if self._lines_drawn:
                self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
            self.out.write("\n".join(lines) + "\n")
            self._lines_drawn = len(lines)
        else:
            self.out.write(self.status_line(trials) + "\n")
        self.out.flush()

    def event(self, message: str) -> None:
        if self.verbose >= 2:
            if self.tty:
                self._lines_drawn = 0
            self.out.write(message + "\n")
            self.out.flush()

    def final(self, trials: list[Any]) -> None:
        if self.verbose <= 0:
            return
        if self.tty and self._lines_drawn:
            self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
            self._lines_drawn = 0
        self.out.write("\n".join([self.status_line(trials), *self.table(trials)]) + "\n")
        self.out.flush()


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    from distcore.tune._internal.variants import flatten

    return flatten(config)
