"""The console view: a live trial table on a TTY (drawn with rich when it is installed,
else with plain ANSI redraws), periodic status lines otherwise."""

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
                 max_rows: int = 20, tty_interval: float = 1.0, line_interval: float = 10.0,
                 use_rich: bool | None = None) -> None:
        self.metric, self.mode, self.verbose = metric, mode, verbose
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._live: Any = None
        self._rich = False
        if self.tty and verbose > 0 and use_rich is not False:
            self._rich = _rich_available()
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

    def rows(self, trials: list[Any]) -> tuple[list[str], list[list[str]], list[Any]]:
        """The table's header, its rows (strings) and the trials they show (running first)."""
        config_keys: list[str] = []
        for t in trials[:50]:
            for key, value in _flat(t.config).items():
                if key not in config_keys and not isinstance(value, (dict, list)):
                    config_keys.append(key)
        config_keys = config_keys[:5]
        metric_cols = ["training_iteration"] + ([self.metric] if self.metric else [])
        header = ["Trial name", "status", *config_keys, *metric_cols]
        shown = sorted(trials, key=lambda t: (t.status != RUNNING, t.index))[: self.max_rows]
        rows = []
        for t in shown:
            flat = _flat(t.config)
            rows.append([str(t), t.status, *[_fmt(flat.get(k, "")) for k in config_keys],
                         *[_fmt(t.flat_result.get(m, "")) for m in metric_cols]])
        return header, rows, shown

    def table(self, trials: list[Any]) -> list[str]:
        header, body, shown = self.rows(trials)
        rows = [header, *body]
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
        if self._rich:
            self._rich_draw(trials)
            return
        if self.tty:
            lines = [self.status_line(trials), *self.table(trials)]
            if self._lines_drawn:
                self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
            self.out.write("\n".join(lines) + "\n")
            self._lines_drawn = len(lines)
        else:
            self.out.write(self.status_line(trials) + "\n")
        self.out.flush()

    def message(self, text: str) -> None:
        """Print ``text`` (verbose >= 1) above the live table, if one is drawn."""
        if self.verbose <= 0:
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
            return
        if self.tty:
            self._lines_drawn = 0
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, message: str) -> None:
        """A per-trial event (shown at verbose >= 2)."""
        if self.verbose >= 2:
            self.message(message)

    def final(self, trials: list[Any]) -> None:
        if self.verbose <= 0:
            return
        if self._rich:
            self._rich_draw(trials)
            if self._live is not None:
                self._live.stop()
                self._live = None
            return
        if self.tty and self._lines_drawn:
            self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
            self._lines_drawn = 0
        self.out.write("\n".join([self.status_line(trials), *self.table(trials)]) + "\n")
        self.out.flush()


    def close(self) -> None:
        """Leave the live display (if any) where it is; later output goes below it."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    # ------------------------------------------------------------------ rich
    def rich_table(self, trials: list[Any]) -> Any:
        """The status line over the trial table, as a rich renderable."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        header, body, shown = self.rows(trials)
        table = Table()
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i >= 2 else "left", no_wrap=True)
        for cells, trial in zip(body, shown, strict=True):
            table.add_row(cells[0], Text(cells[1], style=_STATUS_STYLE.get(trial.status, "")), *cells[2:])
        if len(trials) > len(shown):
            table.caption = f"... {len(trials) - len(shown)} more trials"
        return Group(Text(self.status_line(trials), style="bold"), table)

    def _rich_draw(self, trials: list[Any]) -> None:
        table = self.rich_table(trials)
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, force_terminal=True)
            self._live = Live(table, console=console, auto_refresh=False, transient=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start(refresh=True)
        else:
            self._live.update(table, refresh=True)


_STATUS_STYLE = {RUNNING: "cyan", PENDING: "dim", PAUSED: "yellow", TERMINATED: "green", ERROR: "bold red"}


def _rich_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("rich") is not None


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    from distcore.tune._internal.variants import flatten

    return flatten(config)
