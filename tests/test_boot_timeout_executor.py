"""Executor boot timeout: a hung bootstrap breaks a new executor, a hung replacement is retried.

Hung bootstraps block on a FIFO (``tests.helpers.recycle_jobs``) that every test
releases at its end, so no worker outlives it (the autouse leak check).
"""

from __future__ import annotations

import logging
import time

import pytest

import runtime
from runtime.backends import live_workers
from tests.helpers import recycle_jobs as jobs


@pytest.fixture
def hang(tmp_path):
    path = str(tmp_path / "hang.fifo")
    jobs.make_hang(path)
    yield path
    jobs.release_hang(path)


@pytest.mark.timeout(60)
def test_a_first_worker_that_outlives_the_boot_timeout_breaks_the_executor(backend, hang):
    ex = runtime.Executor(1, backend=backend, bootstrap=jobs.hang_boot, boot_timeout=0.5)
    try:
        queued = ex.submit(abs, -1)
        with pytest.raises(runtime.BootstrapError) as info:
            ex.wait_ready(timeout=30)
        message = str(info.value)
        assert f"{backend} worker" in message
        assert "tests.helpers.recycle_jobs:hang_boot" in message
        assert "elapsed" in message
        assert "boot_timeout=0.5s" in message
        with pytest.raises(runtime.BootstrapError):
            queued.result(timeout=10)
        with pytest.raises(runtime.BootstrapError):
            ex.submit(abs, -1)
        if backend == "process":
            assert "killed" in message
        else:
            assert "abandoned" in message
            # Abandoned, not joined at shutdown (it may never end): no worker left un-abandoned.
            assert not [w for w in live_workers() if w.abandoned is None and w.backend == backend]
    finally:
        started = time.monotonic()
        ex.shutdown(wait=True)
        assert time.monotonic() - started < 20  # shutdown does not wait for the hung worker
        jobs.release_hang(hang)


@pytest.mark.timeout(90)
def test_a_successor_that_times_out_is_retried_while_the_worker_carries_on(backend, hang, caplog):
    caplog.set_level(logging.INFO, logger="runtime")
    jobs.release_hang(hang)  # the first worker boots normally
    with runtime.Executor(
        1, backend=backend, bootstrap=jobs.hang_boot, max_worker_age=1.0, boot_timeout=0.4
    ) as ex:
        first = ex.submit(jobs.worker_id).result(timeout=30)
        jobs.make_hang(hang)  # from now on bootstraps hang: the age successor times out
        end = time.monotonic() + 30
        while "did not finish its bootstrap" not in caplog.text and time.monotonic() < end:
            # The old worker keeps serving past its age: memory and age are soft limits.
            assert ex.submit(jobs.worker_id).result(timeout=20) == first
            time.sleep(0.02)
        assert "did not finish its bootstrap" in caplog.text
        assert ex.submit(jobs.worker_id).result(timeout=20) == first
        jobs.release_hang(hang)  # the next retry boots and takes over
        latest = first
        while latest == first and time.monotonic() < end:
            latest = ex.submit(jobs.worker_id).result(timeout=20)
            time.sleep(0.02)
        assert latest != first
        assert ex.statistics().recycled.get("age", 0) >= 1


@pytest.mark.timeout(60)
def test_no_boot_timeout_waits_as_long_as_it_takes(hang):
    with runtime.Executor(1, backend="thread", bootstrap=jobs.hang_boot, boot_timeout=None) as ex:
        future = ex.submit(abs, -3)
        time.sleep(0.3)
        assert not future.done()
        jobs.release_hang(hang)
        assert future.result(timeout=20) == 3
