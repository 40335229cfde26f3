"""Behaviour tests of objects: put, get, wait, ObjectRef, zero-copy reads, errors.

Every test runs against a real local cluster (``shared_cluster`` unless it
needs its own shape). Ray's semantics are the reference.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import fractions
import os
import time

import numpy as np
import pytest

import distcore
from distcore._private.testing import mapped_file_of, object_store_stats, session_segments, wait_for
from distcore.exceptions import GetTimeoutError, ObjectLostError, OwnerDiedError, TaskError

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


@dataclasses.dataclass
class Point:
    x: int
    y: int

    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y


class Account:
    """A plain class with state and behaviour (``__eq__`` for comparison)."""

    def __init__(self, owner: str, balance: float) -> None:
        self.owner = owner
        self.balance = balance

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Account) and (other.owner, other.balance) == (self.owner, self.balance)


def _segment_of(arr: np.ndarray) -> str | None:
    return mapped_file_of(arr.__array_interface__["data"][0])


class Color(enum.IntEnum):
    RED = 1


@distcore.remote
def echo(x):
    return x


@distcore.remote
def echo_with_type(x):
    return x, type(x).__name__


@distcore.remote
def describe_array(arr):
    """Where a task's argument array lives, and whether it can be written."""
    from distcore._private.testing import mapped_file_of

    return {
        "pid": os.getpid(),
        "segment": mapped_file_of(arr.__array_interface__["data"][0]),
        "writeable": bool(arr.flags.writeable),
        "sum": float(arr.sum()),
    }


# ---------------------------------------------------------------- put / get of many types


VALUES = [
    None,
    True,
    0,
    -7,
    2**100,
    3.25,
    float("inf"),
    1 + 2j,
    "",
    "hello wörld ✓",
    b"\x00\xffbytes",
    bytearray(b"mutable"),
    [1, "two", 3.0, None],
    (1, ("nested", (2,))),
    {"a": 1, "b": [1, 2, {"c": None}], 3: "int key"},
    {1, 2, 3},
    frozenset({"x"}),
    range(3, 10, 2),
    fractions.Fraction(3, 7),
    Point(3, 4),
    Account("ann", 12.5),
    ValueError("an exception is a value too"),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_put_get_roundtrip(shared_cluster, value):
    out = distcore.get(distcore.put(value))
    if isinstance(value, Exception):
        assert type(out) is type(value) and out.args == value.args
    else:
        assert out == value
        assert type(out) is type(value)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_pass_through_a_task(shared_cluster, value):
    out = distcore.get(echo.remote(distcore.put(value)))
    if isinstance(value, Exception):
        assert type(out) is type(value) and out.args == value.args
    else:
        assert out == value


@pytest.mark.parametrize("value", [None, True, False, 0, -7, 2**62, 2**80, 10**4000, 1.5, float("inf"), "", "short",
                                   "é" * 300, b"", b"\x00bytes", b"b" * 5000, Color.RED],
                         ids=lambda v: f"{type(v).__name__}-{len(repr(v))}")
def test_plain_values_as_direct_arguments_keep_value_and_type(shared_cluster, value):
    """Small plain arguments take a short cut through the C pickler; big ints, long strings and
    subclasses (an IntEnum) take the general path: all arrive equal and of the same type."""
    out, kind = distcore.get(echo_with_type.remote(value), timeout=60)
    assert out == value and kind == type(value).__name__


def test_class_defined_in_a_test_travels_by_value(shared_cluster):
    class Local:
        def __init__(self, n):
            self.n = n

        def double(self):
            return self.n * 2

    @distcore.remote
    def use(obj):
        return obj.double(), type(obj).__name__

    ref = distcore.put(Local(21))
    assert distcore.get(ref).double() == 42
    assert distcore.get(use.remote(ref)) == (42, "Local")


def test_large_non_array_values(shared_cluster):
    blob = os.urandom(3 * MB)
    big_list = list(range(200_000))
    assert distcore.get(distcore.put(blob)) == blob
    assert distcore.get(distcore.put(big_list)) == big_list
    assert distcore.get(echo.remote(blob)) == blob


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(10, dtype=np.int8),
        np.array(3.5),  # 0-d
        np.zeros((0, 3)),
        np.arange(1_000_000, dtype=np.float32).reshape(1000, 1000),
        np.asfortranarray(np.arange(600_000, dtype=np.int64).reshape(600, 1000)),
        np.arange(2_000_000, dtype=np.int64)[::3],  # not contiguous
        np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
        np.array(["a", "bc", "déf"]),
        np.array([(1, 2.0), (3, 4.0)], dtype=[("i", "i4"), ("f", "f8")]),
        np.array([{"a": 1}, None, "x"], dtype=object),
        np.array([True, False, True]),
        np.arange(24, dtype=np.uint16).reshape(2, 3, 4).transpose(2, 0, 1),
    ],
    ids=lambda a: f"{a.dtype}-{a.shape}",
)
def test_numpy_arrays_roundtrip(shared_cluster, arr):
    out = distcore.get(distcore.put(arr))
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(distcore.get(echo.remote(arr)), arr)


