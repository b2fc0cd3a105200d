"""``run_sync``'s default executor: one per event loop, started on demand, pruned when idle.

Shaped like anyio's ``to_interpreter.run_sync``: a :class:`~anyio.CapacityLimiter` per
event loop (:func:`current_default_worker_limiter`), an executor that starts on the
first call, stops after :data:`DEFAULT_IDLE_TIMEOUT` seconds without a job in flight
and starts again on the next call, and cleanup when the loop ends and at exit.

The concurrency decisions, and the failures they prevent:

* One system task per loop guards the executor (:meth:`_DefaultExecutor._guard`). It
  sleeps on an event until the executor first goes idle, then wakes once per idle
  period while the executor lives — never once per call — so pruning costs a call
  no timer and the loop no extra turn. Being a system task, it is cancelled when the
  loop ends, and then shuts the workers down: they never outlive the loop that used
  them, even when nobody calls :func:`aclose_default_executor`.
* Starting is serialised by a lock with a re-check inside it, so concurrent first
  calls start one executor, not one each; the in-flight count is taken *before* that
  wait, so the guard cannot prune an executor that a call is about to use.
* An ``atexit`` hook shuts down whatever default executors are still alive (a loop
  whose end the guard never saw, a process that exits mid-run).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
from anyio.lowlevel import RunVar

from .._capabilities import capabilities
from .._errors import ConfigurationError
from ._await import await_call
from ._executor import aclose_executor
from ._loop import current_loop

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._executor import Executor
    from ._loop import Loop

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LIMITER_TOKENS",
    "aclose_default_executor",
    "configure_default_executor",
    "current_default_worker_limiter",
    "default_executor",
    "run_sync",
]

log = logging.getLogger("runtime")

T = TypeVar("T")

#: Seconds the default executor of :func:`run_sync` may sit idle before its workers are shut down.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Tokens of :func:`current_default_worker_limiter` (at least twice the usable CPUs).
DEFAULT_LIMITER_TOKENS = 40


class _DefaultExecutor:
    """The per-event-loop executor behind :func:`run_sync`.

    Created on first use; shut down after ``idle_timeout`` seconds without a job in
    flight (the next call starts it again), when the event loop ends, or at exit.
    A system task owns it: it sleeps until the executor first goes idle, then wakes
    once per idle period while the executor lives (never once per call), so nothing
    polls and a call costs the loop no extra turn.
    """

    def __init__(self, loop: Loop) -> None:
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
        from .._executor import Executor

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
            await aclose_executor(executor)

    def close(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        executor, self.executor = self.executor, None
        if executor is not None:
            await aclose_executor(executor)


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
# None outside asyncio (trio): a C call, never raises. Underscored but part of asyncio's
# API for event loops (asyncio.events.__all__).
_running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop


def default_executor() -> _DefaultExecutor:
    """This event loop's default executor (its settings; the workers start on first use)."""
    global _last_default
    last = _last_default
    # On asyncio the running loop (a C lookup) identifies the run; the RunVar lookup
    # costs a per-call detour through sniffio and anyio's backend registry.
    if (
        last is not None
        and (running := last.loop.asyncio_loop) is not None
        and running is _running_loop()
    ):
        return last
    try:
        default = _default_var.get()
    except LookupError:
        default = _DefaultExecutor(current_loop())
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
    default = default_executor()
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
    default = default_executor()
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
            result: T = await await_call(default.loop, executor, func, args, {})
            return result
        finally:
            default.release()
    finally:
        limiter.release()
