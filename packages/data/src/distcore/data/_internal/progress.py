"""Progress bars: one tqdm bar per operator, shown on a TTY (or when DataContext asks)."""

from __future__ import annotations

import sys
from typing import Any


def bars_enabled(ctx: Any) -> bool:
    if not ctx.enable_progress_bars:
        return False
    if ctx.progress_bars_in_non_tty:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class OpProgress:
    """Rows and blocks done, queued blocks, throughput and memory of one operator."""

    def __init__(self, name: str, position: int, total_rows: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self.rows = 0
        self.blocks = 0
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total_rows, desc=f"- {name}", position=position, unit=" row",
                             unit_scale=True, leave=True, dynamic_ncols=True, file=sys.stderr)

    def update(self, rows: int, blocks: int, queued: int, held_bytes: int) -> None:
        delta = rows - self.rows
        self.rows, self.blocks = rows, blocks
        if self._bar is None:
            return
        if self._bar.total is not None and rows > self._bar.total:
            self._bar.total = rows
        self._bar.set_postfix_str(f"{blocks} blocks, {queued} queued, {held_bytes / 2**20:.1f} MiB", refresh=False)
        if delta:
            self._bar.update(delta)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
