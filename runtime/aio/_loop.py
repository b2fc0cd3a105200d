"""The loop bridge: the calling event loop's thread-safe entry point, wake-ups and lifetime.

Every await of :mod:`runtime.aio` parks its task on a :class:`Waiter` (an
``asyncio.Future`` or a ``trio.Event``) that only the loop thread may resolve. A job
completes on some other thread (a worker's completion thread, the executor's hub, a
``ThreadPoolExecutor`` worker), so :meth:`Loop.wake` is the one door through which a
completion reaches the loop, and it decides how:

* From the loop's own inbox reader (``runtime.aio._reader``), already in the loop
  thread: the waiter is resolved directly — no self-pipe write, no extra turn.
* From any other thread: the waiter joins a list under a lock and, only if no hand-off
  is pending yet, one ``call_soon_threadsafe`` (asyncio) or ``run_sync_soon`` (trio)
  drains that list in the loop thread. A batch of completions that lands together
  costs the loop one wake-up, not one each; this is what keeps a burst of thousands of
  results from turning into thousands of self-pipe writes and loop turns.

When the loop has ended, the hand-off raises ``RuntimeError`` and the pending list is
cleared, so a later wake-up schedules afresh instead of believing a dead drain is
still pending (which would strand every waiter behind it).

System tasks (:meth:`Loop.spawn_system_task`) run outside every user task group and
are cancelled when the loop ends. On asyncio the loop keeps only weak references to
its tasks, so this module holds them until they finish; otherwise a guard task could
be garbage-collected mid-await and never clean up.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Protocol

from anyio.lowlevel import RunVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

__all__ = ["AsyncioWaiter", "Loop", "TrioWaiter", "Waiter", "current_loop"]


class Waiter(Protocol):
    """One wake-up: ``resolve()`` and ``wait()`` run in the loop thread only."""

    def resolve(self) -> None: ...

    def wait(self) -> Awaitable[object]: ...


class AsyncioWaiter:
    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def resolve(self) -> None:
        if not self._future.done():  # the awaiting task may have been cancelled
            self._future.set_result(None)

    def wait(self) -> Awaitable[object]:
        return self._future


class TrioWaiter:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()

    def resolve(self) -> None:
        self._event.set()

    def wait(self) -> Awaitable[object]:
        return self._event.wait()


class Loop:
    """The calling event loop's thread-safe entry point and its lifetime hook.

    Wake-ups from other threads are coalesced: while one hand-off to the loop is
    pending, further completions only join its list, so a batch of results that
    completes together costs the loop one wake-up (one self-pipe write), not one each.
    """

    def __init__(self) -> None:
        self.library = _current_library()
        #: The running asyncio loop; None on trio.
        self.asyncio_loop: asyncio.AbstractEventLoop | None = None
        self._token: Any = None
        if self.library == "asyncio":
            self.asyncio_loop = asyncio.get_running_loop()
            self._call_soon: Callable[[Callable[[], None]], object] = (
                self.asyncio_loop.call_soon_threadsafe
            )
            # anyio.current_time()'s clock
            self.time: Callable[[], float] = self.asyncio_loop.time
        elif self.library == "trio":
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._call_soon = self._token.run_sync_soon
            self.time = trio.current_time
        else:  # pragma: no cover - anyio only ships these two
            raise RuntimeError(f"runtime.aio does not support the {self.library!r} event loop")
        self._lock = threading.Lock()
        self._ready: list[Waiter] = []
        self._scheduled = False
        self._thread = threading.get_ident()
        # Loaded with the first loop, not with runtime.aio: it pulls in the wire format.
        from ._reader import Readers, backend_checkpoint_if_cancelled

        self.readers = Readers(self.library, self.asyncio_loop, self._token)
        # anyio.lowlevel.checkpoint_if_cancelled, minus looking up the backend on every call.
        self.checkpoint_if_cancelled = backend_checkpoint_if_cancelled()

    def waiter(self) -> Waiter:
        if self.asyncio_loop is not None:
            return AsyncioWaiter(self.asyncio_loop)
        return TrioWaiter()

    def wake(self, waiter: Waiter) -> None:
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
        if self.asyncio_loop is not None:
            # Runner.close() (asyncio.run, anyio.run) cancels every task left, this one too.
            task = self.asyncio_loop.create_task(fn())
            _system_tasks.add(task)
            task.add_done_callback(_system_tasks.discard)
        else:
            import trio

            trio.lowlevel.spawn_system_task(fn)


_system_tasks: set[asyncio.Task[None]] = set()
_loop_var: RunVar[Loop] = RunVar("runtime_aio_loop")


def _current_library() -> str:
    try:
        import sniffio
    except ImportError:  # without sniffio anyio can only run on asyncio
        asyncio.get_running_loop()
        return "asyncio"
    return sniffio.current_async_library()


def current_loop() -> Loop:
    """The :class:`Loop` of the running event loop, made on first use (one per run)."""
    try:
        return _loop_var.get()
    except LookupError:
        loop = Loop()
        _loop_var.set(loop)
        return loop
