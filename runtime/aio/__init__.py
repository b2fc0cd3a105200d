"""The anyio front: await work on workers from asyncio and trio.

Three verbs:

* :func:`open_executor` opens a :class:`runtime.Executor` for the duration of an
  ``async with`` block and yields an :class:`AsyncExecutor` (``await ex.run(fn, ...)``,
  ``await ex.map(fn, items)``).
* :func:`run_sync` runs one call on a default executor kept per event loop, shaped
  like ``anyio.to_interpreter.run_sync``: a :class:`~anyio.CapacityLimiter` (by
  default twice the CPU count: one job running and one queued per worker), workers
  shut down after a while idle, cleaned up when the event loop ends (and at exit).
* :func:`run_pool` / :func:`open_pool` drive a supervised :class:`runtime.Pool` from
  async code: start it inside a task group, await its completion, stop it on
  cancellation.

How a result reaches the event loop: while a task awaits a ``runtime.Executor``
result, the loop itself reads that executor's completions (``runtime.aio._reader``:
``loop.add_reader`` on asyncio, ``trio.lowlevel.wait_readable`` on trio) and completes
the futures in its own thread, so no helper thread has to wake it. Any other
executor, or a runtime executor whose completions another thread is reading, completes
the ``concurrent.futures.Future`` elsewhere; a done-callback then hands one wake-up
to the loop through its thread-safe entry point (``loop.call_soon_threadsafe`` on
asyncio, ``TrioToken.run_sync_soon`` on trio). Nothing polls and no thread is spent
per call. Every ``await`` here yields to the scheduler at least once, even when the
result is already there.

Cancellation: cancelling the awaiting task cancels a job that has not started.
A job that is already running cannot be pre-empted; it is *abandoned* — its result
is discarded — and, where the executor supports it (``runtime.Executor``), its
worker is asked to stop so that a long-running callable polling
:func:`runtime.stop_requested` can return early.

The modules behind it: ``_loop`` (the loop bridge), ``_reader`` (the loop reads its
executor's completions), ``_await`` (await primitives and abandonment), ``_executor``
(:class:`AsyncExecutor`, :func:`open_executor`), ``_map`` (``AsyncExecutor.imap``),
``_default`` (:func:`run_sync`'s default executor) and ``_pool`` (:func:`run_pool`,
:func:`open_pool`). ``_reader`` and ``_map`` load on first use.
"""

from __future__ import annotations

from ._default import DEFAULT_IDLE_TIMEOUT as DEFAULT_IDLE_TIMEOUT
from ._default import DEFAULT_LIMITER_TOKENS as DEFAULT_LIMITER_TOKENS
from ._default import aclose_default_executor as aclose_default_executor
from ._default import configure_default_executor as configure_default_executor
from ._default import current_default_worker_limiter as current_default_worker_limiter
from ._default import run_sync as run_sync
from ._executor import AsyncExecutor as AsyncExecutor
from ._executor import open_executor as open_executor
from ._pool import AsyncPool as AsyncPool
from ._pool import open_pool as open_pool
from ._pool import run_pool as run_pool

__all__ = [
    "AsyncExecutor",
    "AsyncPool",
    "aclose_default_executor",
    "configure_default_executor",
    "current_default_worker_limiter",
    "open_executor",
    "open_pool",
    "run_pool",
    "run_sync",
]

# Tracebacks, reprs and documentation show the public names, as when this was one module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
