"""Tests for distcore._private.object_store.state (pure: no files touched)."""

from __future__ import annotations

import pytest

from distcore._private.object_store.state import (
    InvalidTransition,
    ObjectState,
    Reservation,
    StoreState,
)
from distcore.exceptions import ObjectStoreFullError

pytestmark = pytest.mark.timeout(30)

S, C, SP, R = (
    ObjectState.SEALED_IN_MEMORY,
    ObjectState.CREATING,
    ObjectState.SPILLED,
    ObjectState.RESTORING,
)


def _sealed(state: StoreState, oid: str, size: int, pinned: bool = False) -> Reservation:
    res = state.reserve(oid, size)
    state.seal(oid, pinned=pinned)
    return res


def test_reserve_seal_delete() -> None:
    st = StoreState(100)
    res = st.reserve("a", 30)
    assert res == Reservation("a", 30, [], [])
    info = st.info("a")
    assert info is not None and info.state is C and info.size == 30 and not info.pinned
    assert (st.used, st.available, st.num_objects) == (30, 70, 1)
    st.seal("a")
    assert st.info("a").state is S  # type: ignore[union-attr]
    assert "a" in st and st.object_ids() == ["a"]
    assert st.delete("a") == 30
    assert (st.used, st.num_objects, st.info("a")) == (0, 0, None)


def test_zero_size_object() -> None:
    st = StoreState(0)
    _sealed(st, "z", 0)
    assert st.used == 0 and st.info("z").state is S  # type: ignore[union-attr]


def test_abort_creating_forgets_object() -> None:
    st = StoreState(100)
    st.reserve("a", 40)
    assert st.abort("a") == 40
    assert st.used == 0 and "a" not in st


def test_seal_can_set_pin_and_pin_unpin() -> None:
    st = StoreState(100)
    st.reserve("a", 10)
    st.seal("a", pinned=True)
    assert st.info("a").pinned  # type: ignore[union-attr]
    st.unpin("a")
    assert not st.info("a").pinned  # type: ignore[union-attr]
    st.pin("a")
    assert st.info("a").pinned  # type: ignore[union-attr]
    assert st.stats()["pinned_bytes"] == 10


def test_invalid_transitions() -> None:
    st = StoreState(100)
    _sealed(st, "a", 10)
    with pytest.raises(InvalidTransition, match="already exists"):
        st.reserve("a", 10)
    with pytest.raises(InvalidTransition, match="cannot seal object a: it is sealed_in_memory"):
        st.seal("a")
    with pytest.raises(InvalidTransition, match="cannot abort"):
        st.abort("a")
    with pytest.raises(InvalidTransition, match="not spilled"):
        st.restore("a")
    with pytest.raises(InvalidTransition, match="was not being spilled"):
        st.on_spilled("a", "/x")
    with pytest.raises(InvalidTransition, match="not in use"):
        st.release_in_use("a")
    st.reserve("b", 10)
    with pytest.raises(InvalidTransition, match="not sealed in memory"):
        st.mark_in_use("b")
    for call in (
        st.seal,
        st.abort,
        st.pin,
        st.unpin,
        st.touch,
        st.delete,
        st.restore,
        st.mark_in_use,
    ):
        with pytest.raises(KeyError, match="unknown object nope"):
            call("nope")
    with pytest.raises(ValueError, match="must be >= 0"):
        st.reserve("c", -1)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        StoreState(-5)


def test_lru_eviction_order_and_touch() -> None:
    st = StoreState(100)
    for oid in "abcd":
        _sealed(st, oid, 25)
    st.touch("a")  # order now b, c, d, a
    res = st.reserve("e", 40)
    assert res.evict == ["b", "c"] and res.spill == []
    assert "b" not in st and "c" not in st
    assert st.used == 25 + 25 + 40
    st.seal("e")
    res = st.reserve("f", 40)  # order d, a, e; needs 30 more
    assert res.evict == ["d", "a"]


def test_mark_in_use_counts_as_access() -> None:
    st = StoreState(30)
    _sealed(st, "a", 10)
    _sealed(st, "b", 10)
    st.mark_in_use("a")
    st.release_in_use("a")  # a is now the most recently used
    _sealed(st, "c", 10)
    assert st.reserve("d", 10).evict == ["b"]


