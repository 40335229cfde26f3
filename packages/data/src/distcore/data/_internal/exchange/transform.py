"""One task per block: apply a function to each block (used where an exchange needs a map-only round)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

import distcore


@distcore.remote
def _apply(fn: Callable[[pa.Table], pa.Table], block: pa.Table) -> pa.Table:
    return fn(block)


def map_blocks(refs: list[Any], fn: Callable[[pa.Table], pa.Table]) -> list[Any]:
    """``[ref of fn(block) for each block]`` (runs as distcore tasks; returns at once)."""
    return [_apply.remote(fn, ref) for ref in refs]
