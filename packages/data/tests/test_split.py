"""split, split_at_indices, train_test_split and streaming_split (iterators handed to actors)."""

from __future__ import annotations

import threading

import pytest

import distcore
import distcore.data as dd

pytestmark = pytest.mark.usefixtures("shared_cluster")


def _ids(ds) -> list[int]:
    return [r["id"] for r in ds.take_all()]


def test_split_covers_all_rows() -> None:
    parts = dd.range(100, override_num_blocks=10).split(3)
    ids = sorted(i for p in parts for i in _ids(p))
    assert ids == list(range(100))
    equal = dd.range(100, override_num_blocks=7).split(3, equal=True)
    assert [p.count() for p in equal] == [33, 33, 33]
    assert len(set(i for p in equal for i in _ids(p))) == 99


def test_split_at_indices_and_train_test_split() -> None:
    a, b, c = dd.range(10, override_num_blocks=3).split_at_indices([2, 7])
    assert (_ids(a), _ids(b), _ids(c)) == ([0, 1], [2, 3, 4, 5, 6], [7, 8, 9])
    train, test = dd.range(10).train_test_split(0.3)
    assert (_ids(train), _ids(test)) == (list(range(7)), [7, 8, 9])
    train, test = dd.range(10).train_test_split(2, shuffle=True, seed=3)
    assert sorted(_ids(train) + _ids(test)) == list(range(10)) and test.count() == 2
    with pytest.raises(ValueError, match="test_size"):
        dd.range(10).train_test_split(1.5)
    with pytest.raises(ValueError, match="sorted"):
        dd.range(10).split_at_indices([5, 2])


def _consume(it, out, idx) -> None:
    out[idx] = [int(x) for b in it.iter_batches(batch_size=7) for x in b["id"]]


def test_streaming_split_equal_in_threads() -> None:
    its = dd.range(1001, override_num_blocks=9).streaming_split(3, equal=True)
    out: dict[int, list[int]] = {}
    threads = [threading.Thread(target=_consume, args=(it, out, i)) for i, it in enumerate(its)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [len(out[i]) for i in range(3)] == [333, 333, 333]
    seen = [x for i in range(3) for x in out[i]]
    assert len(set(seen)) == 999 and set(seen) <= set(range(1001))


def test_streaming_split_epochs_sequential() -> None:
    a, b = dd.range(40, override_num_blocks=4).streaming_split(2)
    for _ in range(2):
        rows_a = [r["id"] for r in a.iter_rows()]
        rows_b = [r["id"] for r in b.iter_rows()]
        assert sorted(rows_a + rows_b) == list(range(40))


@distcore.remote(num_cpus=0)
class Worker:
    def consume(self, it, epochs):
        out = []
        for _ in range(epochs):
            out.append(sum(len(b["id"]) for b in it.iter_batches(batch_size=16)))
        return out


def test_streaming_split_iterators_passed_to_actors() -> None:
    ds = dd.range(500, override_num_blocks=10).map_batches(lambda b: {"id": b["id"] * 2})
    its = ds.streaming_split(2, equal=True)
    workers = [Worker.remote() for _ in its]
    results = distcore.get([w.consume.remote(it, 2) for w, it in zip(workers, its, strict=True)], timeout=120)
    assert results == [[250, 250], [250, 250]]


@pytest.mark.slow  # imports torch in two fresh workers
def test_streaming_split_torch_batches_in_actor() -> None:
    @distcore.remote(num_cpus=0)
    def total(it):
        return sum(float(b["id"].sum()) for b in it.iter_torch_batches(batch_size=8))

    its = dd.range(64).streaming_split(2, equal=True)
    assert sum(distcore.get([total.remote(it) for it in its], timeout=120)) == float(sum(range(64)))


def test_streaming_split_bad_n() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        dd.range(3).streaming_split(0)


def test_streaming_split_feeds_workers_that_hold_every_cpu() -> None:
    # like num_workers=2 train workers on a 2-CPU cluster: the reads must still run
    workers = [Worker.options(num_cpus=1).remote() for _ in range(2)]
    its = dd.range(300, override_num_blocks=6).map_batches(lambda b: {"id": b["id"] + 1}).streaming_split(
        2, equal=True)
    results = distcore.get([w.consume.remote(it, 2) for w, it in zip(workers, its, strict=True)], timeout=120)
    assert results == [[150, 150], [150, 150]]