def test_pinned_objects_spill_instead_of_evict_and_evict_first() -> None:
    st = StoreState(100)
    _sealed(st, "p1", 30, pinned=True)
    _sealed(st, "u1", 20)
    _sealed(st, "p2", 30, pinned=True)
    _sealed(st, "u2", 20)
    # Need 40: both unpinned go first even though p1 is older.
    res = st.reserve("n1", 40)
    assert res.evict == ["u1", "u2"] and res.spill == []
    st.seal("n1", pinned=True)
    # Need 30 more: nothing unpinned left, the LRU pinned one spills.
    res = st.reserve("n2", 30)
    assert res.evict == [] and res.spill == ["p1"]
    info = st.info("p1")
    assert info is not None and info.state is SP and info.spill_path is None and info.pinned
    assert st.spilled_bytes == 30 and st.used == 100
    st.on_spilled("p1", "/spill/p1")
    assert st.info("p1").spill_path == "/spill/p1"  # type: ignore[union-attr]
    stats = st.stats()
    assert stats["num_spilled"] == 1 and stats["spilled_bytes"] == 30 and stats["num_objects"] == 4


def test_restore_roundtrip_and_abort() -> None:
    st = StoreState(50)
    _sealed(st, "a", 30, pinned=True)
    res = st.reserve("b", 30)
    assert res.spill == ["a"]
    st.on_spilled("a", "/s/a")
    st.seal("b", pinned=True)
    with pytest.raises(InvalidTransition, match="cannot mark"):
        st.mark_in_use("a")

    res = st.restore("a")
    assert res == Reservation("a", 30, [], ["b"])
    st.on_spilled("b", "/s/b")
    info = st.info("a")
    assert info is not None and info.state is R and info.spill_path == "/s/a"
    assert st.spilled_bytes == 30 and st.used == 30
    # Copying back failed: a is spilled again, its file still known.
    assert st.abort("a") == 30
    info = st.info("a")
    assert info is not None and info.state is SP and info.spill_path == "/s/a"
    assert st.spilled_bytes == 60 and st.used == 0

    st.restore("a")
    st.seal("a")
    info = st.info("a")
    assert info is not None and info.state is S and info.spill_path is None and info.pinned
    assert st.spilled_bytes == 30 and st.used == 30


def test_restore_before_spill_finished_rejected() -> None:
    st = StoreState(10)
    _sealed(st, "a", 10, pinned=True)
    st.reserve("b", 10)
    with pytest.raises(InvalidTransition, match="spill has not finished"):
        st.restore("a")


def test_on_spill_failed_puts_object_back() -> None:
    st = StoreState(10)
    _sealed(st, "a", 10, pinned=True)
    res = st.reserve("b", 10)
    assert res.spill == ["a"]
    st.on_spill_failed("a")
    assert st.info("a").state is S  # type: ignore[union-attr]
    assert st.used == 20 and st.spilled_bytes == 0
    assert st.abort("b") == 10
    assert st.used == 10


def test_in_use_objects_never_moved() -> None:
    st = StoreState(100)
    _sealed(st, "u", 40)
    _sealed(st, "p", 40, pinned=True)
    st.mark_in_use("u")
    st.mark_in_use("p")
    st.mark_in_use("p")
    with pytest.raises(
        ObjectStoreFullError, match="mapped by readers \\(not movable\\): 80 bytes in 2"
    ):
        st.reserve("x", 30)
    assert st.used == 80 and "x" not in st  # unchanged by the failed reserve
    st.release_in_use("p")
    with pytest.raises(ObjectStoreFullError):
        st.reserve("x", 30)  # one reader left
    st.release_in_use("p")
    assert st.reserve("x", 30).spill == ["p"]


def test_creating_objects_never_moved() -> None:
    st = StoreState(100)
    st.reserve("c1", 60)
    _sealed(st, "s", 20)
    with pytest.raises(ObjectStoreFullError) as info:
        st.reserve("x", 50)
    msg = str(info.value)
    assert "being created or restored (not movable): 60 bytes in 1 object(s)" in msg
    assert "frees only 20 bytes" in msg
    assert "s" in st


