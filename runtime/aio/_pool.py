"""``run_pool``, ``open_pool`` and ``AsyncPool``: drive a supervised ``runtime.Pool`` from async code.

A :class:`runtime.Pool`'s verbs block — ``start`` boots every worker, ``run`` waits for
the tasks, ``stop`` waits for them to return — so each runs in a worker thread
(``anyio.to_thread``) and the loop keeps serving meanwhile.

The concurrency decisions, and the failures they prevent:

* Waiting in ``Pool.run`` is only an event wait once the pool is started, so its thread
  may be abandoned when the awaiting task is cancelled (``abandon_on_cancel=True``):
  cancellation takes effect at once instead of after the pool finished.
* Stopping is shielded from cancellation and always follows an abandoned wait or a
  cancelled boot, so a cancelled task never leaves the pool's workers running (and the
  stop is what ends the abandoned ``run`` thread).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import TaskStatus

    from .._pool import Pool, PoolReport, PoolStatistics

__all__ = ["AsyncPool", "open_pool", "run_pool"]


async def run_pool(
    pool: Pool,
    *,
    stop_timeout: float | None = None,
    task_status: TaskStatus[Pool] = anyio.TASK_STATUS_IGNORED,
) -> PoolReport:
    """Run ``pool`` until its tasks finished; returns its :class:`~runtime.PoolReport`.

    Use it in a task group: ``pool = await tg.start(run_pool, pool)`` returns once
    every worker booted (a failing bootstrap raises there). Cancelling the task stops
    the pool — tasks see ``self.stopping`` and get ``stop_timeout`` seconds (default:
    the pool's own) to return — then re-raises the cancellation.
    """
    try:
        if pool.statistics().state == "new":
            await anyio.to_thread.run_sync(pool.start)
        task_status.started(pool)
        # Pool.run() only waits on an event here (the pool is started); its thread
        # may be abandoned on cancellation because stop() below ends that wait.
        return await anyio.to_thread.run_sync(pool.run, abandon_on_cancel=True)
    except BaseException:
        if pool.statistics().state != "new":
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(functools.partial(pool.stop, stop_timeout))
        raise


class AsyncPool:
    """Handle on a running pool, yielded by :func:`open_pool`."""

    def __init__(self, pool: Pool, stop_timeout: float | None) -> None:
        self.pool = pool
        self._stop_timeout = stop_timeout

    def statistics(self) -> PoolStatistics:
        """An immutable snapshot of the pool (see :meth:`runtime.Pool.statistics`)."""
        return self.pool.statistics()

    def resize(self, workers: int | float) -> None:
        """Change the number of workers (does not block)."""
        self.pool.resize(workers)

    async def wait(self) -> PoolReport:
        """Wait until every task returned (or the pool was stopped); returns the report.

        Cancelling the wait does not stop the pool (leaving :func:`open_pool` does).
        """
        return await anyio.to_thread.run_sync(self.pool.run, abandon_on_cancel=True)

    async def stop(self, stop_timeout: float | None = None) -> PoolReport:
        """Ask the tasks to finish, wait up to ``stop_timeout`` seconds, return the report."""
        grace = self._stop_timeout if stop_timeout is None else stop_timeout
        with anyio.CancelScope(shield=True):
            report = await anyio.to_thread.run_sync(functools.partial(self.pool.stop, grace))
        return report

    def __repr__(self) -> str:
        return f"<runtime.aio.AsyncPool {self.pool!r}>"


@contextlib.asynccontextmanager
async def open_pool(
    tasks: Any, *, stop_timeout: float | None = None, **pool_options: Any
) -> AsyncIterator[AsyncPool]:
    """Start a :class:`runtime.Pool` and yield an :class:`AsyncPool` while it runs.

    ``tasks`` and ``pool_options`` are those of :class:`runtime.Pool` (signal handling
    is left to the event loop). Entering waits until every worker booted (raising
    :class:`runtime.BootstrapError` if one cannot). Leaving the block — normally, by
    an exception or by cancellation — stops the pool like ``with pool:`` does; call
    ``await handle.wait()`` inside the block to wait for the tasks to finish instead.
    Exceptions from the block propagate unchanged (no exception group).
    """
    from .._pool import Pool

    pool_options.setdefault("handle_signals", False)
    pool = Pool(tasks, **pool_options)
    handle = AsyncPool(pool, stop_timeout)
    try:
        await anyio.to_thread.run_sync(pool.start)
    except BaseException:
        if pool.statistics().state not in ("new", "stopped"):
            await handle.stop()  # cancelled while booting: do not leave it running
        raise
    try:
        yield handle
    finally:
        await handle.stop()