def test_pyarrow_table_roundtrip_and_zero_copy(shared_cluster):
    pa = pytest.importorskip("pyarrow")
    n = 1_000_000
    table = pa.table({"x": np.arange(n, dtype=np.int64), "y": np.ones(n), "s": ["v"] * n})
    ref = distcore.put(table)
    out = distcore.get(ref)
    assert out.equals(table)
    column = out.column("x").chunk(0)
    address = column.buffers()[1].address
    segment = mapped_file_of(address)
    assert segment is not None and ref.hex() in segment, f"the table's column was copied, not mapped: {segment}"

    @distcore.remote
    def total(t):
        return int(t.column("x").to_numpy().sum())

    assert distcore.get(total.remote(ref)) == n * (n - 1) // 2


def test_pandas_dataframe_roundtrip(shared_cluster):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": np.arange(300_000), "b": np.linspace(0, 1, 300_000), "c": ["x", "y", "z"] * 100_000})
    out = distcore.get(distcore.put(df))
    pd.testing.assert_frame_equal(out, df)
    small = pd.DataFrame({"k": ["a", "b"], "v": [1.5, None]}).set_index("k")
    pd.testing.assert_frame_equal(distcore.get(echo.remote(small)), small)


# ---------------------------------------------------------------- zero copy


def test_large_array_is_stored_once_and_read_zero_copy(shared_cluster):
    arr = np.random.default_rng(0).random(4 * MB // 8 * 5)  # 20 MB of float64
    before = object_store_stats()
    ref = distcore.put(arr)
    after_put = object_store_stats()
    assert after_put["num_objects"] == before["num_objects"] + 1
    assert arr.nbytes <= after_put["used"] - before["used"] < arr.nbytes + 64 * 1024

    # In the driver: a read-only view of the shared segment, twice the same memory.
    first, second = distcore.get(ref), distcore.get(ref)
    np.testing.assert_array_equal(first, arr)
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    segment = _segment_of(first)
    assert segment is not None and segment.startswith("/dev/shm/dc_") and ref.hex() in segment
    assert _segment_of(second) == segment

    # In two tasks on the node, and in two actors (two worker processes for
    # sure): each maps the same segment read-only, none copies it.
    @distcore.remote(num_cpus=0)
    class Reader:
        def describe(self, a):
            return _describe(a)

    readers = [Reader.remote(), Reader.remote()]
    results = distcore.get([describe_array.remote(ref), describe_array.remote(ref)]
                           + [r.describe.remote(ref) for r in readers])
    assert results[2]["pid"] != results[3]["pid"]
    for res in results:
        assert res["pid"] != os.getpid()
        assert res["segment"] is not None and ref.hex() in res["segment"], res
        assert res["writeable"] is False
        assert res["sum"] == pytest.approx(float(arr.sum()))
    for r in readers:
        distcore.kill(r)

    # Still exactly one copy in the store.
    assert object_store_stats()["num_objects"] == after_put["num_objects"]
    assert object_store_stats()["used"] == after_put["used"]


def _describe(arr):
    from distcore._private.testing import mapped_file_of

    return {
        "pid": os.getpid(),
        "segment": mapped_file_of(arr.__array_interface__["data"][0]),
        "writeable": bool(arr.flags.writeable),
        "sum": float(arr.sum()),
    }


def test_large_array_argument_is_put_once(shared_cluster):
    arr = np.arange(3 * MB, dtype=np.uint8)
    res = distcore.get(describe_array.remote(arr))
    assert res["segment"] is not None and res["segment"].startswith("/dev/shm/dc_")
    assert res["writeable"] is False


def test_large_task_return_is_read_zero_copy(shared_cluster):
    @distcore.remote
    def make(n):
        return np.full(n, 7, dtype=np.int32)

    ref = make.remote(2 * MB)
    out = distcore.get(ref)
    assert out.shape == (2 * MB,) and int(out[-1]) == 7
    assert not out.flags.writeable
    segment = _segment_of(out)
    assert segment is not None and ref.hex() in segment


def test_writing_a_got_array_needs_a_copy(shared_cluster):
    ref = distcore.put(np.zeros(MB))
    view = distcore.get(ref)
    copy = view.copy()
    copy[0] = 5
    assert copy.flags.writeable and view[0] == 0


# ---------------------------------------------------------------- ObjectRef


def test_put_of_an_objectref_raises_typeerror(shared_cluster):
    ref = distcore.put(1)
    with pytest.raises(TypeError, match="ObjectRef"):
        distcore.put(ref)


def test_objectref_identity(shared_cluster):
    ref = distcore.put("x")
    same = distcore.ObjectRef(ref.hex(), ref.owner_address())
    other = distcore.put("x")
    assert ref == same and hash(ref) == hash(same)
    assert ref != other
    assert len({ref, same, other}) == 2
    assert ref.hex() in repr(ref)
    assert bytes.fromhex(ref.hex()) == ref.binary()


def test_get_accepts_lists_and_tuples_and_rejects_other_things(shared_cluster):
    refs = [distcore.put(i) for i in range(5)]
    assert distcore.get(refs) == [0, 1, 2, 3, 4]
    assert distcore.get(tuple(refs)) == [0, 1, 2, 3, 4]
    assert distcore.get([]) == []
    with pytest.raises(TypeError, match="ObjectRef"):
        distcore.get(5)
    with pytest.raises(TypeError, match="int"):
        distcore.get([refs[0], 5])


def test_get_timeout(shared_cluster):
    @distcore.remote
    def sleepy():
        time.sleep(30)

    ref = sleepy.remote()
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        distcore.get(ref, timeout=0.3)
    assert time.monotonic() - start < 5
    with pytest.raises(TimeoutError):  # Ray's GetTimeoutError is a TimeoutError too
        distcore.get([distcore.put(1), ref], timeout=0)
    distcore.cancel(ref, force=True)


def test_get_raises_the_task_error(shared_cluster):
    @distcore.remote
    def boom():
        raise KeyError("missing")

    with pytest.raises(KeyError) as info:
        distcore.get(boom.remote())
    assert isinstance(info.value, TaskError)
    assert "missing" in str(info.value)


async def _await_all(refs):
    return await asyncio.gather(*refs)


def test_await_ref_in_asyncio(shared_cluster):
    @distcore.remote
    def slow_add(a, b):
        time.sleep(0.2)
        return a + b

    refs = [slow_add.remote(i, 1) for i in range(3)] + [distcore.put(np.ones(MB))]

    async def main():
        one = await refs[0]
        rest = await _await_all(refs[1:])
        return one, rest

    one, rest = asyncio.run(main())
    assert one == 1 and rest[:2] == [2, 3]
    assert rest[2].sum() == MB

    async def with_timeout_and_as_future():
        first = await asyncio.wait_for(refs[0], timeout=10)
        second = await refs[1].as_future()
        return first, second

    assert asyncio.run(with_timeout_and_as_future()) == (1, 2)


def test_await_ref_raises_task_errors(shared_cluster):
    @distcore.remote
    def boom():
        raise ValueError("async boom")

    async def main():
        await boom.remote()

    with pytest.raises(ValueError, match="async boom"):
        asyncio.run(main())


def test_ref_future(shared_cluster):
    @distcore.remote
    def later(x):
        time.sleep(0.2)
        return x * 2

    futs = [later.remote(i).future() for i in range(3)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futs)
    assert [f.result(timeout=30) for f in futs] == [0, 2, 4]
    done, _ = concurrent.futures.wait([distcore.put("v").future()], timeout=30)
    assert [f.result() for f in done] == ["v"]


def test_many_pending_futures_do_not_block_a_ready_one(shared_cluster):
    @distcore.remote
    class Gate:
        def __init__(self):
            self.open = False

        def wait_open(self):
            while not self.open:
                time.sleep(0.05)
            return "through"

        def release(self):
            self.open = True

    gate = Gate.options(max_concurrency=2).remote()
    pending = gate.wait_open.remote()
    futures = [pending.future() for _ in range(100)]
    assert distcore.put("ready").future().result(timeout=10) == "ready"

    async def many_awaits():
        return await asyncio.wait_for(asyncio.gather(*([distcore.put(7)] * 3)), timeout=10)

    assert asyncio.run(many_awaits()) == [7, 7, 7]
    gate.release.remote()
    assert {f.result(timeout=30) for f in futures} == {"through"}
    distcore.kill(gate)


def test_ref_future_raises_task_errors(shared_cluster):
    @distcore.remote
    def boom():
        raise ZeroDivisionError("future boom")

    with pytest.raises(ZeroDivisionError, match="future boom"):
        boom.remote().future().result(timeout=30)


def test_put_and_get_from_many_threads(shared_cluster):
    def work(i):
        small = distcore.put({"i": i})
        big = distcore.put(np.full(200_000, i, dtype=np.int64))
        return distcore.get(small)["i"], int(distcore.get(big)[0])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(64)))
    assert results == [(i, i) for i in range(64)]


