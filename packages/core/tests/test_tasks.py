"""Behaviour tests for tasks: @remote, arguments, returns, generators, nesting, resources.

Errors, retries, cancellation and timeouts are in test_task_errors.py.
Everything here runs on a real local cluster (see conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import cloudpickle
import numpy as np
import psutil
import pytest

import distcore
from distcore import ObjectRef, ObjectRefGenerator
from distcore._private.testing import wait_for

# Functions and classes defined here travel to workers by value, as those of
# a user's script do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.integration


def wait_for_files(directory: str, count: int, timeout: float = 30.0) -> bool:
    """Inside a task: wait until ``directory`` holds ``count`` files (a barrier)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(os.listdir(directory)) >= count:
            return True
        time.sleep(0.02)
    return False


def process_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie counts: it no longer runs)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


# ----------------------------------------------------------------- @remote and .options


def test_remote_without_and_with_arguments(shared_cluster):
    @distcore.remote
    def double(x):
        return 2 * x

    @distcore.remote(num_cpus=0.5, max_retries=0)
    def triple(x):
        return 3 * x

    assert distcore.get(double.remote(21)) == 42
    assert distcore.get([triple.remote(i) for i in range(4)]) == [0, 3, 6, 9]
    assert double.__name__ == "double"  # the decorator keeps the function's metadata


def test_remote_decorator_misuse_raises_type_error(shared_cluster):
    with pytest.raises(TypeError, match="keyword options only"):
        distcore.remote(1, 2)
    with pytest.raises(TypeError):
        distcore.remote(3)


def test_calling_a_remote_function_directly_raises_type_error(shared_cluster):
    @distcore.remote
    def add(a, b):
        return a + b

    with pytest.raises(TypeError, match=r"add\.remote\(\)"):
        add(1, 2)


def test_options_override_for_one_call_only(shared_cluster):
    @distcore.remote
    def pair():
        return 1, 2

    a, b = pair.options(num_returns=2).remote()
    assert isinstance(a, ObjectRef) and isinstance(b, ObjectRef)
    assert distcore.get([a, b]) == [1, 2]
    # The function itself is unchanged.
    assert distcore.get(pair.remote()) == (1, 2)
    # Options chain, the later one winning.
    ref = pair.options(num_returns=2).options(num_returns=1).remote()
    assert distcore.get(ref) == (1, 2)


def test_options_rejects_unknown_or_invalid_values(shared_cluster):
    @distcore.remote
    def f():
        return 1

    with pytest.raises(ValueError, match="num_cpu"):
        f.options(num_cpu=1)
    with pytest.raises(ValueError, match="num_returns"):
        f.options(num_returns="many")
    with pytest.raises(ValueError, match="max_calls"):
        f.options(max_calls=2)


def test_max_calls_retires_the_worker(shared_cluster):
    @distcore.remote(max_calls=1)
    def once():
        return os.getpid()

    @distcore.remote(max_calls=2)
    def twice():
        return os.getpid()

    pids = [distcore.get(once.remote(), timeout=60) for _ in range(3)]
    assert len(set(pids)) == 3, "each max_calls=1 task must get a fresh worker"
    for pid in pids:
        wait_for(
            lambda pid=pid: process_gone(pid), message=f"worker {pid} did not exit after max_calls"
        )
    pids = [distcore.get(twice.remote(), timeout=60) for _ in range(4)]
    assert len(set(pids)) >= 2 and all(pids.count(p) <= 2 for p in pids)


