"""Behaviour tests for actors: creation, arguments, calls, ordering,
placement and errors. Handles and names live in test_actors_handles.py,
concurrency in test_actors_concurrency.py, deaths and restarts in
test_actors_lifecycle.py."""

from __future__ import annotations

import gc
import os
import time

import pytest

import distcore
from distcore.exceptions import ActorDiedError, ActorUnavailableError, TaskError


@distcore.remote
class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def incr(self):
        self.value += self.step
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()


@distcore.remote
class Log:
    def __init__(self):
        self.items = []

    def append(self, item):
        self.items.append(item)

    def items_(self):
        return list(self.items)


# ---------------------------------------------------------------- creation and calls


def test_constructor_args_and_kwargs_reach_the_actor(shared_cluster):
    c = Counter.remote(10, step=5)
    assert distcore.get(c.incr.remote(), timeout=30) == 15
    assert distcore.get(c.incr.remote(), timeout=30) == 20
    assert distcore.get(c.get.remote(), timeout=30) == 20


def test_object_ref_arguments_are_resolved_at_top_level_only(shared_cluster):
    @distcore.remote
    class Holder:
        def __init__(self, value, nested):
            self.value = value
            self.nested = nested

        def describe(self):
            return self.value, type(self.nested[0]).__name__, distcore.get(self.nested[0])

        def plus(self, x):
            return self.value + x

    @distcore.remote
    def make(n):
        return n * 2

    value_ref = distcore.put(40)
    nested_ref = distcore.put("inner")
    h = Holder.remote(value_ref, [nested_ref])
    assert distcore.get(h.describe.remote(), timeout=30) == (40, "ObjectRef", "inner")
    # A ref produced by a task, passed to a method, arrives as its value.
    assert distcore.get(h.plus.remote(make.remote(1)), timeout=30) == 42


def test_task_output_as_constructor_argument(shared_cluster):
    @distcore.remote
    def slow_value():
        import time

        time.sleep(0.3)
        return 7

    c = Counter.remote(slow_value.remote())
    assert distcore.get(c.incr.remote(), timeout=30) == 8


def test_calls_from_one_caller_run_in_submission_order(shared_cluster):
    log = Log.remote()
    for i in range(200):
        log.append.remote(i)
    assert distcore.get(log.items_.remote(), timeout=60) == list(range(200))


def test_each_actor_has_its_own_process_and_state(shared_cluster):
    a, b = Counter.remote(), Counter.remote(100)
    assert distcore.get([a.incr.remote(), b.incr.remote(), a.incr.remote()], timeout=30) == [1, 101, 2]
    pa, pb = distcore.get([a.pid.remote(), b.pid.remote()], timeout=30)
    assert pa != pb and os.getpid() not in (pa, pb)


def test_actor_cannot_be_instantiated_or_called_directly(shared_cluster):
    with pytest.raises(TypeError, match=r"Counter.remote\(\)"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"incr.remote\(\)"):
        c.incr()
    with pytest.raises(AttributeError, match="no_such"):
        c.no_such.remote()


def test_method_num_returns_decorator_and_options(shared_cluster):
    @distcore.remote
    class Pair:
        @distcore.method(num_returns=2)
        def both(self, x):
            return x, x + 1

        def three(self):
            return 1, 2, 3

    p = Pair.remote()
    first, second = p.both.remote(5)
    assert distcore.get([first, second], timeout=30) == [5, 6]
    refs = p.three.options(num_returns=3).remote()
    assert len(refs) == 3
    assert distcore.get(refs, timeout=30) == [1, 2, 3]


def test_method_num_returns_mismatch_is_a_clear_error(shared_cluster):
    @distcore.remote
    class Bad:
        @distcore.method(num_returns=2)
        def one(self):
            return 1

    a, b = Bad.remote().one.remote()
    with pytest.raises(Exception, match="num_returns=2"):
        distcore.get(a, timeout=30)


# ---------------------------------------------------------------- placement and resources


def test_many_default_actors_fit_on_a_small_cluster(start_cluster):
    start_cluster(num_cpus=2)
    actors = [Counter.remote(i) for i in range(20)]
    values = distcore.get([a.incr.remote() for a in actors], timeout=90)
    assert values == [i + 1 for i in range(20)]
    pids = distcore.get([a.pid.remote() for a in actors], timeout=30)
    assert len(set(pids)) == 20
    # Default actors hold no CPU while alive: tasks still run.

    @distcore.remote
    def square(x):
        return x * x

    assert distcore.get([square.remote(i) for i in range(4)], timeout=30) == [0, 1, 4, 9]
    del actors


def test_actor_with_num_cpus_holds_them_while_alive(start_cluster):
    start_cluster(num_cpus=2)

    @distcore.remote(num_cpus=2)
    class Big:
        def ping(self):
            return "pong"

    big = Big.remote()
    assert distcore.get(big.ping.remote(), timeout=30) == "pong"

    @distcore.remote
    def task():
        return 1

    ready, _ = distcore.wait([task.remote()], timeout=1.5)
    assert ready == []  # both CPUs are held by the actor
    distcore.kill(big)
    assert distcore.get(task.remote(), timeout=30) == 1


