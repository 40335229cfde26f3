"""Behaviour tests for distcore.util.ActorPool on a real cluster."""

from __future__ import annotations

import time

import pytest

import distcore
from distcore.exceptions import ActorDiedError, GetTimeoutError
from distcore.util import ActorPool


@distcore.remote
class Worker:
    def double(self, v):
        return 2 * v

    def sleep_then_double(self, v, seconds):
        time.sleep(seconds)
        return 2 * v

    @distcore.method(num_returns=2)
    def pair(self, v):
        return v, -v


def double(a, v):
    return a.double.remote(v)


def slow(delays):
    """An fn whose call for value v sleeps delays[v] seconds."""
    return lambda a, v: a.sleep_then_double.remote(v, delays[v])


@pytest.fixture
def two_workers(shared_cluster):
    workers = [Worker.remote(), Worker.remote()]
    # Both actors are up before timing-sensitive tests start.
    assert distcore.get([w.double.remote(0) for w in workers], timeout=60) == [0, 0]
    return workers


# ---------------------------------------------------------------- map


def test_map_yields_results_in_input_order_even_when_later_ones_finish_first(two_workers):
    pool = ActorPool(two_workers)
    # Value 0 is slowest, so it finishes last; map still yields it first.
    out = list(pool.map(slow({0: 0.4, 1: 0.0, 2: 0.0, 3: 0.0}), [0, 1, 2, 3]))
    assert out == [0, 2, 4, 6]
    assert not pool.has_next()


def test_map_unordered_yields_results_as_they_finish(two_workers):
    pool = ActorPool(two_workers)
    out = list(pool.map_unordered(slow({0: 0.6, 1: 0.0}), [0, 1]))
    assert out == [2, 0]  # the fast value first


def test_map_handles_more_values_than_actors_and_an_empty_list(two_workers):
    pool = ActorPool(two_workers)
    assert list(pool.map(double, range(10))) == [2 * v for v in range(10)]
    assert sorted(pool.map_unordered(double, range(10))) == [2 * v for v in range(10)]
    assert list(pool.map(double, [])) == []
    assert pool.has_free()


def test_map_drops_results_left_over_from_earlier_submissions(two_workers):
    pool = ActorPool(two_workers)
    pool.submit(double, 100)
    assert list(pool.map(double, [1, 2])) == [2, 4]
    pool.submit(double, 100)
    assert sorted(pool.map_unordered(double, [1, 2])) == [2, 4]


# ---------------------------------------------------------------- submit / get_next


def test_submit_and_get_next_return_in_submission_order(two_workers):
    pool = ActorPool(two_workers)
    assert not pool.has_next()
    fn = slow({1: 0.3, 2: 0.0, 3: 0.0})
    for v in [1, 2, 3]:  # 3 values, 2 actors: the third waits for a free actor
        pool.submit(fn, v)
    assert pool.has_next()
    assert not pool.has_free()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    assert pool.has_free()
    with pytest.raises(StopIteration, match="No more results"):
        pool.get_next()


def test_get_next_unordered_returns_the_first_finished(two_workers):
    pool = ActorPool(two_workers)
    fn = slow({1: 0.5, 2: 0.0})
    pool.submit(fn, 1)
    pool.submit(fn, 2)
    assert pool.get_next_unordered(timeout=30) == 4
    assert pool.get_next_unordered(timeout=30) == 2
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_values_queued_while_all_actors_are_busy_run_as_actors_free_up(shared_cluster):
    w = Worker.remote()
    pool = ActorPool([w])
    for v in range(5):
        pool.submit(double, v)
    assert not pool.has_free()
    assert pool.pop_idle() is None
    assert [pool.get_next(timeout=30) for _ in range(5)] == [0, 2, 4, 6, 8]
    assert pool.has_free()


def test_methods_with_several_returns_give_a_list_of_values(two_workers):
    pool = ActorPool(two_workers)
    pair = lambda a, v: a.pair.remote(v)  # noqa: E731
    pool.submit(pair, 1)
    pool.submit(pair, 2)
    assert pool.get_next(timeout=30) == [1, -1]
    assert pool.get_next_unordered(timeout=30) == [2, -2]


def test_get_next_after_get_next_unordered_passed_it_is_refused(two_workers):
    pool = ActorPool(two_workers)
    fn = slow({1: 0.5, 2: 0.0})
    pool.submit(fn, 1)
    pool.submit(fn, 2)
    assert pool.get_next_unordered(timeout=30) == 4  # the later submission
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    assert pool.get_next_unordered(timeout=30) == 2