# ---------------------------------------------------------------- wait


@pytest.mark.parametrize("fetch_local", [True, False])
def test_wait(shared_cluster, fetch_local):
    @distcore.remote
    def sleep_then(x, s):
        time.sleep(s)
        return x

    fast = [sleep_then.remote(i, 0) for i in range(2)]
    slow = sleep_then.remote("slow", 30)
    ready, not_ready = distcore.wait(fast + [slow], num_returns=2, timeout=20, fetch_local=fetch_local)
    assert set(ready) == set(fast) and not_ready == [slow]
    ready, not_ready = distcore.wait([slow], timeout=0.2, fetch_local=fetch_local)
    assert ready == [] and not_ready == [slow]
    big = distcore.put(np.ones(2 * MB))
    ready, _ = distcore.wait([big], fetch_local=fetch_local)
    assert ready == [big]
    distcore.cancel(slow, force=True)


def test_wait_keeps_the_order_of_the_input(shared_cluster):
    refs = [distcore.put(i) for i in range(6)]
    ready, not_ready = distcore.wait(refs, num_returns=4)
    assert ready == refs[:4] and not_ready == refs[4:]


def test_wait_one_at_a_time_drains_every_ref_and_times_out_with_what_is_ready(shared_cluster):
    @distcore.remote
    def square(x, s=0.0):
        time.sleep(s)
        return x * x

    # The benchmark's loop: each wait returns one ready ref; every ref comes back exactly once.
    not_ready = [square.remote(i) for i in range(200)]
    seen = []
    while not_ready:
        ready, not_ready = distcore.wait(not_ready, timeout=30)
        assert len(ready) == 1
        seen += ready
    assert sorted(distcore.get(seen, timeout=30)) == [i * i for i in range(200)]
    # Fewer than num_returns ready by the timeout: the ready ones, in input order.
    slow = square.remote(3, 30)
    done = [square.remote(2), square.remote(4)]
    ready, not_ready = distcore.wait([done[0], slow, done[1]], num_returns=3, timeout=3)
    assert ready == done and not_ready == [slow]
    distcore.cancel(slow, force=True)


