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
result, the loop itself reads that executor's completions (``runtime._loop_reader``:
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
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import inspect
import itertools
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from ._capabilities import capabilities
from ._errors import ConfigurationError

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Iterable,
        Iterator,
    )

    from anyio.abc import TaskStatus

    from ._executor import Executor
    from ._pool import Pool, PoolReport, PoolStatistics

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

log = logging.getLogger("runtime")

T = TypeVar("T")
P = ParamSpec("P")

#: Seconds the default executor of :func:`run_sync` may sit idle before its workers are shut down.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Tokens of :func:`current_default_worker_limiter` (at least twice the usable CPUs).
DEFAULT_LIMITER_TOKENS = 40


# ---------------------------------------------------------------------- loop bridge
class _Waiter(Protocol):
    """One wake-up: ``resolve()`` and ``wait()`` run in the loop thread only."""

    def resolve(self) -> None: ...

    def wait(self) -> Awaitable[object]: ...


class _AsyncioWaiter:
    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def resolve(self) -> None:
        if not self._future.done():  # the awaiting task may have been cancelled
            self._future.set_result(None)

    def wait(self) -> Awaitable[object]:
        return self._future


class _TrioWaiter:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()

    def resolve(self) -> None:
        self._event.set()

    def wait(self) -> Awaitable[object]:
        return self._event.wait()