def test_map_after_an_unordered_get_drops_the_leftovers(two_workers):
    pool = ActorPool(two_workers)
    fn = slow({1: 0.5, 2: 0.0})
    pool.submit(fn, 1)
    pool.submit(fn, 2)
    assert pool.get_next_unordered(timeout=30) == 4
    assert list(pool.map(double, [3, 4])) == [6, 8]


def test_a_task_error_reaches_the_caller_and_the_actor_stays_usable(two_workers):
    pool = ActorPool(two_workers[:1])
    pool.submit(lambda a, v: a.double.remote(v), None)  # 2 * None raises TypeError
    with pytest.raises(TypeError):
        pool.get_next(timeout=30)
    assert pool.has_free()
    assert list(pool.map(double, [5])) == [10]


def test_fn_must_return_object_refs(two_workers):
    pool = ActorPool(two_workers)
    with pytest.raises(TypeError, match="must return the ObjectRef"):
        pool.submit(lambda a, v: v, 1)
    # The actor was not lost: both are still idle.
    assert pool.pop_idle() is not None
    assert pool.pop_idle() is not None
    assert pool.pop_idle() is None


# ---------------------------------------------------------------- timeouts


def test_get_next_timeout_raises_and_keeps_the_result_pending(two_workers):
    pool = ActorPool(two_workers)
    pool.submit(slow({1: 0.8}), 1)
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        pool.get_next(timeout=0.2)
    assert isinstance(info.value, GetTimeoutError)
    assert time.monotonic() - start > 0.15
    assert pool.has_next()
    assert pool.get_next(timeout=30) == 2


def test_get_next_ignore_if_timedout_skips_to_the_next_result(two_workers):
    pool = ActorPool(two_workers)
    fn = slow({1: 1.0, 2: 0.0})
    pool.submit(fn, 1)
    pool.submit(fn, 2)
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert pool.get_next(timeout=30) == 4
    assert not pool.has_next()


def test_get_next_unordered_timeout_and_ignore(two_workers):
    pool = ActorPool(two_workers)
    fn = slow({1: 1.0, 2: 1.0})
    pool.submit(fn, 1)
    pool.submit(fn, 2)
    with pytest.raises(GetTimeoutError, match="Timed out"):
        pool.get_next_unordered(timeout=0.1)
    assert pool.has_next()
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True)
    # The oldest call was dropped; the other one is still returned.
    assert pool.get_next_unordered(timeout=30) == 4
    assert not pool.has_next()


def test_negative_timeout_is_rejected(two_workers):
    pool = ActorPool(two_workers)
    pool.submit(double, 1)
    with pytest.raises(ValueError, match="non-negative"):
        pool.get_next(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        pool.get_next_unordered(timeout=-1)
    with pytest.raises(TypeError, match="number of seconds"):
        pool.get_next(timeout="1")
    assert pool.get_next(timeout=30) == 2


# ---------------------------------------------------------------- pop_idle / push


def test_pop_idle_and_push_move_actors_in_and_out(two_workers):
    a1, a2 = two_workers
    pool = ActorPool([a1])
    pool.submit(double, 1)
    assert pool.pop_idle() is None  # a1 is busy
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a1)  # busy actors count as members
    assert pool.get_next(timeout=30) == 2
    assert pool.pop_idle() == a1
    assert not pool.has_free()
    pool.push(a2)
    assert pool.has_free()
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a2)
    assert list(pool.map(double, [3])) == [6]


def test_push_starts_a_value_submitted_to_an_empty_pool(two_workers):
    pool = ActorPool([])
    pool.submit(double, 7)
    assert not pool.has_next()  # nothing in flight: no actor to run it
    pool.push(two_workers[0])
    assert pool.has_next()
    assert pool.get_next(timeout=30) == 14
    assert pool.has_free()


def test_a_dead_actor_leaves_the_pool(shared_cluster):
    doomed, healthy = Worker.remote(), Worker.remote()
    assert distcore.get([doomed.double.remote(1), healthy.double.remote(1)], timeout=60) == [2, 2]
    distcore.kill(doomed)
    pool = ActorPool([healthy, doomed])  # submit takes the last idle actor first
    pool.submit(double, 1)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=30)
    assert pool.pop_idle() == healthy
    assert pool.pop_idle() is None
