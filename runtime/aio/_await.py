"""Await primitives: park a task until its jobs are done, and abandon them when it gives up.

Three ways to await, all with the same contract — the task yields to the scheduler
at least once (the wake-up always comes through the loop, even for a result that is
already there), and cancelling it abandons the work (:func:`abandon`):

* :func:`await_call`: one job on a ``runtime.Executor``, completed as a lean
  :class:`~runtime.aio._reader.Call` (no ``concurrent.futures.Future``).
* :func:`await_future`: one ``concurrent.futures.Future`` of any executor.
* :func:`await_batch`: many futures; one wake-up when the last is done, or early on
  the first failure.

The concurrency decisions, and the failures they prevent:

* The loop takes its inbox reader role (``runtime.aio._reader``) *before* the job is
  queued or the done-callback goes on. A runtime future hands its submitter's
  reservation of the role to the hub when a callback is added; entering after that
  could find the hub thread reading, and the result would reach the loop through a
  cross-thread wake-up instead of the loop's own read.
* A done-callback is *disarmed* when its task gives up (cancellation, an error), so an
  abandoned job that finishes later wakes nobody; and a wake-up after the loop ended
  (``RuntimeError`` from the bridge) is swallowed, since nobody is waiting any more.
* A batch is woken exactly once: the count and the armed flag change together under a
  lock, so two failures finishing at once on two threads cannot both fire it.
* A future cancelled behind the task's back (``shutdown(cancel_futures=True)``) raises
  :class:`runtime.ExecutorShutdown`, never ``concurrent.futures.CancelledError``, which
  anyio and asyncio would take for a cancellation of the awaiting task itself.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable, Iterable

    from .._executor import Executor
    from ._loop import Loop

__all__ = [
    "abandon",
    "await_batch",
    "await_call",
    "await_future",
    "chunk_failed",
    "failed",
    "outcome",
    "supports_stop",
]

log = logging.getLogger("runtime")


class _WakeOnDone:
    """Future done-callback that wakes the loop once; disarmed when the awaiter gave up."""

    __slots__ = ("armed", "loop", "waiter")

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.waiter = loop.waiter()
        self.armed = True

    def __call__(self, _future: cf.Future[Any]) -> None:
        if self.armed:
            # The loop may have ended while an abandoned job ran on; nobody is waiting then.
            with contextlib.suppress(RuntimeError):
                self.loop.wake(self.waiter)


def failed(future: cf.Future[Any]) -> bool:
    """Whether a done future was cancelled or raised."""
    return future.cancelled() or future.exception() is not None


def chunk_failed(future: cf.Future[Any]) -> bool:
    """Whether a done ``map_chunk`` future failed, or one of its items did."""
    return failed(future) or future.result()[1] is not None


class _WakeOnBatch:
    """Wakes the loop when every future is done, or early on the first failure."""

    __slots__ = ("_failed", "_lock", "_remaining", "armed", "loop", "waiter")

    def __init__(self, loop: Loop, count: int, failed: Callable[[cf.Future[Any]], bool]) -> None:
        self.loop = loop
        self.waiter = loop.waiter()
        self.armed = True
        self._failed = failed
        self._remaining = count
        self._lock = threading.Lock()

    def __call__(self, future: cf.Future[Any]) -> None:
        failed = self._failed(future)
        with self._lock:
            self._remaining -= 1
            fire = self.armed and (failed or self._remaining == 0)
            if fire:
                self.armed = False
        if fire:
            with contextlib.suppress(RuntimeError):
                self.loop.wake(self.waiter)


# ---------------------------------------------------------------------- cancellation
_stop_support: dict[type, bool] = {}


def supports_stop(cls: type[cf.Executor]) -> bool:
    """Whether ``cls.request_stop(future)`` asks the worker running that future to stop."""
    known = _stop_support.get(cls)
    if known is None:
        known = False
        request = getattr(cls, "request_stop", None)
        if callable(request):
            try:
                params = list(inspect.signature(request).parameters.values())[1:]
            except (TypeError, ValueError):
                params = []
            known = any(
                p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                for p in params
            )
        _stop_support[cls] = known
    return known


def abandon(executor: cf.Executor, futures: Iterable[cf.Future[Any]]) -> int:
    """Cancel what has not started; ask the workers of running jobs to stop. Returns the running count."""
    running = [f for f in futures if not f.cancel() and not f.done()]
    if running and supports_stop(type(executor)):
        request: Callable[[cf.Future[Any]], object] = executor.request_stop  # type: ignore[attr-defined]
        for future in running:
            try:
                request(future)
            except Exception:  # the stop flag is advisory; never mask the cancellation
                log.debug("runtime: could not request a stop for an abandoned job", exc_info=True)
    if running:
        log.debug("runtime: %d running job(s) abandoned after cancellation", len(running))
    return len(running)


def outcome[T](future: cf.Future[T]) -> T:
    """The result of a done future; ExecutorShutdown if it was cancelled behind our back."""
    if future.cancelled():
        # Cancelled behind our back (the executor was shut down with cancel_futures=True).
        # Never let concurrent.futures.CancelledError look like a cancellation of our task.
        from .._errors import ExecutorShutdown

        raise ExecutorShutdown(
            "the job was cancelled before it started: the executor is shutting down"
        )
    return future.result()


# ---------------------------------------------------------------------- awaiting
async def await_future[T](loop: Loop, executor: cf.Executor, future: cf.Future[T]) -> T:
    """Await one future of ``executor``; cancelling the task abandons the job."""
    # The loop takes the reader role before the done-callback goes on: a runtime future
    # hands its submitter's reservation to the hub when a callback is added.
    reader = loop.readers.get(executor)
    if reader is not None:
        reader.enter()
    try:
        waker = _WakeOnDone(loop)
        future.add_done_callback(waker)
        try:
            # The wake-up is always delivered through the loop's queue, so this yields
            # at least once even when the future is already done.
            await waker.waiter.wait()
        except BaseException:
            waker.armed = False
            abandon(executor, (future,))
            raise
    finally:
        if reader is not None:
            reader.exit()
    return outcome(future)


async def await_call(
    loop: Loop, executor: Executor, fn: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """Run one job on a runtime Executor and await it with a lean :class:`Call`.

    Same contract as submit + :func:`await_future`, at a fraction of the loop's CPU: no
    ``concurrent.futures.Future``, and this loop reads the completion itself.
    """
    from ._reader import start_call

    reader = loop.readers.get(executor)
    if reader is not None:
        reader.enter()  # before submitting: see await_future
    try:
        call = start_call(loop, executor, fn, args, kwargs)
        try:
            await call.waiter.wait()  # resolved through the loop: always yields once
        except BaseException:
            call.armed = False
            abandon(executor, (call,))  # type: ignore[arg-type]
            raise
    finally:
        if reader is not None:
            reader.exit()
    return call.outcome()


async def await_batch(
    loop: Loop,
    executor: cf.Executor,
    futures: list[cf.Future[Any]],
    failed: Callable[[cf.Future[Any]], bool],
) -> None:
    """Wait until every future is done, or the first one failed (then abandon the rest)."""
    reader = loop.readers.get(executor)
    if reader is not None:
        reader.enter()
    try:
        waker = _WakeOnBatch(loop, len(futures), failed)
        for future in futures:
            future.add_done_callback(waker)
        try:
            await waker.waiter.wait()
        except BaseException:
            waker.armed = False
            abandon(executor, futures)
            raise
    finally:
        if reader is not None:
            reader.exit()
    if not all(f.done() for f in futures):
        abandon(executor, futures)
