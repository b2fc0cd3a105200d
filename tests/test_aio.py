"""runtime.aio: the anyio front, on asyncio and trio, crossed with every worker backend."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import anyio
import pytest

import runtime
import runtime.aio
from runtime.aio import AsyncExecutor, open_executor, open_pool, run_pool
from tests import aio_helpers as h

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(60)

ANYIO_BACKENDS = ["asyncio", "trio"]


@pytest.fixture
async def ex(backend: str) -> AsyncIterator[AsyncExecutor]:
    async with open_executor(workers=2, backend=backend) as executor:
        yield executor


def make_fifo(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


def write_fifo(path: str, text: str = "go") -> None:
    # Opening a FIFO for writing blocks until the worker opened it for reading.
    with open(path, "w") as f:
        f.write(text)


def count_markers(directory: Path) -> int:
    return sum(name.startswith("stopped-") for name in os.listdir(directory))


def read_fifo(path: str) -> str:
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------------- run / map
@pytest.mark.anyio
async def test_run_returns_the_result(ex: AsyncExecutor, backend: str) -> None:
    assert await ex.run(h.add, 2, 3) == 5
    assert await ex.run(h.add, 2, 3, scale=10) == 50
    assert await ex.run(h.worker_backend) == backend


@pytest.mark.anyio
async def test_many_concurrent_runs(ex: AsyncExecutor) -> None:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await ex.run(h.square, i)

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert results == {i: i * i for i in range(200)}


@pytest.mark.anyio
async def test_map_returns_results_in_order(ex: AsyncExecutor) -> None:
    items = list(range(500))
    assert await ex.map(h.square, items) == [x * x for x in items]
    assert await ex.map(h.add, [1, 2], [10, 20, 30]) == [11, 22]
    assert await ex.map(h.square, []) == []
    assert await ex.map(h.fib, [15] * 4) == [610] * 4
    # Per-item jobs and explicit chunks give the same answer.
    assert await ex.map(h.square, items, chunksize=1) == [x * x for x in items]
    assert await ex.map(h.square, items, chunksize=7) == [x * x for x in items]
    with pytest.raises(runtime.ConfigurationError):
        await ex.map(h.square, items, chunksize=0)


# ---------------------------------------------------------------------- exceptions
@pytest.mark.anyio
async def test_exceptions_keep_their_type(ex: AsyncExecutor) -> None:
    with pytest.raises(ValueError, match="bad value 3"):
        await ex.run(h.fail, "value", 3)
    with pytest.raises(KeyError):
        await ex.run(h.fail, "key", 4)
    with pytest.raises(h.AioBoom) as info:
        await ex.run(h.fail, "boom", 42)
    assert info.value.code == 42
    # The executor is still fine afterwards.
    assert await ex.run(h.add, 1, 1) == 2


@pytest.mark.anyio
async def test_map_raises_the_failure(ex: AsyncExecutor) -> None:
    with pytest.raises(h.AioBoom) as info:
        await ex.map(h.fail_on, range(50), [17] * 50)
    assert info.value.code == 17
    with pytest.raises(h.AioBoom) as info:
        await ex.map(h.fail_on, range(50), [3] * 50, chunksize=1)
    assert info.value.code == 3
    assert await ex.map(h.fail_on, range(5), [99] * 5) == list(range(5))


@pytest.mark.anyio
async def test_unpicklable_call_raises_not_transferable(ex: AsyncExecutor) -> None:
    with pytest.raises(runtime.NotTransferable):
        await ex.run(h.add, 1, lambda: 2)


# ---------------------------------------------------------------------- checkpoints
@pytest.mark.anyio
async def test_run_checkpoints_before_submitting(ex: AsyncExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with anyio.CancelScope() as scope:
        scope.cancel()
        await ex.run(h.append, str(marker), "x")
    assert scope.cancelled_caught
    # A job submitted after it proves the worker is idle, so the cancelled one never ran.
    assert await ex.run(h.add, 0, 0) == 0
    assert not marker.exists()


@pytest.mark.anyio
async def test_run_yields_to_other_tasks(ex: AsyncExecutor) -> None:
    other_ran = anyio.Event()

    async def other() -> None:
        other_ran.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        # Even if the result came back at once, run() must let `other` in first.
        await ex.run(h.add, 1, 2)
        assert other_ran.is_set()


# ---------------------------------------------------------------------- cancellation
@pytest.mark.anyio
async def test_cancel_cancels_a_job_that_has_not_started(backend: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with open_executor(workers=1, backend=backend) as ex:
        # Fill the single worker (one batch running, one queued), so the next job waits.
        fifos = [make_fifo(tmp_path, f"hold{i}") for i in range(2)]
        held = [ex.executor.submit(h.hold, f) for f in fifos]
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ex.run, h.append, str(marker), "late")
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        for f in fifos:
            await anyio.to_thread.run_sync(write_fifo, f)
        assert [fut.result(timeout=20) for fut in held] == ["go", "go"]
        assert await ex.run(h.add, 1, 1) == 2
    assert not marker.exists()


@pytest.mark.anyio
async def test_cancel_abandons_a_running_job(backend: str, tmp_path: Path) -> None:
    started = make_fifo(tmp_path, "started")
    outcome = tmp_path / "outcome"
    async with open_executor(workers=2, backend=backend) as ex:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.run, h.announce_then_wait_for_stop, started, str(outcome), 3.0)
            assert await anyio.to_thread.run_sync(read_fifo, started) == "started"
            tg.cancel_scope.cancel()
        # The awaiting task is gone; the executor keeps serving on its other worker.
        assert await ex.run(h.add, 2, 2) == 4
    # Leaving open_executor waited for the abandoned job, which finished one way or the other.
    assert outcome.read_text() in ("stopped", "ran to the end")


@pytest.mark.anyio
async def test_cancel_asks_a_running_job_to_stop(backend: str, tmp_path: Path) -> None:
    if not runtime.aio._await.supports_stop(runtime.Executor):
        pytest.skip("runtime.Executor has no per-job request_stop(future) yet")
    started = make_fifo(tmp_path, "started")
    outcome = tmp_path / "outcome"
    async with open_executor(workers=1, backend=backend) as ex:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ex.run, h.announce_then_wait_for_stop, started, str(outcome), 30.0)
            await anyio.to_thread.run_sync(read_fifo, started)
            tg.cancel_scope.cancel()
        # The flag was for that job only: the next job on the same worker sees no stop.
        assert await ex.run(runtime.stop_requested) is False
    assert outcome.read_text() == "stopped"


@pytest.mark.anyio
async def test_map_cancellation_cancels_pending_items(backend: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    fifo = make_fifo(tmp_path, "hold")
    async with open_executor(workers=1, backend=backend) as ex:
        held = ex.executor.submit(h.hold, fifo)
        with anyio.move_on_after(0.2) as scope:
            await ex.map(h.append, [str(marker)] * 2000, ["x"] * 2000)
        assert scope.cancelled_caught
        await anyio.to_thread.run_sync(write_fifo, fifo)
        assert held.result(timeout=20) == "go"
    # At most the batch that was already handed to the worker ran; the rest was cancelled.
    assert len(marker.read_text() if marker.exists() else "") < 2000


# ---------------------------------------------------------------------- wrapping other executors
@pytest.mark.anyio
async def test_wraps_any_concurrent_futures_executor() -> None:
    with cf.ThreadPoolExecutor(2) as pool:
        ex = AsyncExecutor(pool)
        assert ex.executor is pool
        assert await ex.run(h.add, 1, 2, scale=3) == 9
        assert await ex.map(h.square, range(10)) == [x * x for x in range(10)]
        with pytest.raises(h.AioBoom):
            await ex.run(h.fail, "boom")


@pytest.mark.anyio
async def test_shutdown_behind_our_back_is_not_a_cancellation(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path, "hold")
    with cf.ThreadPoolExecutor(1) as pool:
        ex = AsyncExecutor(pool)
        pool.submit(h.hold, fifo)
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                with pytest.raises(runtime.ExecutorShutdown):
                    await ex.run(h.add, 1, 1)

            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            pool.shutdown(wait=False, cancel_futures=True)
        await anyio.to_thread.run_sync(write_fifo, fifo)


# ---------------------------------------------------------------------- run_sync
@pytest.mark.anyio
async def test_run_sync_uses_a_default_executor_per_loop(backend: str) -> None:
    runtime.aio.configure_default_executor(workers=2, backend=backend)
    try:
        assert await runtime.aio.run_sync(h.add, 20, 22) == 42
        assert await runtime.aio.run_sync(h.worker_backend) == backend
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(functools.partial(runtime.aio.run_sync, h.square, i, limiter=limiter))
        with pytest.raises(ValueError, match="bad value 5"):
            await runtime.aio.run_sync(h.fail, "value", 5)
        limiter = runtime.aio.current_default_worker_limiter()
        assert limiter.total_tokens == max(
            runtime.aio.DEFAULT_LIMITER_TOKENS, 2 * runtime.capabilities().cpu_count
        )
        assert limiter.borrowed_tokens == 0
    finally:
        await runtime.aio.aclose_default_executor()
    # It starts again on demand after being closed.
    assert await runtime.aio.run_sync(h.add, 1, 1) == 2
    await runtime.aio.aclose_default_executor()


@pytest.mark.anyio
async def test_run_sync_prunes_idle_workers(backend: str) -> None:
    from runtime.backends import live_workers

    runtime.aio.configure_default_executor(workers=1, backend=backend, idle_timeout=0.05)
    assert await runtime.aio.run_sync(h.square, 3) == 9
    with anyio.fail_after(20):
        while live_workers():  # noqa: ASYNC110 - no event to wait on: the pruning is internal
            await anyio.sleep(0.02)
    assert await runtime.aio.run_sync(h.square, 4) == 16  # restarted on demand
    await runtime.aio.aclose_default_executor()


@pytest.mark.parametrize("loop_backend", ANYIO_BACKENDS)
def test_default_executor_is_closed_when_the_loop_ends(loop_backend: str) -> None:
    async def main() -> int:
        runtime.aio.configure_default_executor(workers=1, backend="thread")
        return await runtime.aio.run_sync(h.add, 2, 2)

    assert anyio.run(main, backend=loop_backend) == 4
    from runtime.backends import live_workers

    # anyio.run returned: the loop ended and took the workers with it (the autouse
    # fixture also checks that no runtime-* thread is left).
    assert not live_workers()


@pytest.mark.anyio
async def test_run_sync_cancel_before_start_releases_the_limiter() -> None:
    runtime.aio.configure_default_executor(workers=1, backend="thread")
    limiter = anyio.CapacityLimiter(1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await runtime.aio.run_sync(h.add, 1, 1, limiter=limiter)
    assert scope.cancelled_caught
    assert limiter.borrowed_tokens == 0
    assert await runtime.aio.run_sync(h.add, 1, 1, limiter=limiter) == 2
    await runtime.aio.aclose_default_executor()


def test_configure_rejects_bad_idle_timeout() -> None:
    async def main() -> None:
        with pytest.raises(runtime.ConfigurationError):
            runtime.aio.configure_default_executor(idle_timeout=0)

    anyio.run(main)


# ---------------------------------------------------------------------- Pool control
@pytest.mark.anyio
async def test_run_pool_awaits_completion(backend: str) -> None:
    pool = runtime.Pool(h.QuickTask, workers=2, backend=backend, handle_signals=False)
    report = await run_pool(pool)
    assert report.completed == 2
    assert not report.stopped
    assert pool.statistics().state == "stopped"


@pytest.mark.anyio
async def test_run_pool_in_a_task_group_stops_on_cancellation(backend: str, tmp_path: Path) -> None:
    pool = runtime.Pool(
        h.UntilStopped(str(tmp_path)), workers=2, backend=backend, handle_signals=False
    )
    async with anyio.create_task_group() as tg:
        started = await tg.start(run_pool, pool)
        assert started is pool
        assert pool.statistics().running == 2
        tg.cancel_scope.cancel()
    stats = pool.statistics()
    assert stats.state == "stopped"
    assert count_markers(tmp_path) == 2


@pytest.mark.anyio
async def test_open_pool_stops_on_exit(backend: str, tmp_path: Path) -> None:
    async with open_pool(
        h.UntilStopped(str(tmp_path)), workers=2, backend=backend, stop_timeout=20
    ) as handle:
        assert handle.statistics().running == 2
    report = await handle.wait()
    assert report.stopped
    assert report.unfinished == 0
    assert count_markers(tmp_path) == 2


@pytest.mark.anyio
async def test_open_pool_wait_for_the_tasks(backend: str) -> None:
    async with open_pool(h.QuickTask, workers=2, backend=backend) as handle:
        report = await handle.wait()
    assert report.completed == 2
    assert not report.stopped


@pytest.mark.anyio
async def test_open_pool_stops_when_the_block_is_cancelled(backend: str, tmp_path: Path) -> None:
    with anyio.CancelScope() as scope:
        async with open_pool(h.UntilStopped(str(tmp_path)), workers=1, backend=backend) as handle:
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert handle.statistics().state == "stopped"
    assert count_markers(tmp_path) == 1


@pytest.mark.anyio
async def test_open_pool_raises_bootstrap_errors(backend: str) -> None:
    with pytest.raises(runtime.BootstrapError, match="AioBoom"):
        async with open_pool(h.QuickTask, workers=1, backend=backend, bootstrap=h.boot_fails):
            pytest.fail("the block must not run when the bootstrap failed")


# ---------------------------------------------------------------------- imports
def test_import_runtime_does_not_import_anyio() -> None:
    code = textwrap.dedent(
        """
        import sys
        import runtime
        runtime.capabilities()
        assert "anyio" not in sys.modules, "import runtime imported anyio"
        assert "trio" not in sys.modules
        import runtime.aio
        assert "anyio" in sys.modules
        assert runtime.open_executor is runtime.aio.open_executor
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_public_names() -> None:
    assert set(runtime.aio.__all__) <= set(dir(runtime.aio))
    for name in runtime.aio.__all__:
        assert not name.startswith("_")
    assert math.isfinite(runtime.aio.DEFAULT_IDLE_TIMEOUT)
