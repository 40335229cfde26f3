"""The streaming executor: limits stop reads early, ordering, progress bars, stats, DataContext."""

from __future__ import annotations

import io
import sys

import pyarrow.compute as pc
import pytest

import distcore.data as dd
from distcore.data._internal.logical import LogicalPlan
from distcore.data._internal.progress import bars_enabled

pytestmark = pytest.mark.usefixtures("shared_cluster")


def test_limit_stops_upstream_reads_early() -> None:
    ds = dd.range(100_000, override_num_blocks=50).map_batches(lambda b: b).limit(10)
    assert [r["id"] for r in ds.take_all()] == list(range(10))
    # the limit went into the read: far fewer than 50 read tasks ran
    text = ds.stats()
    tasks = int(text.split("Operator 0 ")[1].split(": ")[1].split(" tasks")[0])
    assert tasks < 50


def test_udf_limit_after_filter_reads_only_what_it_needs() -> None:
    ds = dd.range(10_000, override_num_blocks=40).filter(expr=pc.field("id") >= 5000).limit(3)
    assert [r["id"] for r in ds.take_all()] == [5000, 5001, 5002]


def test_output_order_is_input_order() -> None:
    import random
    import time

    def jitter(batch):
        time.sleep(random.random() * 0.02)
        return batch

    ids = [r["id"] for r in dd.range(60, override_num_blocks=12).map_batches(jitter).take_all()]
    assert ids == list(range(60))


def test_progress_bars_off_when_not_a_tty_and_on_when_asked(monkeypatch) -> None:
    ctx = dd.DataContext.get_current()
    assert ctx.enable_progress_bars
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not bars_enabled(ctx)
    dd.range(10).map_batches(lambda b: b).take_all()
    assert sys.stderr.getvalue() == ""
    ctx.progress_bars_in_non_tty = True
    assert bars_enabled(ctx)
    dd.range(100, override_num_blocks=4).map_batches(lambda b: b).filter(lambda r: True).take_all()
    text = sys.stderr.getvalue()
    assert "ReadRange->MapBatches(<lambda>)->Filter(<lambda>)" in text
    assert "100 row" in text and "4 blocks" in text
    sys.stderr.truncate(0)
    sys.stderr.seek(0)
    dd.range(100, override_num_blocks=4).map(lambda r: r).take_all()
    assert "100/100" in sys.stderr.getvalue()  # a row-preserving read knows its total
    ctx.enable_progress_bars = False
    assert not bars_enabled(ctx)


def test_stats_report_per_operator_numbers() -> None:
    ds = dd.range(1000, override_num_blocks=4).map_batches(lambda b: b).random_shuffle(seed=0)
    ds.take_all()
    text = ds.stats()
    assert "Operator 0 ReadRange->MapBatches(<lambda>)" in text and "Operator 1 RandomShuffle" in text
    for field in ("Wall time", "CPU time", "Output rows: 1000", "output bytes", "Peak memory held", "budget"):
        assert field in text
    ctx = dd.DataContext.get_current()
    ctx.verbose_stats_logs = True
    assert "Task wall min/median/max" in ds.stats()


def test_data_context_settings() -> None:
    ctx = dd.DataContext.get_current()
    assert dd.DataContext.get_current() is ctx
    ctx.memory_budget = 123
    assert ctx.effective_memory_budget() == 123
    ctx.memory_budget = None
    ctx.execution_options.resource_limits.object_store_memory = 456
    assert ctx.effective_memory_budget() == 456
    ctx.set_config("target_max_block_size", 1024)
    assert ctx.target_max_block_size == 1024
    with pytest.raises(AttributeError, match="no setting"):
        ctx.set_config("no_such_setting", 1)


def test_resource_limits_cap_cpus() -> None:
    ctx = dd.DataContext.get_current()
    ctx.execution_options.resource_limits.cpu = 1
    ds = dd.range(10).map_batches(lambda b: b, num_cpus=2)
    with pytest.raises(dd.InsufficientResourcesError, match="needs 2 CPU"):
        ds.take_all()


def test_dataset_is_reusable_and_lazy() -> None:
    ds = dd.range(10).map_batches(lambda b: b)
    assert isinstance(ds._plan, LogicalPlan)
    assert ds.count() == 10 and ds.count() == 10
    assert [r["id"] for r in ds.take_all()] == list(range(10))


def test_executor_shuts_down_when_consumer_stops_early() -> None:
    import time

    def slow(batch):
        time.sleep(0.1)
        return batch

    ds = dd.range(4000, override_num_blocks=40).map_batches(slow, batch_size=None)
    it = iter(ds.iter_batches(batch_size=10))
    first = next(it)
    assert first["id"].tolist() == list(range(10))
    it.close()
    time.sleep(0.5)
    done = ds._last_stats.ops[0].tasks_started
    time.sleep(1.0)
    assert ds._last_stats.ops[0].tasks_started == done < 40  # nothing more was launched
    assert dd.range(5).count() == 5


def test_blocks_over_target_max_block_size_are_split() -> None:
    ctx = dd.DataContext.get_current()
    ctx.target_max_block_size = 1000  # bytes
    mat = dd.range(1000, override_num_blocks=1).map_batches(lambda b: b, batch_size=None).materialize()
    assert mat.num_blocks() >= 8
    assert all(b.size <= 1000 for b in mat._bundle_list)
    assert [r["id"] for r in mat.take_all()] == list(range(1000))