def test_wait_rejects_bad_arguments(shared_cluster):
    ref = distcore.put(1)
    with pytest.raises(TypeError):
        distcore.wait(ref)
    with pytest.raises(ValueError):
        distcore.wait([ref], num_returns=2)
    with pytest.raises(ValueError):
        distcore.wait([ref, ref])


# ---------------------------------------------------------------- nested refs


def test_top_level_ref_args_are_resolved_nested_ones_are_not(shared_cluster):
    @distcore.remote
    def kinds(top, nested):
        return type(top).__name__, [type(r).__name__ for r in nested["refs"]], distcore.get(nested["refs"])

    a, b = distcore.put(10), distcore.put(np.arange(MB))
    top, nested_kinds, nested_values = distcore.get(kinds.remote(a, {"refs": [a, b]}))
    assert top == "int"
    assert nested_kinds == ["ObjectRef", "ObjectRef"]
    assert nested_values[0] == 10
    np.testing.assert_array_equal(nested_values[1], np.arange(MB))


def test_put_list_of_refs_then_get_inside_a_task(shared_cluster):
    @distcore.remote
    def total(refs):
        return sum(int(np.asarray(v).sum()) for v in distcore.get(refs))

    inner = [distcore.put(i) for i in range(5)] + [distcore.put(np.ones(MB, dtype=np.int64))]
    outer = distcore.put(inner)
    del inner
    assert distcore.get(total.remote(outer)) == 10 + MB
    got = distcore.get(outer)
    assert all(isinstance(r, distcore.ObjectRef) for r in got)
    assert distcore.get(got[:5]) == [0, 1, 2, 3, 4]


def test_task_returns_refs(shared_cluster):
    @distcore.remote
    def make_refs(n):
        return [distcore.put(i * i) for i in range(n)] + [distcore.put(np.full(MB, 3, dtype=np.int8))]

    refs = distcore.get(make_refs.remote(3))
    assert distcore.get(refs[:3]) == [0, 1, 4]
    assert int(distcore.get(refs[3])[0]) == 3


def test_task_returns_a_ref_from_a_nested_task(shared_cluster):
    @distcore.remote
    def leaf(x):
        return x + 1

    @distcore.remote
    def middle(x):
        return leaf.remote(x)

    inner = distcore.get(middle.remote(41))
    assert isinstance(inner, distcore.ObjectRef)
    assert distcore.get(inner) == 42


