"""Behaviour tests for task failures: errors, retries, cancellation, timeouts, infeasible tasks.

Everything here runs on a real local cluster (see conftest.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import cloudpickle
import psutil
import pytest

import distcore
from distcore._private.testing import wait_for
from distcore.exceptions import (
    GetTimeoutError,
    RayTaskError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.integration


class AppError(Exception):
    """A user exception class, defined in the user's module."""


class CodeError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def count_attempt(path: str) -> int:
    """Inside a task: record one attempt in ``path``; return the attempt number (1-based)."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


def attempts(path) -> int:
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def process_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie counts: it no longer runs)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for_path(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


# ----------------------------------------------------------------- application errors


def test_task_error_is_the_users_exception_with_remote_traceback(shared_cluster):
    @distcore.remote
    def fails_deep(x):
        def inner():
            raise AppError(f"bad input {x}")

        inner()

    with pytest.raises(AppError) as info:
        distcore.get(fails_deep.remote(7))
    err = info.value
    assert isinstance(err, TaskError) and isinstance(err, RayTaskError)
    assert "bad input 7" in str(err)
    assert "fails_deep" in str(err)
    # The remote traceback names the frames and the raising line.
    assert "in inner" in err.traceback_str
    assert 'raise AppError(f"bad input {x}")' in err.traceback_str
    assert isinstance(err.cause, AppError)
    assert err.pid is not None and err.pid != os.getpid()


def test_task_error_keeps_exception_attributes(shared_cluster):
    @distcore.remote
    def fails():
        raise CodeError(42, "answer")

    with pytest.raises(CodeError) as info:
        distcore.get(fails.remote())
    assert (info.value.code, info.value.detail) == (42, "answer")

    @distcore.remote
    def os_error():
        raise FileNotFoundError(2, "no such file", "/nope")

    with pytest.raises(FileNotFoundError) as info2:
        distcore.get(os_error.remote())
    assert isinstance(info2.value, TaskError)


def test_error_propagates_through_dependent_tasks(shared_cluster, tmp_path):
    marker = str(tmp_path / "consumer-ran")

    @distcore.remote
    def fails():
        raise AppError("upstream failed")

    @distcore.remote
    def consumer(x, marker):
        open(marker, "w").close()
        return x

    with pytest.raises(AppError, match="upstream failed"):
        distcore.get(consumer.remote(fails.remote(), marker))
    assert not os.path.exists(marker), "a task whose argument failed must not run"


def test_unpicklable_argument_is_a_type_error_naming_it(shared_cluster):
    @distcore.remote
    def takes(x, lock=None):
        return 1

    with pytest.raises(TypeError, match=r"argument 0 of .*takes.*lock"):
        takes.remote(threading.Lock())
    with pytest.raises(TypeError, match=r"argument 'lock' of .*takes"):
        takes.remote(1, lock=threading.Lock())


def test_unpicklable_return_value_is_a_type_error_naming_it(shared_cluster):
    @distcore.remote
    def returns_lock():
        return threading.Lock()

    with pytest.raises(TypeError, match=r"return value of .*returns_lock.*lock"):
        distcore.get(returns_lock.remote())


def test_unpicklable_exception_still_reports_its_type_and_message(shared_cluster):
    class LockedError(Exception):
        def __init__(self, message):
            super().__init__(message)
            self.lock = threading.Lock()

    @distcore.remote
    def fails():
        raise LockedError("with a lock inside")

    with pytest.raises(TaskError, match="LockedError: with a lock inside"):
        distcore.get(fails.remote())


def test_task_name_option_names_the_task_in_errors(shared_cluster):
    @distcore.remote
    def anonymous():
        raise AppError("named")

    with pytest.raises(AppError, match="my-task-name"):
        distcore.get(anonymous.options(name="my-task-name").remote())


def test_unpicklable_function_is_a_type_error(shared_cluster):
    lock = threading.Lock()

    @distcore.remote
    def captures():
        return lock.locked()

    with pytest.raises(TypeError, match="captures"):
        captures.remote()


# ----------------------------------------------------------------- retries


def test_worker_crash_is_retried(shared_cluster, tmp_path):
    path = str(tmp_path / "attempts")

    @distcore.remote(max_retries=2)
    def crashes_twice(path):
        if count_attempt(path) <= 2:
            os._exit(1)
        return "survived"

    assert distcore.get(crashes_twice.remote(path), timeout=60) == "survived"
    assert attempts(path) == 3


def test_worker_crash_is_retried_by_default_with_large_args(shared_cluster, tmp_path):
    import numpy as np

    path = str(tmp_path / "attempts")

    @distcore.remote
    def crashes_once(path, arr):
        if count_attempt(path) == 1:
            os._exit(1)
        return float(arr.sum())

    big = np.ones(100_000)  # through the object store: must survive the retry
    assert distcore.get(crashes_once.remote(path, big), timeout=60) == 100_000.0
    assert attempts(path) == 2


def test_worker_crash_with_retries_exhausted_raises_worker_crashed(shared_cluster, tmp_path):
    path = str(tmp_path / "attempts")

    @distcore.remote(max_retries=1)
    def always_crashes(path):
        count_attempt(path)
        os._exit(1)

    with pytest.raises(WorkerCrashedError, match="always_crashes"):
        distcore.get(always_crashes.remote(path), timeout=60)
    assert attempts(path) == 2

    path0 = str(tmp_path / "attempts0")
    with pytest.raises(WorkerCrashedError):
        distcore.get(always_crashes.options(max_retries=0).remote(path0), timeout=60)
    assert attempts(path0) == 1


def test_application_errors_are_not_retried_by_default(shared_cluster, tmp_path):
    path = str(tmp_path / "attempts")

    @distcore.remote(max_retries=3)
    def fails(path):
        count_attempt(path)
        raise AppError("no retry")

    with pytest.raises(AppError):
        distcore.get(fails.remote(path))
    assert attempts(path) == 1


def test_retry_exceptions_true(shared_cluster, tmp_path):
    path = str(tmp_path / "attempts")

    @distcore.remote(max_retries=3, retry_exceptions=True)
    def flaky(path):
        if count_attempt(path) < 3:
            raise AppError("transient")
        return "ok"

    assert distcore.get(flaky.remote(path)) == "ok"
    assert attempts(path) == 3

    path2 = str(tmp_path / "attempts2")
    with pytest.raises(AppError, match="transient"):
        distcore.get(flaky.options(max_retries=1).remote(path2))
    assert attempts(path2) == 2


def test_retry_exceptions_list_retries_only_listed_types(shared_cluster, tmp_path):
    @distcore.remote(max_retries=2, retry_exceptions=[AppError, KeyError])
    def raises(path, kind):
        count_attempt(path)
        raise {"app": AppError, "key": KeyError, "value": ValueError}[kind]("boom")

    listed, other, builtin = (str(tmp_path / n) for n in ("listed", "other", "builtin"))
    with pytest.raises(AppError):
        distcore.get(raises.remote(listed, "app"))
    assert attempts(listed) == 3
    with pytest.raises(KeyError):
        distcore.get(raises.remote(builtin, "key"))
    assert attempts(builtin) == 3
    with pytest.raises(ValueError):
        distcore.get(raises.remote(other, "value"))
    assert attempts(other) == 1


# ----------------------------------------------------------------- get timeout and wait


def test_get_timeout_raises_get_timeout_error(shared_cluster):
    @distcore.remote
    def slow():
        time.sleep(30)

    ref = slow.remote()
    start = time.monotonic()
    with pytest.raises(GetTimeoutError):
        distcore.get(ref, timeout=0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(TimeoutError):  # GetTimeoutError is also a TimeoutError
        distcore.get([ref], timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        distcore.get(ref, timeout=-1)
    distcore.cancel(ref, force=True)


def test_wait_num_returns_and_timeout(shared_cluster):
    @distcore.remote
    def sleep_then(value, seconds):
        time.sleep(seconds)
        return value

    fast = [sleep_then.remote(i, 0) for i in range(2)]
    slow = sleep_then.remote("slow", 30)
    refs = [slow, *fast]
    ready, not_ready = distcore.wait(refs, num_returns=2, timeout=30)
    assert ready == fast and not_ready == [slow]
    # Only two can ever be ready in time: the timeout ends the wait.
    start = time.monotonic()
    ready, not_ready = distcore.wait(refs, num_returns=3, timeout=0.5)
    assert 0.4 < time.monotonic() - start < 5
    assert ready == fast and not_ready == [slow]
    ready, not_ready = distcore.wait(refs)
    assert len(ready) == 1 and ready[0] in fast and len(not_ready) == 2
    ready, not_ready = distcore.wait([slow], timeout=0)
    assert (ready, not_ready) == ([], [slow])
    with pytest.raises(ValueError, match="num_returns"):
        distcore.wait(refs, num_returns=4)
    distcore.cancel(slow, force=True)


# ----------------------------------------------------------------- cancel


def test_cancel_queued_task(shared_cluster, tmp_path):
    started, marker = str(tmp_path / "started"), str(tmp_path / "queued-ran")

    @distcore.remote(num_cpus=0, resources={"custom": 4})
    def hog(started):
        open(started, "w").close()
        time.sleep(30)

    @distcore.remote(num_cpus=0, resources={"custom": 1})
    def queued(marker):
        open(marker, "w").close()

    blocker = hog.remote(started)
    wait_for_path(started)
    ref = queued.remote(marker)
    assert distcore.wait([ref], timeout=0.3) == ([], [ref])
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=10)
    distcore.cancel(blocker, force=True)
    with pytest.raises(TaskCancelledError):
        distcore.get(blocker, timeout=10)

    # The custom resource is free again, and the cancelled task never ran.
    @distcore.remote(num_cpus=0, resources={"custom": 4})
    def after():
        return "ran"

    assert distcore.get(after.remote(), timeout=30) == "ran"
    assert not os.path.exists(marker)


def test_cancel_running_task(shared_cluster, tmp_path):
    started = str(tmp_path / "started")

    @distcore.remote(max_retries=2, retry_exceptions=True)
    def sleeper(started):
        with open(started + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(started + ".tmp", started)
        for _ in range(600):
            try:
                time.sleep(0.1)
            except Exception:  # noqa: BLE001 - a broad handler must not swallow the cancel
                pass
        return "finished"

    ref = sleeper.remote(started)
    wait_for_path(started)
    start = time.monotonic()
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=20)
    assert time.monotonic() - start < 10
    # Not retried (despite retry_exceptions), and the worker survives a non-forced cancel.
    time.sleep(0.5)
    with open(started) as f:
        assert not process_gone(int(f.read()))

    @distcore.remote
    def ping():
        return "pong"

    assert distcore.get(ping.remote(), timeout=30) == "pong"


def test_cancel_running_task_blocked_in_get(shared_cluster, tmp_path):
    started = str(tmp_path / "started")

    @distcore.remote
    def never():
        time.sleep(60)

    @distcore.remote
    def waits(started):
        inner = never.remote()
        open(started, "w").close()
        return distcore.get(inner)

    ref = waits.remote(started)
    wait_for_path(started)
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=20)


def test_cancel_task_waiting_for_its_arguments(shared_cluster, tmp_path):
    marker = str(tmp_path / "ran")

    @distcore.remote
    def slow():
        time.sleep(30)

    @distcore.remote
    def consumer(x, marker):
        open(marker, "w").close()

    dep = slow.remote()
    ref = consumer.remote(dep, marker)
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=5)
    distcore.cancel(dep, force=True)
    with pytest.raises(TaskCancelledError):
        distcore.get(dep, timeout=10)
    assert not os.path.exists(marker)


def test_cancel_is_recursive_by_default(shared_cluster, tmp_path):
    child_started, child_cancelled = (
        str(tmp_path / "child-started"),
        str(tmp_path / "child-cancelled"),
    )

    @distcore.remote
    def child(started, cancelled):
        open(started, "w").close()
        try:
            time.sleep(60)
        except KeyboardInterrupt:  # how a cancel arrives in the task, as in Ray
            open(cancelled, "w").close()
            raise

    @distcore.remote
    def parent(started, cancelled):
        return distcore.get(child.remote(started, cancelled))

    ref = parent.remote(child_started, child_cancelled)
    wait_for_path(child_started)
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=20)
    wait_for_path(child_cancelled, timeout=10)


def test_cancel_streaming_generator(shared_cluster):
    @distcore.remote(num_returns="streaming")
    def endless():
        i = 0
        while True:
            yield i
            i += 1
            time.sleep(0.05)

    gen = endless.remote()
    assert distcore.get(next(gen)) == 0
    distcore.cancel(gen)
    values = []
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            values.append(distcore.get(ref, timeout=20))
    assert values == list(range(1, len(values) + 1))
    with pytest.raises(StopIteration):
        next(gen)


def test_force_cancel_kills_the_worker(shared_cluster, tmp_path):
    pid_file = str(tmp_path / "pid")

    @distcore.remote(max_retries=3)
    def stubborn(pid_file):
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        while True:  # ignores the soft cancel
            try:
                time.sleep(60)
            except BaseException:  # noqa: BLE001
                pass

    # The worker was killed (and the task not retried, despite max_retries).
    _force_cancel_kills_its_worker(stubborn.remote(pid_file), pid_file)


def test_cancel_finished_task_is_a_no_op(shared_cluster):
    @distcore.remote
    def done():
        return 5

    ref = done.remote()
    assert distcore.get(ref) == 5
    distcore.cancel(ref)
    assert distcore.get(ref) == 5
    with pytest.raises(TypeError, match="ObjectRef"):
        distcore.cancel("not a ref")


# ----------------------------------------------------------------- infeasible


def test_infeasible_task_warns_with_its_demand_and_can_be_cancelled(shared_cluster, capfd):
    @distcore.remote(num_gpus=100)
    def needs_many_gpus():
        return "impossible"

    ref = needs_many_gpus.remote()
    seen = ""
    deadline = time.monotonic() + 15
    while "GPU" not in seen or "100" not in seen:
        assert time.monotonic() < deadline, f"no infeasibility warning; stderr was: {seen!r}"
        time.sleep(0.1)
        seen += capfd.readouterr().err
    assert "needs_many_gpus" in seen and "cannot be scheduled" in seen
    time.sleep(2.5)  # the warning is not repeated while the task waits
    seen += capfd.readouterr().err
    assert seen.count("needs_many_gpus") == 1, seen
    assert distcore.wait([ref], timeout=0.5) == ([], [ref])
    distcore.cancel(ref)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=10)


def test_tasks_pushed_on_a_kept_lease_retry_crashes_and_cancel(shared_cluster, tmp_path):
    # After a sync task, the next one of the same shape is pushed from the caller's thread to the
    # worker still leased for it: crashes, retries and cancellation behave as on the io-loop path.
    path, pid_file = str(tmp_path / "attempts"), str(tmp_path / "pid")

    @distcore.remote
    def warm():
        return os.getpid()

    @distcore.remote(max_retries=1)
    def crashes_once(path):
        if count_attempt(path) <= 1:
            os._exit(1)
        return "survived"

    @distcore.remote(max_retries=3)
    def stubborn(pid_file):
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        while True:
            try:
                time.sleep(60)
            except BaseException:  # noqa: BLE001 - ignores the soft cancel
                pass

    for _ in range(3):
        distcore.get(warm.remote(), timeout=30)
    assert distcore.get(crashes_once.remote(path), timeout=60) == "survived"
    assert attempts(path) == 2
    pids = {distcore.get(warm.remote(), timeout=30) for _ in range(20)}
    assert pids and all(not process_gone(pid) for pid in pids)

    distcore.get(warm.remote(), timeout=30)
    pid = _force_cancel_kills_its_worker(stubborn.remote(pid_file), pid_file)
    assert distcore.get(warm.remote(), timeout=30) != pid


def _force_cancel_kills_its_worker(ref, pid_file) -> int:
    """Force-cancel ``ref`` once its task wrote its worker's pid: the get raises TaskCancelledError
    and that worker process ends. The pid."""
    wait_for_path(pid_file)
    with open(pid_file) as f:
        pid = int(f.read())
    distcore.cancel(ref, force=True)
    with pytest.raises(TaskCancelledError):
        distcore.get(ref, timeout=20)
    wait_for(lambda: process_gone(pid), message=f"worker {pid} still alive after force cancel")
    return pid