def test_full_error_message_names_sizes() -> None:
    st = StoreState(1 << 20)
    st.reserve("c", 600 << 10)
    _sealed(st, "p", 300 << 10, pinned=True)
    st.mark_in_use("p")
    with pytest.raises(ObjectStoreFullError) as info:
        st.reserve("want", 500 << 10)
    msg = str(info.value)
    for part in (
        "cannot make room for 500.0 KiB (512000 bytes) for object want",
        "Capacity 1.0 MiB (1048576 bytes)",
        "used 900.0 KiB (921600 bytes)",
        "pinned (spillable unless in use): 300.0 KiB (307200 bytes) in 1 object(s)",
        "being created or restored (not movable): 600.0 KiB (614400 bytes) in 1 object(s)",
        "raise the store capacity",
    ):
        assert part in msg, (part, msg)


def test_larger_than_capacity() -> None:
    st = StoreState(1000)
    with pytest.raises(
        ObjectStoreFullError,
        match=r"object big is 1001 bytes, larger than .* capacity of 1000 bytes",
    ):
        st.reserve("big", 1001)
    assert st.num_objects == 0


def test_delete_in_use_defers_freeing() -> None:
    st = StoreState(100)
    _sealed(st, "a", 50)
    st.mark_in_use("a")
    assert st.delete("a") == 0
    assert "a" not in st and st.info("a") is None and st.used == 50
    assert st.stats()["num_deleted_in_use"] == 1
    with pytest.raises(InvalidTransition, match="still map it"):
        st.reserve("a", 10)
    with pytest.raises(ObjectStoreFullError):
        st.reserve("b", 60)
    assert st.release_in_use("a") == 50
    assert st.used == 0
    with pytest.raises(KeyError):
        st.release_in_use("a")


def test_delete_spilled_and_creating() -> None:
    st = StoreState(10)
    _sealed(st, "a", 10, pinned=True)
    st.reserve("b", 10)
    st.on_spilled("a", "/s/a")
    assert st.delete("a") == 0 and st.spilled_bytes == 0
    assert st.delete("b") == 10 and st.used == 0


def test_unpinned_spilled_object_is_evicted_after_restore() -> None:
    st = StoreState(10)
    _sealed(st, "a", 10, pinned=True)
    st.reserve("b", 10)
    st.on_spilled("a", "/s/a")
    st.seal("b", pinned=True)
    st.unpin("a")  # owner dropped it while on disk
    st.unpin("b")
    st.restore("a")
    st.seal("a")
    assert not st.info("a").pinned  # type: ignore[union-attr]
    assert "b" not in st  # b was unpinned, so it was evicted, not spilled
    assert st.spilled_bytes == 0


def test_stats_keys() -> None:
    st = StoreState(100)
    _sealed(st, "a", 10, pinned=True)
    _sealed(st, "b", 20)
    st.reserve("c", 5)
    st.mark_in_use("b")
    assert st.stats() == {
        "capacity": 100,
        "used": 35,
        "available": 65,
        "num_objects": 3,
        "num_in_memory": 3,
        "num_spilled": 0,
        "spilled_bytes": 0,
        "num_pinned": 1,
        "pinned_bytes": 10,
        "in_use_bytes": 20,
        "num_deleted_in_use": 0,
        "num_spilled_total": 0,
        "num_restored_total": 0,
    }


def test_spill_and_restore_totals_only_grow() -> None:
    st = StoreState(30)
    _sealed(st, "a", 20, pinned=True)
    res = st.reserve("b", 20)
    assert res.spill == ["a"]
    st.on_spilled("a", "/spill/a")
    st.seal("b")
    st.delete("b")
    st.restore("a")
    st.seal("a")
    st.delete("a")
    stats = st.stats()
    assert (stats["num_spilled_total"], stats["num_restored_total"]) == (1, 1)
    assert stats["num_spilled"] == 0 and stats["spilled_bytes"] == 0