def test_remote_before_init_auto_initializes(tmp_path):
    # A plain script: its functions and classes live in __main__.
    script = tmp_path / "auto_init.py"
    script.write_text(
        textwrap.dedent("""
        import distcore

        class ScriptError(Exception):
            pass

        @distcore.remote
        def inc(x):
            return x + 1

        @distcore.remote(max_retries=1, retry_exceptions=[ScriptError])
        def flaky():
            raise ScriptError("from the script")

        assert not distcore.is_initialized()
        ref = inc.remote(1)
        assert distcore.is_initialized()
        print("RESULT", distcore.get(ref), flush=True)
        try:
            distcore.get(flaky.remote())
        except ScriptError as e:
            print("CAUGHT", type(e).__name__, "auto_init.py" in str(e), flush=True)
    """)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISTCORE_ADDRESS", "RAY_ADDRESS")}
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "RESULT 2" in out.stdout
    assert "CAUGHT TaskError(ScriptError) True" in out.stdout, out.stdout + out.stderr


# ----------------------------------------------------------------- arguments


def test_args_by_value_and_kwargs(shared_cluster):
    @distcore.remote
    def describe(a, b=10, *args, c=100, **kwargs):
        return a, b, args, c, kwargs

    assert distcore.get(describe.remote(1)) == (1, 10, (), 100, {})
    assert distcore.get(describe.remote(1, 2, 3, 4, c=5, d=6)) == (1, 2, (3, 4), 5, {"d": 6})
    assert distcore.get(describe.remote(a="x", c=[1, 2])) == ("x", 10, (), [1, 2], {})


def test_top_level_ref_args_are_resolved(shared_cluster):
    @distcore.remote
    def identity(x):
        return type(x).__name__, x

    @distcore.remote
    def slow_value():
        time.sleep(0.3)
        return {"k": 1}

    put_ref = distcore.put([1, 2, 3])
    assert distcore.get(identity.remote(put_ref)) == ("list", [1, 2, 3])
    # A pending task result: the dependent task waits for it.
    assert distcore.get(identity.remote(slow_value.remote())) == ("dict", {"k": 1})
    # Refs given as keyword arguments are resolved too.
    assert distcore.get(identity.remote(x=put_ref)) == ("list", [1, 2, 3])


def test_refs_nested_in_containers_stay_refs(shared_cluster):
    @distcore.remote
    def inspect_nested(items, mapping):
        return (
            [type(r).__name__ for r in items],
            distcore.get(items),
            type(mapping["r"]).__name__,
            distcore.get(mapping["r"]),
        )

    @distcore.remote
    def make(x):
        return x * 2

    @distcore.remote
    def first_of(items):
        return items[0]  # hands the caller's own ref back

    own = distcore.put("mine")
    back = distcore.get(first_of.remote([own]))
    assert back == own and distcore.get(back) == "mine"

    refs = [distcore.put("a"), make.remote(4)]
    names, values, inner_name, inner_value = distcore.get(
        inspect_nested.remote(refs, {"r": distcore.put(7)})
    )
    assert names == ["ObjectRef", "ObjectRef"]
    assert values == ["a", 8]
    assert (inner_name, inner_value) == ("ObjectRef", 7)


def test_large_numpy_args_go_through_the_object_store(shared_cluster):
    @distcore.remote
    def summarize(arr, scale=1):
        return float(arr.sum()) * scale, arr.shape, arr.dtype.str, bool(arr.flags.writeable)

    big = np.arange(200_000, dtype=np.float64)  # 1.6 MB, well above the 100 KB inline limit
    total, shape, dtype, writeable = distcore.get(summarize.remote(big))
    assert (total, shape, dtype) == (float(big.sum()), (200_000,), big.dtype.str)
    # Read zero-copy from shared memory: the worker's array is read-only.
    assert writeable is False
    # As a keyword argument and via an explicit put, the same.
    assert distcore.get(summarize.remote(big, scale=2))[0] == 2 * float(big.sum())
    ref = distcore.put(big)
    assert (
        distcore.get([summarize.remote(ref) for _ in range(3)])
        == [(float(big.sum()), (200_000,), "<f8", False)] * 3
    )
    # Small arrays travel inline and arrive intact.
    small = np.arange(10)
    assert distcore.get(summarize.remote(small))[:2] == (45.0, (10,))


def test_large_numpy_return_value(shared_cluster):
    @distcore.remote
    def make(n):
        return np.full(n, 3, dtype=np.int32)

    @distcore.remote
    def total(arr):
        return int(arr.sum())

    arr = distcore.get(make.remote(500_000))
    assert arr.shape == (500_000,) and int(arr.sum()) == 1_500_000
    assert not arr.flags.writeable  # zero-copy view into the store
    # A large result passed on to another task without passing through the driver.
    assert distcore.get(total.remote(make.remote(300_000))) == 900_000


def test_submitting_from_many_driver_threads(shared_cluster):
    import threading

    @distcore.remote
    def square(x):
        return x * x

    results: dict[int, list[int]] = {}

    def submit(k):
        results[k] = distcore.get([square.remote(k * 100 + i) for i in range(25)])

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {k: v for k, v in results.items()} == {
        k: [(k * 100 + i) ** 2 for i in range(25)] for k in range(6)
    }


def test_refs_are_awaitable_in_asyncio(shared_cluster):
    import asyncio

    @distcore.remote
    def add(a, b):
        return a + b

    async def main():
        first = await add.remote(1, 2)
        both = await asyncio.gather(add.remote(first, 3), add.remote(10, 20))
        return first, both

    assert asyncio.run(main()) == (3, [6, 30])


# ----------------------------------------------------------------- returns


def test_tasks_returning_refs(shared_cluster):
    @distcore.remote
    def leaf(x):
        return x + 1

    @distcore.remote
    def put_inside():
        return distcore.put("owned by the worker")

    @distcore.remote
    def fan_out(n):
        return [leaf.remote(i) for i in range(n)]

    inner = distcore.get(put_inside.remote())
    assert isinstance(inner, ObjectRef)
    assert distcore.get(inner) == "owned by the worker"
    refs = distcore.get(fan_out.remote(3))
    assert all(isinstance(r, ObjectRef) for r in refs)
    assert distcore.get(refs) == [1, 2, 3]


def test_num_returns_zero_one_and_three(shared_cluster):
    @distcore.remote(num_returns=0)
    def nothing():
        return None

    @distcore.remote(num_returns=1)
    def one():
        return (1, 2, 3)

    @distcore.remote(num_returns=3)
    def three():
        return "a", ["b"], {"c": 3}

    assert nothing.remote() is None
    assert distcore.get(one.remote()) == (1, 2, 3)
    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert distcore.get(refs) == ["a", ["b"], {"c": 3}]
    x, y, z = three.remote()
    assert distcore.get(z) == {"c": 3}


def test_num_returns_mismatch_is_an_error(shared_cluster):
    @distcore.remote(num_returns=3)
    def two():
        return 1, 2

    @distcore.remote(num_returns=2)
    def scalar():
        return 5

    refs = two.remote()
    for ref in refs:
        with pytest.raises(ValueError, match="num_returns=3"):
            distcore.get(ref)
    with pytest.raises(ValueError, match="num_returns=2"):
        distcore.get(scalar.remote()[0])


# ----------------------------------------------------------------- generators


def test_dynamic_generator(shared_cluster):
    @distcore.remote(num_returns="dynamic")
    def squares(n):
        for i in range(n):
            yield i * i

    @distcore.remote(num_returns="dynamic")
    def big_items(n):
        for i in range(n):
            yield np.full(50_000, i, dtype=np.float64)  # 400 KB each: through the store

    ref = squares.remote(5)
    assert isinstance(ref, ObjectRef)
    gen = distcore.get(ref)
    assert isinstance(gen, ObjectRefGenerator)
    assert len(gen) == 5
    assert [distcore.get(r) for r in gen] == [0, 1, 4, 9, 16]
    arrays = [distcore.get(r) for r in distcore.get(big_items.remote(3))]
    assert [float(a[0]) for a in arrays] == [0.0, 1.0, 2.0]
    assert len(distcore.get(squares.remote(0))) == 0


def test_dynamic_generator_error_raises_on_get(shared_cluster):
    @distcore.remote(num_returns="dynamic")
    def broken():
        yield 1
        raise KeyError("dynamic failure")

    with pytest.raises(KeyError, match="dynamic failure"):
        distcore.get(broken.remote())


def test_streaming_generator_yields_in_order_while_running(shared_cluster, tmp_path):
    @distcore.remote(num_returns="streaming")
    def stream(n, gate):
        yield 0
        # Item 0 must reach the caller before the task goes on.
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield os.path.exists(gate)
        yield from range(2, n)

    gate = str(tmp_path / "gate")
    gen = stream.remote(20, gate)
    assert isinstance(gen, ObjectRefGenerator)
    assert distcore.get(next(gen)) == 0
    open(gate, "w").close()
    assert distcore.get(next(gen)) is True
    assert [distcore.get(r) for r in gen] == list(range(2, 20))
    with pytest.raises(StopIteration):
        next(gen)


def test_streaming_generator_exception_raises_at_the_failing_item(shared_cluster):
    @distcore.remote(num_returns="streaming")
    def fails_at_two():
        yield "a"
        yield "b"
        raise ValueError("stream broke after two items")

    gen = fails_at_two.remote()
    first, second, third = next(gen), next(gen), next(gen)
    assert distcore.get(first) == "a"
    assert distcore.get(second) == "b"
    with pytest.raises(ValueError, match="stream broke after two items"):
        distcore.get(third)
    with pytest.raises(StopIteration):
        next(gen)


def test_streaming_generator_of_large_items(shared_cluster):
    @distcore.remote(num_returns="streaming")
    def chunks(n):
        for i in range(n):
            yield np.full(100_000, i, dtype=np.int64)

    sums = [int(distcore.get(r).sum()) for r in chunks.remote(4)]
    assert sums == [0, 100_000, 200_000, 300_000]


# ----------------------------------------------------------------- nested tasks


def test_nested_tasks_do_not_deadlock_on_two_cpus(start_cluster):
    start_cluster(num_cpus=2)

    @distcore.remote
    def leaf(x):
        return x * 10

    @distcore.remote
    def middle(x):
        # Blocks in get while holding its CPU: the CPU must be lent to the leaves.
        return sum(distcore.get([leaf.remote(x), leaf.remote(x + 1)]))

    @distcore.remote
    def factorial(n):
        return 1 if n <= 1 else n * distcore.get(factorial.remote(n - 1))

    @distcore.remote
    def waiter():
        # wait() blocks like get: it must lend the CPU too.
        ready, _ = distcore.wait([leaf.remote(1), leaf.remote(2)], num_returns=2, timeout=30)
        return len(ready)

    assert distcore.get([middle.remote(i) for i in range(4)], timeout=60) == [10, 30, 50, 70]
    assert distcore.get(factorial.remote(5), timeout=60) == 120
    start = time.monotonic()
    assert distcore.get([waiter.remote(), waiter.remote()], timeout=60) == [2, 2]
    assert time.monotonic() - start < 20


# ----------------------------------------------------------------- runtime context and resources


def test_runtime_context_inside_a_task(shared_cluster):
    @distcore.remote
    def context():
        ctx = distcore.get_runtime_context()
        return {
            "task_id": ctx.get_task_id(),
            "job_id": ctx.get_job_id(),
            "node_id": ctx.get_node_id(),
            "actor_id": ctx.get_actor_id(),
            "resources": ctx.get_assigned_resources(),
            "worker_id": ctx.get_worker_id(),
        }

    driver = distcore.get_runtime_context()
    ref = context.remote()
    seen = distcore.get(ref)
    assert seen["task_id"] == ref.task_id()
    assert seen["job_id"] == driver.get_job_id()
    assert seen["node_id"] == driver.get_node_id()
    assert seen["actor_id"] is None
    assert seen["resources"] == {"CPU": 1.0}
    assert seen["worker_id"] != driver.get_worker_id()
    assert driver.get_task_id() is None
    other = distcore.get(context.options(num_cpus=2, resources={"custom": 1}).remote())
    assert other["resources"] == {"CPU": 2.0, "custom": 1.0}
    assert other["task_id"] != seen["task_id"]


def test_fractional_cpus_share_one_cpu(start_cluster, tmp_path):
    start_cluster(num_cpus=1)

    @distcore.remote(num_cpus=0.5)
    def half(directory, i):
        start = time.time()
        open(os.path.join(directory, str(i)), "w").close()
        met = wait_for_files(directory, 2)
        time.sleep(0.3)
        return distcore.get_runtime_context().get_assigned_resources(), met, (start, time.time())

    results = distcore.get([half.remote(str(tmp_path), i) for i in range(3)], timeout=60)
    assert all(r[0] == {"CPU": 0.5} for r in results)
    assert all(r[1] for r in results), "two 0.5-CPU tasks never ran at once on one CPU"
    assert max_overlap([r[2] for r in results]) <= 2


def test_custom_resources_limit_concurrency(shared_cluster, tmp_path):
    @distcore.remote(num_cpus=0, resources={"custom": 2})
    def uses_custom(directory, i):
        start = time.time()
        open(os.path.join(directory, str(i)), "w").close()
        met = wait_for_files(directory, 2)
        time.sleep(0.3)
        return distcore.get_runtime_context().get_assigned_resources(), met, (start, time.time())

    results = distcore.get([uses_custom.remote(str(tmp_path), i) for i in range(3)], timeout=60)
    assert all(r[0] == {"custom": 2.0} for r in results)
    assert all(r[1] for r in results)
    # {"custom": 4} on the node: at most two at once.
    assert max_overlap([r[2] for r in results]) == 2


def test_gpu_ids_and_cuda_visible_devices(shared_cluster, tmp_path):
    @distcore.remote(num_gpus=1)
    def gpu_task(directory, i):
        open(os.path.join(directory, str(i)), "w").close()
        met = wait_for_files(directory, 2)
        ctx = distcore.get_runtime_context()
        return (
            distcore.get_gpu_ids(),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            ctx.get_accelerator_ids(),
            met,
        )

    results = distcore.get([gpu_task.remote(str(tmp_path), i) for i in range(2)], timeout=60)
    assert all(met for *_, met in results), "the two 1-GPU tasks did not run at once on two GPUs"
    ids = sorted(r[0][0] for r in results)
    assert ids == [0, 1]
    for gpu_ids, visible, accelerators, _ in results:
        assert len(gpu_ids) == 1
        assert visible == str(gpu_ids[0])
        assert accelerators == {"GPU": [str(gpu_ids[0])]}


def test_tasks_without_gpus_see_none_even_on_a_reused_worker(start_cluster):
    start_cluster(num_cpus=1, num_gpus=1)

    @distcore.remote(num_gpus=1)
    def with_gpu():
        return os.getpid(), distcore.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

    @distcore.remote
    def without_gpu():
        ctx = distcore.get_runtime_context()
        return (
            os.getpid(),
            distcore.get_gpu_ids(),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
            ctx.get_assigned_resources(),
        )

    gpu_pid, gpu_ids, visible = distcore.get(with_gpu.remote())
    assert (gpu_ids, visible) == ([0], "0")
    pids = set()
    for _ in range(3):
        pid, ids, visible, resources = distcore.get(without_gpu.remote())
        pids.add(pid)
        assert ids == [] and visible == "" and resources == {"CPU": 1.0}
    assert gpu_pid in pids, "expected the one-CPU node to reuse its worker"


def test_fractional_gpus_share_a_device(shared_cluster, tmp_path):
    @distcore.remote(num_gpus=0.5, num_cpus=0)
    def quarter(directory, i):
        open(os.path.join(directory, str(i)), "w").close()
        met = wait_for_files(directory, 2)
        return distcore.get_gpu_ids(), distcore.get_runtime_context().get_assigned_resources(), met

    results = distcore.get([quarter.remote(str(tmp_path), i) for i in range(2)], timeout=60)
    for gpu_ids, resources, met in results:
        assert met and len(gpu_ids) == 1
        assert resources == {"GPU": 0.5}
