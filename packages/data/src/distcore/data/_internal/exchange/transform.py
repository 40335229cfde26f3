"""One task per block: apply a function to each block (used where an exchange needs a map-only round)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

import distcore


@distcore.remote
def _apply(fn: Callable[[pa.Table], pa.Table], *blocks: pa.Table) -> pa.Table:
    from distcore.data._internal.exchange._blocks import concat

    return fn(concat(blocks))


def map_blocks(groups: list[list[Any]], fn: Callable[[pa.Table], pa.Table]) -> list[Any]:
    """``[ref of fn(concat(group)) for each group of blocks]`` (distcore tasks; returns at once)."""
    return [_apply.remote(fn, *group) for group in groups]