def test_gpu_actor_sees_its_own_gpu(shared_cluster):
    @distcore.remote(num_gpus=1)
    class GpuUser:
        def visible(self):
            return os.environ.get("CUDA_VISIBLE_DEVICES"), distcore.get_runtime_context().get_accelerator_ids()["GPU"]

    a, b = GpuUser.remote(), GpuUser.remote()
    (va, ida), (vb, idb) = distcore.get([a.visible.remote(), b.visible.remote()], timeout=30)
    assert {va, vb} == {"0", "1"}
    assert ida == [va] and idb == [vb]
    distcore.kill(a)
    distcore.kill(b)


def test_runtime_context_inside_an_actor(shared_cluster):
    @distcore.remote
    class WhoAmI:
        def ids(self):
            ctx = distcore.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_job_id()

    w = WhoAmI.remote()
    actor_id, job_id = distcore.get(w.ids.remote(), timeout=30)
    assert actor_id == w._actor_id_hex
    assert job_id == distcore.get_runtime_context().get_job_id()
    assert distcore.get_runtime_context().get_actor_id() is None


# ---------------------------------------------------------------- errors


class MyError(ValueError):
    pass


def test_method_error_is_task_error_and_user_class_with_traceback(shared_cluster):
    @distcore.remote
    class Faulty:
        def boom(self, x):
            raise MyError(f"bad value {x}")

        def fine(self):
            return "still alive"

    f = Faulty.remote()
    with pytest.raises(MyError, match="bad value 3") as info:
        distcore.get(f.boom.remote(3), timeout=30)
    assert isinstance(info.value, TaskError)
    text = str(info.value)
    assert "Traceback (most recent call last)" in text and "in boom" in text
    assert "actor Faulty" in text
    # The actor survives an application error.
    assert distcore.get(f.fine.remote(), timeout=30) == "still alive"


class CodedError(Exception):
    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code


def test_method_error_with_a_custom_constructor_keeps_its_attributes(shared_cluster):
    @distcore.remote
    class Faulty:
        def fail(self):
            raise CodedError(7)

    with pytest.raises(CodedError) as info:
        distcore.get(Faulty.remote().fail.remote(), timeout=30)
    assert info.value.code == 7
    assert isinstance(info.value, TaskError)


# ---------------------------------------------------------------- creation arguments


def test_creating_an_actor_does_not_wait_for_its_arguments(shared_cluster, tmp_path):
    gate = tmp_path / "gate"

    @distcore.remote
    def gated_value(path):
        # Ready only once the caller got its handle back (or after 30 s).
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        return 5 if os.path.exists(path) else -1000

    start = time.monotonic()
    c = Counter.remote(gated_value.remote(str(gate)))
    assert time.monotonic() - start < 15
    gate.touch()
    assert distcore.get(c.incr.remote(), timeout=60) == 6


def test_large_and_put_constructor_arguments_outlive_the_caller_refs(shared_cluster):
    import numpy as np

    @distcore.remote(max_restarts=1)
    class Holder:
        def __init__(self, array, blob):
            self.total = int(array.sum()) + len(blob)

        def total_(self):
            return self.total

        def crash(self):
            os._exit(1)

    array_ref = distcore.put(np.ones(1_000_000, dtype=np.int64))
    h = Holder.remote(array_ref, b"x" * 2_000_000)
    del array_ref
    gc.collect()
    assert distcore.get(h.total_.remote(), timeout=30) == 3_000_000
    with pytest.raises((ActorDiedError, ActorUnavailableError)):
        distcore.get(h.crash.remote(), timeout=30)
    # The restarted constructor reads the same arguments again.
    assert distcore.get(h.total_.remote(), timeout=30) == 3_000_000


def test_failed_argument_task_fails_the_actor_creation(shared_cluster):
    @distcore.remote(max_retries=0)
    def broken():
        raise OSError("no input")

    c = Counter.remote(broken.remote())
    with pytest.raises((ActorDiedError, OSError), match="no input"):
        distcore.get(c.incr.remote(), timeout=60)


def test_temporary_handle_call_completes(shared_cluster):
    assert distcore.get(Counter.remote(1).incr.remote(), timeout=30) == 2


def test_calls_keep_their_order_when_earlier_arguments_are_pending(shared_cluster):
    @distcore.remote
    def slow(x):
        import time

        time.sleep(1.0)
        return x

    log = Log.remote()
    log.append.remote(slow.remote("first"))
    log.append.remote("second")
    assert distcore.get(log.items_.remote(), timeout=30) == ["first", "second"]


def test_calls_sent_from_the_callers_thread_keep_their_order_around_pending_arguments(shared_cluster):
    # Once the actor is reached, a plain call is written by the caller's thread itself; a call with a
    # pending ref argument goes through the io loop: the calls after it must wait behind it.
    @distcore.remote
    def slow(x):
        import time

        time.sleep(0.5)
        return x

    log = Log.remote()
    assert distcore.get(log.items_.remote(), timeout=30) == []
    log.append.remote("a")
    log.append.remote(slow.remote("b"))
    for item in "cde":
        log.append.remote(item)
    assert distcore.get(log.items_.remote(), timeout=30) == list("abcde")


def test_calls_from_many_threads_of_one_caller_each_keep_their_order(shared_cluster):
    import threading

    log = Log.remote()
    distcore.get(log.items_.remote(), timeout=30)

    def caller(name):
        for i in range(60):
            ref = log.append.remote((name, i))
            if i % 7 == 0:
                distcore.get(ref, timeout=30)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    items = distcore.get(log.items_.remote(), timeout=60)
    assert sorted(items) == sorted((n, i) for n in range(4) for i in range(60))
    for n in range(4):
        assert [i for name, i in items if name == n] == list(range(60))