def test_refs_inside_a_put_object_stay_usable_while_the_outer_lives(shared_cluster):
    outer = distcore.put({"inner": distcore.put(np.arange(MB, dtype=np.int32)), "small": distcore.put("s")})
    for _ in range(3):
        time.sleep(0.2)
        value = distcore.get(outer)
        assert distcore.get(value["small"]) == "s"
        assert int(distcore.get(value["inner"])[-1]) == MB - 1
        del value


def test_await_a_ref_inside_an_async_actor(shared_cluster):
    @distcore.remote
    class AsyncReader:
        async def total(self, box):
            values = await asyncio.gather(*box)
            return [int(np.asarray(v).sum()) for v in values]

    @distcore.remote
    def three():
        return 3

    reader = AsyncReader.remote()
    box = [distcore.put(np.ones(MB, dtype=np.int64)), three.remote()]
    assert distcore.get(reader.total.remote(box)) == [MB, 3]
    distcore.kill(reader)


def test_ref_passed_through_several_hops(shared_cluster):
    @distcore.remote
    def hop(box, n):
        if n == 0:
            return distcore.get(box[0])
        return distcore.get(hop.remote(box, n - 1))

    assert distcore.get(hop.remote([distcore.put("deep")], 3)) == "deep"


# ---------------------------------------------------------------- errors for lost objects


def test_get_of_a_freed_object_raises_object_lost_error(shared_cluster):
    ref = distcore.put(np.ones(MB))
    object_id, owner = ref.hex(), ref.owner_address()
    small = distcore.put("small")
    small_id = small.hex()
    del ref, small
    time.sleep(0.2)
    for oid in (object_id, small_id):
        revived = distcore.ObjectRef(oid, owner)
        with pytest.raises(ObjectLostError, match="freed") as info:
            distcore.get(revived, timeout=10)
        assert oid in str(info.value)


def test_get_of_an_object_whose_owner_died_raises_object_lost_error(shared_cluster):
    @distcore.remote
    class Holder:
        def make(self):
            return [distcore.put("owned by the actor"), distcore.put(np.ones(MB))]

    holder = Holder.remote()
    small, big = distcore.get(holder.make.remote())
    distcore.kill(holder)
    for ref in (small, big):
        with pytest.raises(ObjectLostError, match="owner") as info:
            distcore.get(ref, timeout=20)
        assert isinstance(info.value, OwnerDiedError)
        assert ref.hex() in str(info.value)


# ---------------------------------------------------------------- session end


def test_get_after_shutdown_says_the_cluster_is_gone(start_cluster):
    start_cluster(num_cpus=1, object_store_memory=64 * MB)
    small, big = distcore.put(1), distcore.put(np.ones(MB))
    distcore.shutdown()
    for ref in (small, big):
        with pytest.raises(ObjectLostError, match="shut down") as info:
            distcore.get(ref)
        assert ref.hex() in str(info.value)
        with pytest.raises(ObjectLostError, match="shut down"):
            distcore.wait([ref])
        with pytest.raises(ObjectLostError, match="shut down"):
            ref.future().result(timeout=30)
    assert not distcore.is_initialized(), "get of a dead cluster's ref must not start a new cluster"


def test_get_and_put_after_the_cluster_died_say_so(start_cluster):
    from distcore._private.api import runtime

    start_cluster(num_cpus=1, object_store_memory=64 * MB)
    big = distcore.put(np.ones(MB))
    head = runtime._head
    assert head is not None
    head.proc.kill()  # the whole cluster goes: control store, node manager (and its workers)
    head.proc.wait(timeout=10)
    with pytest.raises(ObjectLostError, match="cluster is gone") as info:
        distcore.get(big, timeout=20)
    assert big.hex() in str(info.value)
    with pytest.raises(ConnectionError, match="cluster is gone"):
        distcore.put(np.ones(MB))
    distcore.shutdown()


def test_a_session_leaves_no_shared_memory_behind(start_cluster):
    ctx = start_cluster(num_cpus=2, object_store_memory=64 * MB)
    session = os.path.basename(ctx["session_dir"]).removeprefix("session_")
    refs = [distcore.put(np.ones(MB)) for _ in range(5)]

    @distcore.remote
    def make():
        return np.ones(MB)

    refs.append(make.remote())
    distcore.get(refs)
    assert len(session_segments({session})) >= 6
    distcore.shutdown()
    wait_for(lambda: not session_segments({session}), timeout=10,
             message=f"segments left after shutdown: {session_segments({session})}")
