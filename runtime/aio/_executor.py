"""``AsyncExecutor`` and ``open_executor``: await calls on a ``concurrent.futures`` executor.

An :class:`AsyncExecutor` binds an executor to the event loop it was made in and
turns ``submit``/``map`` into awaits (``runtime.aio._await``). On a
``runtime.Executor`` it takes the lean paths: single jobs as a
:class:`~runtime.aio._reader.Call`, maps in chunks (``runtime._worker.map_chunk``).

Starting and stopping an executor blocks (workers boot, running jobs are waited
for), so both run in a worker thread (``anyio.to_thread``) and the loop keeps
serving meanwhile. The shutdown is shielded from cancellation: a task cancelled
while leaving :func:`open_executor` still waits for the workers to stop, so no
worker — nor an abandoned job still running on one — outlives the block.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._await import abandon, await_batch, await_call, await_future, chunk_failed, failed, outcome
from ._loop import current_loop

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator

__all__ = ["AsyncExecutor", "aclose_executor", "open_executor"]

T = TypeVar("T")
P = ParamSpec("P")


class AsyncExecutor:
    """Awaitable calls on a ``concurrent.futures`` executor, bound to the current event loop.

    Made by :func:`open_executor`; it can also wrap any executor you manage yourself
    (``AsyncExecutor(ThreadPoolExecutor())``) — create it inside the event loop that
    uses it. Callables and arguments travel to the workers pickled: by reference
    from modules and scripts, by value from a notebook or the REPL.
    """

    def __init__(self, executor: cf.Executor) -> None:
        self._executor = executor
        self._loop = current_loop()
        from .._executor import Executor

        # Only runtime's own workers know how to run a chunk (runtime._worker.map_chunk).
        self._chunked = isinstance(executor, Executor)
        # ... and only they take the lean single-job path (runtime.aio._reader.Call).
        self._runtime = executor if isinstance(executor, Executor) else None

    @property
    def executor(self) -> cf.Executor:
        """The underlying ``concurrent.futures`` executor."""
        return self._executor

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on a worker and return its result.

        Exceptions raised by ``fn`` are re-raised here with their original type. If the
        calling task is cancelled, a job that has not started is cancelled; a running
        job is abandoned and its worker asked to stop (see :func:`runtime.stop_requested`).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._runtime is not None:
            result: T = await await_call(self._loop, self._runtime, fn, args, kwargs)
            return result
        future = self._executor.submit(fn, *args, **kwargs)
        return await await_future(self._loop, self._executor, future)

    async def map(
        self, fn: Callable[..., T], /, *iterables: Iterable[Any], chunksize: int | None = None
    ) -> list[T]:
        """Run ``fn`` over the items (zipped like the builtin ``map``); results in order.

        All items are submitted at once and the loop is woken once, when the last one
        finished. On a ``runtime.Executor`` the items travel in chunks of ``chunksize``
        (default: sized from the item and worker counts), so a big batch costs a few
        jobs, not one per item. On the first failure the remaining jobs are cancelled
        (running ones are abandoned) and that exception is raised.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        items = list(zip(*iterables, strict=False))
        if not items:
            await anyio.lowlevel.checkpoint()
            return []
        size = self._chunksize(len(items), chunksize)
        futures: list[cf.Future[Any]] = []
        try:
            if size > 1:
                from .._worker import map_chunk

                for i in range(0, len(items), size):
                    futures.append(self._executor.submit(map_chunk, fn, items[i : i + size]))
            else:
                for args in items:
                    futures.append(self._executor.submit(fn, *args))
        except BaseException:
            abandon(self._executor, futures)
            raise
        is_failed = chunk_failed if size > 1 else failed
        await await_batch(self._loop, self._executor, futures, is_failed)
        # Woken early on a failure: raise the first failure (in item order) among the
        # finished jobs; the unfinished ones were abandoned and are never waited for.
        # Jobs that were cancelled (by that abandonment) only count if nothing else failed.
        failures = [f for f in futures if f.done() and is_failed(f)]
        if failures:
            first = next((f for f in failures if not f.cancelled()), failures[0])
            if size > 1 and not first.cancelled() and first.exception() is None:
                from .._wire import decode_exception

                raise decode_exception(first.result()[1])
            outcome(first)
        if size == 1:
            return [f.result() for f in futures]
        return [value for f in futures for value in f.result()[0]]

    def imap(
        self,
        fn: Callable[..., T],
        /,
        *iterables: Iterable[Any],
        ordered: bool = True,
        chunksize: int | None = None,
        buffersize: int | None = None,
    ) -> AsyncIterator[T]:
        """Run ``fn`` over the items and iterate the results: ``async for value in ex.imap(...)``.

        ``ordered=False`` yields each result as soon as its job finished (completion
        order), for uneven job lengths. ``buffersize=k`` keeps at most ``k`` jobs (chunks
        of ``chunksize`` items) submitted ahead of the results taken and reads the input
        only as fast, so it works on endless iterators; without it every item is
        submitted when iteration starts, chunked as in :meth:`map`. The first failure is
        raised when its turn comes. Leaving the loop early abandons the rest (jobs not
        started are cancelled); wrap the iterator in ``contextlib.aclosing`` to do that
        at once rather than when the generator is collected.
        """
        from .._mapping import check_buffersize
        from ._map import stream_results

        buffersize = check_buffersize(buffersize)
        zipped = zip(*iterables, strict=False)
        jobs: Iterable[Any]
        if buffersize is not None:
            size = self._chunksize(0, chunksize) if chunksize is not None else 1
            jobs = itertools.batched(zipped, size) if self._chunked else zipped
        else:
            jobs = self._eager_jobs(zipped, chunksize)
        return stream_results(
            self._loop,
            functools.partial(self._submit_job, fn),
            jobs,
            buffersize=buffersize,
            ordered=ordered,
            chunked=self._chunked,
            abandon=functools.partial(abandon, self._executor),
            outcome=outcome,
        )

    def _eager_jobs(
        self, zipped: Iterator[tuple[Any, ...]], chunksize: int | None
    ) -> Iterator[Any]:
        if chunksize is not None:
            self._chunksize(0, chunksize)  # validate now, not at the first iteration
        items = list(zipped)
        if not self._chunked:
            return iter(items)
        size = max(1, self._chunksize(len(items), chunksize))
        return (items[i : i + size] for i in range(0, len(items), size))

    def _submit_job(self, fn: Callable[..., Any], job: Any) -> cf.Future[Any]:
        if self._chunked:
            from .._worker import map_chunk

            return self._executor.submit(map_chunk, fn, job)
        return self._executor.submit(fn, *job)

    def _chunksize(self, count: int, chunksize: int | None) -> int:
        if chunksize is not None:
            from .._mapping import check_chunksize

            size = check_chunksize(chunksize)
            return size if self._chunked else 1
        if not self._chunked:
            return 1
        from .._mapping import auto_chunksize

        # Sized as Executor.map sizes its chunks (runtime._mapping).
        return auto_chunksize(count, int(getattr(self._executor, "workers", 1)))

    def __repr__(self) -> str:
        return f"<runtime.aio.AsyncExecutor {self._executor!r}>"


async def aclose_executor(executor: cf.Executor) -> None:
    """Shut ``executor`` down from async code without blocking the loop, even when cancelled."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(
            functools.partial(executor.shutdown, wait=True, cancel_futures=True)
        )


@contextlib.asynccontextmanager
async def open_executor(
    workers: int | float | None = None,
    backend: str = "auto",
    bootstrap: Any = None,
    **executor_options: Any,
) -> AsyncIterator[AsyncExecutor]:
    """Start a :class:`runtime.Executor` and yield an :class:`AsyncExecutor` on it.

    The arguments are those of :class:`runtime.Executor`. Workers boot in a worker
    thread, so the event loop keeps running meanwhile. On exit, jobs not started are
    cancelled and the block waits (without blocking the loop) for running ones —
    including abandoned ones, whose workers were asked to stop.
    """
    from .._executor import Executor

    executor = await anyio.to_thread.run_sync(
        functools.partial(Executor, workers, backend, bootstrap, **executor_options)
    )
    try:
        yield AsyncExecutor(executor)
    finally:
        await aclose_executor(executor)
