"""Map results as an async iterator for :mod:`runtime.aio` (``AsyncExecutor.imap``).

Same submission rules as ``Executor.map`` (``runtime._mapping``): eager, or lazy
with ``buffersize`` chunks ahead of the consumer; results in order, or as they
finish with ``ordered=False``.

How a completion reaches the event loop: every future gets one done-callback
that, on the executor's completion thread, records the future under a lock and,
only if the consumer is parked waiting, hands that one waiter to the loop bridge
(``Loop.wake``, ``runtime.aio._loop``). The consumer checks its condition under the
same lock before parking, so no completion is lost between the check and the wait,
and a consumer that is busy elsewhere costs no wake-ups at all. Nothing polls; no
thread per call.

Leaving the iteration (``break`` then ``aclose()``, an exception, cancellation of
the consuming task, garbage collection of the generator) abandons what is left:
chunks not started are cancelled, running ones are asked to stop where the
executor supports it (``runtime.aio._await.abandon``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from .._wire import decode_exception

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

    from ._loop import Loop

__all__ = ["stream_results"]


class _Arrivals:
    """Done-callback for every future of one stream; wakes the parked consumer."""

    def __init__(self, loop: Loop, record: bool) -> None:
        self._loop = loop
        self._record = record
        self._lock = threading.Lock()
        self.done: collections.deque[cf.Future[Any]] = collections.deque()
        self._waiter: Any = None

    def __call__(self, future: cf.Future[Any]) -> None:
        with self._lock:
            if self._record:
                self.done.append(future)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            # The loop may have ended while an abandoned job ran on; nobody is waiting then.
            with contextlib.suppress(RuntimeError):
                self._loop.wake(waiter)

    async def wait(self, ready: Callable[[], bool]) -> None:
        """Return once ``ready()`` holds, yielding to the scheduler at least once."""
        yielded = False
        while True:
            with self._lock:
                if ready():
                    break
                waiter = self._waiter = self._loop.waiter()
            await waiter.wait()
            yielded = True
        if not yielded:
            await anyio.lowlevel.checkpoint()


async def stream_results(
    loop: Loop,
    submit: Callable[[Any], cf.Future[Any]],
    jobs: Iterable[Any],
    *,
    buffersize: int | None,
    ordered: bool,
    chunked: bool,
    abandon: Callable[[Iterable[cf.Future[Any]]], object],
    outcome: Callable[[cf.Future[Any]], Any],
) -> AsyncIterator[Any]:
    """Submit ``jobs`` (chunks when ``chunked``, else argument tuples) and yield their values."""
    source: Iterator[Any] = iter(jobs)
    arrivals = _Arrivals(loop, record=not ordered)
    pending: dict[cf.Future[Any], None] = {}

    def submit_next() -> bool:
        job = next(source, None)
        if job is None:
            return False
        future = submit(job)
        pending[future] = None
        future.add_done_callback(arrivals)
        return True

    try:
        first = source if buffersize is None else itertools.islice(source, buffersize)
        for job in first:
            future = submit(job)
            pending[future] = None
            future.add_done_callback(arrivals)
        while pending:
            if ordered:
                head = next(iter(pending))
                await arrivals.wait(head.done)
                del pending[head]
                future = head
            else:
                await arrivals.wait(lambda: bool(arrivals.done))
                future = arrivals.done.popleft()
                del pending[future]
            if buffersize is not None:
                submit_next()
            if chunked:
                values, error = outcome(future)
                del future
                for value in values:
                    yield value
                if error is not None:
                    raise decode_exception(error)
            else:
                value = outcome(future)
                del future
                yield value
    finally:
        abandon(pending)
