"""Executor recycling: max_tasks_per_worker, max_worker_memory, max_worker_age."""

from __future__ import annotations

import collections
import logging
import time

import pytest

import runtime
from runtime import _lifecycle
from runtime._errors import ConfigurationError
from runtime._usage import Meter, worker_memory
from tests.helpers import recycle_jobs as jobs

MB = 1 << 20


def _taking_work(ex: runtime.Executor) -> int:
    return ex.statistics().workers_alive


@pytest.mark.timeout(120)
def test_max_tasks_recycles_without_losing_or_repeating_a_job(backend, tmp_path, caplog):
    log_path = str(tmp_path / "runs")
    caplog.set_level(logging.INFO, logger="runtime")
    with runtime.Executor(2, backend=backend, max_tasks_per_worker=20) as ex:
        futures = [ex.submit(jobs.record, log_path, i) for i in range(300)]
        results = [f.result(timeout=60) for f in futures]
        recycled = dict(ex.statistics().recycled)
    assert [i for i, _ in results] == list(range(300))
    with open(log_path) as f:
        runs = collections.Counter(int(line) for line in f.read().split())
    assert runs == collections.Counter(range(300))  # each job ran exactly once
    per_worker = collections.Counter(worker for _, worker in results)
    assert max(per_worker.values()) <= 20
    assert len(per_worker) >= 15
    assert recycled["tasks"] >= 13
    assert "recycling" in caplog.text


@pytest.mark.timeout(120)
def test_map_chunks_count_as_jobs_and_the_executor_stays_at_size(backend):
    with runtime.Executor(2, backend=backend, max_tasks_per_worker=3) as ex:
        values = list(ex.map(abs, range(-200, 0), chunksize=5))  # 40 chunks = 40 jobs
        assert values == [abs(i) for i in range(-200, 0)]
        assert ex.statistics().recycled.get("tasks", 0) >= 10
        # After the stream, recycling left the executor at its size: 2 workers take work.
        end = time.monotonic() + 20
        while _taking_work(ex) < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert _taking_work(ex) == 2
        assert ex.submit(jobs.worker_id).result(timeout=20) > 0


@pytest.mark.timeout(120)
def test_max_worker_age_recycles(backend):
    with runtime.Executor(1, backend=backend, max_worker_age=0.6) as ex:
        seen = set()
        end = time.monotonic() + 30
        while (
            len(seen) < 3 or ex.statistics().recycled.get("age", 0) < 2
        ) and time.monotonic() < end:
            seen.add(ex.submit(jobs.worker_id).result(timeout=20))
            time.sleep(0.02)
        assert len(seen) >= 3
        assert ex.statistics().recycled.get("age", 0) >= 2


@pytest.mark.timeout(120)
def test_memory_measure_rises_with_what_jobs_keep(backend):
    # Thread workers count what their context holds; the others their own heap or RSS,
    # so a module global counts there too.
    keep = jobs.keep_in_context if backend == "thread" else jobs.keep_in_module
    with runtime.Executor(1, backend=backend, bootstrap=jobs.boot) as ex:
        before = ex.submit(jobs.measure, backend).result(timeout=30)
        ex.submit(keep, 10).result(timeout=30)
        after = ex.submit(jobs.measure, backend).result(timeout=30)
        ex.submit(jobs.keep_in_context, 10).result(timeout=30)
        again = ex.submit(jobs.measure, backend).result(timeout=30)
    assert before > 0
    assert after - before >= 9 * MB, (before, after)
    assert again - after >= 9 * MB, (after, again)


def test_thread_measure_counts_only_what_the_context_reaches():
    context = {"mine": [b"x" * MB], "module": runtime}
    size = worker_memory("thread", context)
    assert MB <= size < 2 * MB  # the module (and all it reaches) is not counted
    assert worker_memory("thread", None) == 0


def test_meter_reports_once_and_throttles():
    meter = Meter("process", 1)  # any process is over one byte
    assert meter.check(None) is not None
    assert meter.check(None) is None  # reported once
    quiet = Meter("process", 1 << 60)
    assert quiet.check(None) is None
    assert quiet._next > 0  # the next measurement waits a multiple of this one's cost


@pytest.mark.timeout(120)
def test_executor_recycles_a_worker_over_its_memory_limit(backend, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    with runtime.Executor(1, backend=backend, bootstrap=jobs.boot) as probe:
        baseline = probe.submit(jobs.measure, backend).result(timeout=30)
    limit = baseline + 25 * MB
    with runtime.Executor(1, backend=backend, bootstrap=jobs.boot, max_worker_memory=limit) as ex:
        first = ex.submit(jobs.worker_id).result(timeout=30)
        # 40 MB kept: over the limit after the third. A successor that boots in a
        # millisecond (threads) may already take the fourth; it stays under the limit.
        kept_by = [ex.submit(jobs.keep_in_context, 10).result(timeout=30) for _ in range(4)]
        assert kept_by[:3] == [first] * 3
        end = time.monotonic() + 30
        latest = kept_by[-1]
        while latest == first and time.monotonic() < end:
            time.sleep(0.05)  # the measurement is throttled by its own cost
            latest = ex.submit(jobs.worker_id).result(timeout=30)
        assert latest != first
        assert ex.statistics().recycled.get("memory", 0) == 1
    assert "max_worker_memory" in caplog.text


def test_limits_are_validated_and_sizes_parsed():
    with pytest.raises(ConfigurationError):
        runtime.Executor(1, backend="thread", max_tasks_per_worker=0)
    with pytest.raises(ConfigurationError):
        runtime.Executor(1, backend="thread", max_worker_memory="lots")
    with pytest.raises(ConfigurationError):
        runtime.Executor(1, backend="thread", boot_timeout=-1)
    # What the Executor parses its keywords with.
    limits = _lifecycle.Limits(max_worker_memory="512M")
    assert limits.max_worker_memory == 512 * MB
    assert limits == _lifecycle.Limits(None, 512 * MB, None, 60.0)
    assert hash(limits) == hash(_lifecycle.Limits(None, 512 * MB, None, 60.0))
    with pytest.raises(AttributeError, match="Limits is immutable"):
        limits.boot_timeout = None  # type: ignore[misc]
    with pytest.raises(AttributeError, match="Limits is immutable"):
        del limits.boot_timeout  # type: ignore[misc]
    with runtime.Executor(1, backend="thread", max_worker_memory="512M") as ex:
        assert ex.submit(jobs.worker_id).result(timeout=20) > 0


def test_recycled_counter_is_exported_in_metrics():
    from runtime.ops._registry import REGISTRY

    name = "parallel_runtime_workers_recycled_total"

    def recycled() -> float:
        return float(REGISTRY.collect().get(name, {}).get(("tasks",), 0))  # type: ignore[arg-type]

    before = recycled()
    with runtime.Executor(1, backend="thread", max_tasks_per_worker=2) as ex:
        for _ in range(6):
            ex.submit(jobs.worker_id).result(timeout=20)
        assert recycled() - before >= 2
    assert recycled() - before >= 2  # folded into the totals once the executor is gone
