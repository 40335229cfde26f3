"""Identifiers, as lowercase hex strings.

Object ids embed the id of the task that made them and the return index, so
an object's lineage is its id's first half; ``put`` objects use a task id
derived from the putting worker plus a counter, with index 0 reserved.
"""

from __future__ import annotations

import itertools
import os
import threading

TASK_ID_BYTES = 12
INDEX_HEX = 8  # 4 bytes of return index

_lock = threading.Lock()
_counter = itertools.count(1)


def random_hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


# Task ids are a per-process random prefix plus a counter: unique like random
# ids, without a getrandom() syscall per task (up to ~0.5 ms each on a loaded
# 2-CPU machine; docs/performance.md).
_PREFIX_BYTES = TASK_ID_BYTES - 4
_task_prefix = os.urandom(_PREFIX_BYTES).hex()
_task_counter = itertools.count(1)


def _new_task_prefix() -> None:
    global _task_prefix, _task_counter
    _task_prefix = os.urandom(_PREFIX_BYTES).hex()
    _task_counter = itertools.count(1)


os.register_at_fork(after_in_child=_new_task_prefix)  # a forked child must not repeat the parent's ids


def new_task_id() -> str:
    n = next(_task_counter)
    if n > 0xFFFFFFFF:
        with _lock:
            if next(_task_counter) > 0xFFFFFFFF:
                _new_task_prefix()
        return new_task_id()
    return f"{_task_prefix}{n:08x}"


def new_actor_id() -> str:
    return random_hex(TASK_ID_BYTES)


def new_node_id() -> str:
    return random_hex(14)


def new_worker_id() -> str:
    return random_hex(14)


def new_placement_group_id() -> str:
    return random_hex(14)


def object_id_for_return(task_id: str, index: int) -> str:
    """The id of return value ``index`` (1-based) of ``task_id``."""
    return f"{task_id}{index:0{INDEX_HEX}x}"


def task_id_of(object_id: str) -> str:
    return object_id[: TASK_ID_BYTES * 2]


def index_of(object_id: str) -> int:
    return int(object_id[TASK_ID_BYTES * 2 :], 16)


def is_object_id(value: object) -> bool:
    if not isinstance(value, str) or len(value) != TASK_ID_BYTES * 2 + INDEX_HEX:
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def new_put_object_id(worker_task_id: str) -> str:
    """A fresh id for an object created by ``put`` inside ``worker_task_id``."""
    with _lock:
        n = next(_counter)
    # Put ids use the high bit of the index so they never clash with returns.
    return object_id_for_return(worker_task_id, 0x80000000 | (n & 0x7FFFFFFF))
