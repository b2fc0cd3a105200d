"""runtime.Executor, mirroring CPython's test_concurrent_futures, on every backend."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading

import pytest

import runtime
from runtime._wire import RemoteTraceback
from tests.helpers import tasks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ex(backend):
    with runtime.Executor(2, backend=backend) as executor:
        yield executor


def test_is_a_concurrent_futures_executor(ex):
    assert isinstance(ex, cf.Executor)
    future = ex.submit(tasks.add, 2, b=3)
    assert isinstance(future, cf.Future)
    assert future.result(timeout=20) == 5


def test_map_keeps_order_with_any_chunksize(ex):
    items = list(range(1000))
    assert list(ex.map(tasks.square, items, timeout=30)) == [x * x for x in items]
    assert list(ex.map(tasks.square, items, chunksize=64)) == [x * x for x in items]
    assert list(ex.map(tasks.add, [1, 2], [10, 20, 30])) == [11, 22]
    assert list(ex.map(tasks.square, [])) == []


def test_map_raises_at_the_failing_item(ex):
    it = ex.map(tasks.fail_if, range(10), [5] * 10, chunksize=3)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="bad item 5"):
        next(it)


def test_map_timeout(ex):
    with pytest.raises(TimeoutError):
        list(ex.map(tasks.sleep_then, [1.0, 1.0], timeout=0.05))


def test_bad_chunksize(ex):
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(tasks.square, [1], chunksize=0)


def test_exception_keeps_its_type_and_the_worker_traceback(ex):
    with pytest.raises(KeyError) as info:
        ex.submit(tasks.raise_key_error, "missing").result(timeout=20)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_key_error" in str(cause)


def test_exception_that_cannot_be_rebuilt(ex):
    with pytest.raises(runtime.TaskFailed, match="Unrebuildable") as info:
        ex.submit(tasks.raise_unrebuildable).result(timeout=20)
    assert "raise_unrebuildable" in (info.value.remote_traceback or "")


def test_unpicklable_argument_fails_only_that_call(ex):
    bad = ex.submit(tasks.add, threading.Lock())
    good = ex.submit(tasks.add, 1, 2)
    with pytest.raises(runtime.NotTransferable, match="add") as info:
        bad.result(timeout=20)
    assert isinstance(info.value, TypeError)
    assert good.result(timeout=20) == 3


def test_unpicklable_result(ex):
    with pytest.raises(runtime.NotTransferable, match="lock"):
        ex.submit(tasks.return_unpicklable).result(timeout=20)
    assert ex.submit(tasks.square, 4).result(timeout=20) == 16


def test_lambda_is_refused_clearly(ex):
    with pytest.raises(runtime.NotTransferable):
        ex.submit(lambda: 1).result(timeout=20)


def test_cancel_pending_work(backend):
    with runtime.Executor(1, backend=backend) as ex:
        blockers = [ex.submit(tasks.sleep_then, 0.3) for _ in range(3)]
        queued = [ex.submit(tasks.square, i) for i in range(20)]
        cancelled = [f.cancel() for f in queued]
        assert all(cancelled)
        for f in blockers:
            f.result(timeout=20)
        assert all(f.cancelled() for f in queued)


def test_shutdown_waits_for_work(backend):
    ex = runtime.Executor(2, backend=backend)
    futures = [ex.submit(tasks.sleep_then, 0.05, i) for i in range(6)]
    ex.shutdown(wait=True)
    assert [f.result() for f in futures] == list(range(6))
    with pytest.raises(runtime.ExecutorShutdown) as info:
        ex.submit(tasks.square, 2)
    assert isinstance(info.value, RuntimeError)


def test_shutdown_cancel_futures(backend):
    ex = runtime.Executor(1, backend=backend)
    ex.wait_ready(timeout=20)  # so that the first job goes straight to the worker
    running = ex.submit(tasks.sleep_then, 0.3, "done")
    queued = [ex.submit(tasks.square, i) for i in range(50)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "done"
    assert sum(f.cancelled() for f in queued) >= 45  # the few already dispatched still ran
    assert all(f.done() for f in queued)


def test_shutdown_without_waiting(backend):
    ex = runtime.Executor(1, backend=backend)
    future = ex.submit(tasks.sleep_then, 0.1, 7)
    ex.shutdown(wait=False)
    assert future.result(timeout=20) == 7


def test_bootstrap_context_reaches_calls(backend):
    with runtime.Executor(2, backend=backend, bootstrap=tasks.boot) as ex:
        results = [ex.submit(tasks.whoami).result(timeout=20) for _ in range(4)]
    for _pid, ctx in results:
        assert isinstance(ctx, dict)
        assert "booted_in" in ctx
    if backend == "process":
        assert all(pid != os.getpid() for pid, _ in results)


def test_cooperative_stop_flag(backend):
    with runtime.Executor(1, backend=backend) as ex:
        ex.wait_ready(timeout=20)  # the job runs at once, so the stop request finds it
        waiting = ex.submit(tasks.wait_for_stop, 30)
        ex.request_stop()
        assert waiting.result(timeout=20) is True


def test_a_worker_killed_mid_task_fails_only_its_futures(tmp_path):
    with runtime.Executor(2, backend="process") as ex:
        dying = ex.submit(tasks.die_hard)
        with pytest.raises(runtime.WorkerCrashed, match="exited with code 3"):
            dying.result(timeout=20)
        # The executor is not broken: the worker was replaced and work goes on.
        assert list(ex.map(tasks.square, range(50))) == [x * x for x in range(50)]
        assert ex.submit(tasks.square, 9).result(timeout=20) == 81


def test_a_burst_spreads_over_the_workers(backend):
    with runtime.Executor(2, backend=backend) as ex:
        ex.wait_ready(timeout=20)
        futures = [ex.submit(tasks.slow_worker_id, 0.2) for _ in range(2)]
        owners = {f.result(timeout=20) for f in futures}
    assert len(owners) == 2
    assert -1 not in owners


def test_stop_one_running_job_and_not_the_next(backend):
    with runtime.Executor(1, backend=backend) as ex:
        ex.wait_ready(timeout=20)
        waiting = ex.submit(tasks.wait_for_stop, 30)
        queued = ex.submit(tasks.wait_for_stop, 0.2)
        pending = ex.submit(tasks.wait_for_stop, 0.2)  # the worker already holds two batches
        assert not pending.running()
        assert ex.request_stop(pending) is False  # not dispatched: cancel() is the tool for it
        assert ex.request_stop(waiting) is True
        assert waiting.result(timeout=20) is True
        assert queued.result(timeout=20) is False  # only the targeted job saw the stop
        assert pending.result(timeout=20) is False


def test_executor_inside_a_worker(backend):
    with runtime.Executor(1, backend=backend) as ex:
        outcome = ex.submit(tasks.nested_executor).result(timeout=30)
    if backend == "subinterpreter":
        assert outcome.startswith("BackendUnavailable:")
        assert "main interpreter" in outcome
    else:
        assert outcome == "ok:9"


def test_replacement_worker_is_bootstrapped_too():
    with runtime.Executor(1, backend="process", bootstrap=tasks.boot) as ex:
        first_pid, first_ctx = ex.submit(tasks.whoami).result(timeout=20)
        with pytest.raises(runtime.WorkerCrashed):
            ex.submit(tasks.die_hard).result(timeout=20)
        pid, ctx = ex.submit(tasks.whoami).result(timeout=20)
    assert pid != first_pid
    assert ctx["booted_in"] != first_ctx["booted_in"]  # a new worker, bootstrapped afresh