class _Loop:
    """The calling event loop's thread-safe entry point and its lifetime hook.

    Wake-ups from other threads are coalesced: while one hand-off to the loop is
    pending, further completions only join its list, so a batch of results that
    completes together costs the loop one wake-up (one self-pipe write), not one each.
    """

    def __init__(self) -> None:
        self.library = _current_library()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: Any = None
        if self.library == "asyncio":
            self._loop = asyncio.get_running_loop()
            self._call_soon: Callable[[Callable[[], None]], object] = (
                self._loop.call_soon_threadsafe
            )
            self.time: Callable[[], float] = self._loop.time  # anyio.current_time()'s clock
        elif self.library == "trio":
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._call_soon = self._token.run_sync_soon
            self.time = trio.current_time
        else:  # pragma: no cover - anyio only ships these two
            raise RuntimeError(f"runtime.aio does not support the {self.library!r} event loop")
        self._lock = threading.Lock()
        self._ready: list[_Waiter] = []
        self._scheduled = False
        self._thread = threading.get_ident()
        from ._loop_reader import Readers, backend_checkpoint_if_cancelled

        self.readers = Readers(self.library, self._loop, self._token)
        # anyio.lowlevel.checkpoint_if_cancelled, minus looking up the backend on every call.
        self.checkpoint_if_cancelled = backend_checkpoint_if_cancelled()

    def waiter(self) -> _Waiter:
        if self._loop is not None:
            return _AsyncioWaiter(self._loop)
        return _TrioWaiter()

    def wake(self, waiter: _Waiter) -> None:
        """Resolve ``waiter`` in the loop thread soon; callable from any thread.

        Raises RuntimeError when the event loop has ended.
        """
        if self.readers.reading and threading.get_ident() == self._thread:
            # Completed by the loop's own reader, in a turn of its own: resolving directly
            # spares the loop a self-pipe write and an extra turn.
            waiter.resolve()
            return
        with self._lock:
            self._ready.append(waiter)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._call_soon(self._drain)
        except BaseException:
            with self._lock:
                self._scheduled = False
                self._ready.clear()
            raise

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for waiter in ready:
            waiter.resolve()

    def spawn_system_task(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``fn`` outside every user task group; it is cancelled when the loop ends."""
        if self._loop is not None:
            # Runner.close() (asyncio.run, anyio.run) cancels every task left, this one too.
            task = self._loop.create_task(fn())
            _system_tasks.add(task)
            task.add_done_callback(_system_tasks.discard)
        else:
            import trio

            trio.lowlevel.spawn_system_task(fn)


_system_tasks: set[asyncio.Task[None]] = set()
_loop_var: RunVar[_Loop] = RunVar("runtime_aio_loop")


def _current_library() -> str:
    try:
        import sniffio
    except ImportError:  # without sniffio anyio can only run on asyncio
        asyncio.get_running_loop()
        return "asyncio"
    return sniffio.current_async_library()


def _current_loop() -> _Loop:
    try:
        return _loop_var.get()
    except LookupError:
        loop = _Loop()
        _loop_var.set(loop)
        return loop


class _WakeOnDone:
    """Future done-callback that wakes the loop once; disarmed when the awaiter gave up."""

    __slots__ = ("armed", "loop", "waiter")

    def __init__(self, loop: _Loop) -> None:
        self.loop = loop
        self.waiter = loop.waiter()
        self.armed = True

    def __call__(self, _future: cf.Future[Any]) -> None:
        if self.armed:
            # The loop may have ended while an abandoned job ran on; nobody is waiting then.
            with contextlib.suppress(RuntimeError):
                self.loop.wake(self.waiter)


def _failed(future: cf.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


def _chunk_failed(future: cf.Future[Any]) -> bool:
    return _failed(future) or future.result()[1] is not None


class _WakeOnBatch:
    """Wakes the loop when every future is done, or early on the first failure."""

    __slots__ = ("_failed", "_lock", "_remaining", "armed", "loop", "waiter")

    def __init__(self, loop: _Loop, count: int, failed: Callable[[cf.Future[Any]], bool]) -> None:
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


def _supports_stop(cls: type[cf.Executor]) -> bool:
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


def _abandon(executor: cf.Executor, futures: Iterable[cf.Future[Any]]) -> int:
    """Cancel what has not started; ask the workers of running jobs to stop. Returns the running count."""
    running = [f for f in futures if not f.cancel() and not f.done()]
    if running and _supports_stop(type(executor)):
        request: Callable[[cf.Future[Any]], object] = executor.request_stop  # type: ignore[attr-defined]
        for future in running:
            try:
                request(future)
            except Exception:  # the stop flag is advisory; never mask the cancellation
                log.debug("runtime: could not request a stop for an abandoned job", exc_info=True)
    if running:
        log.debug("runtime: %d running job(s) abandoned after cancellation", len(running))
    return len(running)


def _outcome[T](future: cf.Future[T]) -> T:
    if future.cancelled():
        # Cancelled behind our back (the executor was shut down with cancel_futures=True).
        # Never let concurrent.futures.CancelledError look like a cancellation of our task.
        from ._errors import ExecutorShutdown

        raise ExecutorShutdown(
            "the job was cancelled before it started: the executor is shutting down"
        )
    return future.result()


async def _await_future[T](loop: _Loop, executor: cf.Executor, future: cf.Future[T]) -> T:
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
            _abandon(executor, (future,))
            raise
    finally:
        if reader is not None:
            reader.exit()
    return _outcome(future)


async def _await_call(
    loop: _Loop, executor: Executor, fn: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    """Run one job on a runtime Executor and await it with a lean :class:`Call`.

    Same contract as submit + :func:`_await_future`, at a fraction of the loop's CPU: no
    ``concurrent.futures.Future``, and this loop reads the completion itself.
    """
    from ._loop_reader import Call

    reader = loop.readers.get(executor)
    if reader is not None:
        reader.enter()  # before submitting: see _await_future
    try:
        call = Call(loop)
        executor._submit(call, fn, args, kwargs)
        try:
            await call.waiter.wait()  # resolved through the loop: always yields once
        except BaseException:
            call.armed = False
            _abandon(executor, (call,))  # type: ignore[arg-type]
            raise
    finally:
        if reader is not None:
            reader.exit()
    return call.outcome()


async def _await_batch(
    loop: _Loop,
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
            _abandon(executor, futures)
            raise
    finally:
        if reader is not None:
            reader.exit()
    if not all(f.done() for f in futures):
        _abandon(executor, futures)


# ---------------------------------------------------------------------- AsyncExecutor
class AsyncExecutor:
    """Awaitable calls on a ``concurrent.futures`` executor, bound to the current event loop.

    Made by :func:`open_executor`; it can also wrap any executor you manage yourself
    (``AsyncExecutor(ThreadPoolExecutor())``) — create it inside the event loop that
    uses it. Callables and arguments travel to the workers pickled: by reference
    from modules and scripts, by value from a notebook or the REPL.
    """

    def __init__(self, executor: cf.Executor) -> None:
        self._executor = executor
        self._loop = _current_loop()
        from ._executor import Executor

        # Only runtime's own workers know how to run a chunk (runtime._worker.map_chunk).
        self._chunked = isinstance(executor, Executor)
        # ... and only they take the lean single-job path (runtime._loop_reader.Call).
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
            result: T = await _await_call(self._loop, self._runtime, fn, args, kwargs)
            return result
        future = self._executor.submit(fn, *args, **kwargs)
        return await _await_future(self._loop, self._executor, future)

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
                from ._worker import map_chunk

                for i in range(0, len(items), size):
                    futures.append(self._executor.submit(map_chunk, fn, items[i : i + size]))
            else:
                for args in items:
                    futures.append(self._executor.submit(fn, *args))
        except BaseException:
            _abandon(self._executor, futures)
            raise
        failed = _chunk_failed if size > 1 else _failed
        await _await_batch(self._loop, self._executor, futures, failed)
        # Woken early on a failure: raise the first failure (in item order) among the
        # finished jobs; the unfinished ones were abandoned and are never waited for.
        # Jobs that were cancelled (by that abandonment) only count if nothing else failed.
        failures = [f for f in futures if f.done() and failed(f)]
        if failures:
            first = next((f for f in failures if not f.cancelled()), failures[0])
            if size > 1 and not first.cancelled() and first.exception() is None:
                from ._wire import decode_exception

                raise decode_exception(first.result()[1])
            _outcome(first)
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
        from ._aio_map import stream_results
        from ._mapping import check_buffersize

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
            abandon=functools.partial(_abandon, self._executor),
            outcome=_outcome,
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
            from ._worker import map_chunk

            return self._executor.submit(map_chunk, fn, job)
        return self._executor.submit(fn, *job)

    def _chunksize(self, count: int, chunksize: int | None) -> int:
        if chunksize is not None:
            if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
                raise ConfigurationError(f"chunksize must be an int >= 1, got {chunksize!r}")
            return chunksize if self._chunked else 1
        if not self._chunked:
            return 1
        # About 8 chunks per worker keeps every worker busy while amortising the per-job cost.
        workers = max(1, int(getattr(self._executor, "workers", 1)))
        return max(1, min(256, count // (8 * workers)))

    def __repr__(self) -> str:
        return f"<runtime.aio.AsyncExecutor {self._executor!r}>"


async def _shutdown(executor: cf.Executor) -> None:
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
    from ._executor import Executor

    executor = await anyio.to_thread.run_sync(
        functools.partial(Executor, workers, backend, bootstrap, **executor_options)
    )
    try:
        yield AsyncExecutor(executor)
    finally:
        await _shutdown(executor)


# ---------------------------------------------------------------------- run_sync
class _DefaultExecutor:
    """The per-event-loop executor behind :func:`run_sync`.

    Created on first use; shut down after ``idle_timeout`` seconds without a job in
    flight (the next call starts it again), when the event loop ends, or at exit.
    A system task owns it: it sleeps until the executor first goes idle, then wakes
    once per idle period while the executor lives (never once per call), so nothing
    polls and a call costs the loop no extra turn.
    """

    def __init__(self, loop: _Loop) -> None:
        self.loop = loop
        self.backend = "auto"
        self.bootstrap: Any = None
        self.workers: int | float | None = None
        self.idle_timeout = DEFAULT_IDLE_TIMEOUT
        self.executor: Executor | None = None
        self.inflight = 0
        self.idle_since = 0.0
        self._went_idle = anyio.Event()
        self._parked = False  # the guard waits for _went_idle (no executor to watch)
        self._lock = anyio.Lock()
        self._guarded = False
        self._limiter: anyio.CapacityLimiter | None = None
        _all_defaults.add(self)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """This loop's default limiter, looked up once (it is fixed for the loop's life)."""
        if self._limiter is None:
            self._limiter = current_default_worker_limiter()
        return self._limiter

    async def acquire(self) -> Executor:
        self.inflight += 1
        try:
            executor = self.executor
            if executor is None:
                async with self._lock:
                    executor = self.executor
                    if executor is None:
                        executor = await self._start()
            return executor
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle_since = self.loop.time()
            if self._parked:
                self._went_idle.set()

    async def _start(self) -> Executor:
        from ._executor import Executor

        workers = self.workers if self.workers is not None else capabilities().cpu_count
        executor = await anyio.to_thread.run_sync(
            functools.partial(Executor, workers, self.backend, self.bootstrap)
        )
        self.executor = executor
        if not self._guarded:
            self._guarded = True
            self.loop.spawn_system_task(self._guard)
        return executor

    async def _guard(self) -> None:
        try:
            while True:
                self._parked = True
                await self._went_idle.wait()
                self._parked = False
                self._went_idle = anyio.Event()
                await self._prune_when_idle()
        except anyio.get_cancelled_exc_class():
            # The event loop is ending (system tasks are cancelled last): stop the workers now.
            self.close()
            raise
        except Exception:
            # A system task must not crash the event loop; the atexit hook still cleans up.
            log.exception("runtime: the default executor's idle pruning failed")

    async def _prune_when_idle(self) -> None:
        while self.executor is not None:
            if self.inflight:  # busy: look again one idle period later
                await anyio.sleep(self.idle_timeout)
                continue
            remaining = self.idle_since + self.idle_timeout - anyio.current_time()
            if remaining > 0:
                await anyio.sleep(remaining)
                continue
            executor, self.executor = self.executor, None
            log.debug(
                "runtime: the default executor was idle for %.0fs; shutting it down",
                self.idle_timeout,
            )
            await _shutdown(executor)

    def close(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            await _shutdown(executor)


_all_defaults: weakref.WeakSet[_DefaultExecutor] = weakref.WeakSet()
_default_var: RunVar[_DefaultExecutor] = RunVar("runtime_aio_default_executor")
_default_limiter_var: RunVar[anyio.CapacityLimiter] = RunVar("runtime_aio_default_limiter")


@atexit.register
def _close_all_defaults() -> None:
    for default in list(_all_defaults):
        try:
            default.close()
        except Exception:  # pragma: no cover - best effort at exit
            log.exception("runtime: could not shut down a default executor at exit")


_last_default: _DefaultExecutor | None = None  # the last one looked up, for the fast path below
_running_loop = asyncio._get_running_loop  # None outside asyncio (trio): a C call, never raises


def _default_executor() -> _DefaultExecutor:
    global _last_default
    last = _last_default
    # On asyncio the running loop (a C lookup) identifies the run; the RunVar lookup
    # costs a per-call detour through sniffio and anyio's backend registry.
    if last is not None and last.loop._loop is not None and last.loop._loop is _running_loop():
        return last
    try:
        default = _default_var.get()
    except LookupError:
        default = _DefaultExecutor(_current_loop())
        _default_var.set(default)
    _last_default = default
    return default


def current_default_worker_limiter() -> anyio.CapacityLimiter:
    """The limiter :func:`run_sync` uses by default: :data:`DEFAULT_LIMITER_TOKENS` tokens
    (40, as ``anyio.to_thread``'s), or twice the usable CPUs where that is more.

    The executor queues jobs itself and at most one job per worker runs at a time, so the
    tokens do not decide the parallelism; they bound how many calls wait in the
    executor's queue (cancellable there like anywhere) rather than in the limiter. A
    tight limiter costs every call beyond it a park and a wake-up of its task in the
    event loop (measured: main-side CPU per call 20.6 µs with 4 tokens against 14.6 µs
    with 64, 16 calls in flight on 2 workers), and starves the workers of the batches
    that make a full pipeline cheap. Pass ``limiter=`` to cap a caller's share.
    """
    try:
        return _default_limiter_var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(max(DEFAULT_LIMITER_TOKENS, 2 * capabilities().cpu_count))
        _default_limiter_var.set(limiter)
        return limiter


def configure_default_executor(
    *,
    workers: int | float | None = None,
    backend: str = "auto",
    bootstrap: Any = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> None:
    """Set how this event loop's default executor is built (applies the next time it starts).

    ``workers`` defaults to the usable CPU count. Call it before the first
    :func:`run_sync`, or after :func:`aclose_default_executor`.
    """
    if not isinstance(idle_timeout, (int, float)) or idle_timeout <= 0:
        raise ConfigurationError(
            f"idle_timeout must be a number of seconds > 0, got {idle_timeout!r}"
        )
    default = _default_executor()
    default.workers = workers
    default.backend = backend
    default.bootstrap = bootstrap
    default.idle_timeout = float(idle_timeout)


async def aclose_default_executor() -> None:
    """Shut down this event loop's default executor now (waits for running jobs)."""
    try:
        default = _default_var.get()
    except LookupError:
        await anyio.lowlevel.checkpoint()
        return
    await default.aclose()


async def run_sync[T](
    func: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter | None = None
) -> T:
    """Call ``func(*args)`` on a worker of this event loop's default executor.

    Like ``anyio.to_interpreter.run_sync``: ``limiter`` (default:
    :func:`current_default_worker_limiter`) caps how many calls are in flight; the
    workers start on first use and stop after :data:`DEFAULT_IDLE_TIMEOUT` seconds
    idle. Unlike it, nothing polls: the result wakes the loop directly.
    Cancellation behaves as in :meth:`AsyncExecutor.run`.
    """
    default = _default_executor()
    if limiter is None:
        limiter = default.limiter
    # A free token is taken without the limiter's own checkpoint (a scheduler turn per
    # call): awaiting the result below always yields at least once anyway.
    await default.loop.checkpoint_if_cancelled()
    try:
        limiter.acquire_nowait()
    except anyio.WouldBlock:
        await limiter.acquire()
    try:
        executor = await default.acquire()
        try:
            result: T = await _await_call(default.loop, executor, func, args, {})
            return result
        finally:
            default.release()
    finally:
        limiter.release()


# ---------------------------------------------------------------------- Pool control
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
    from ._pool import Pool

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
