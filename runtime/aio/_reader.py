"""An event loop reads an executor's completions itself while it awaits them.

(And :class:`Call`, the lean completion of one awaited job, which that reader completes,
and :func:`start_call`, which queues such a job.)

Without this, a result reaches an awaiting task through three threads: the worker
writes, the executor's hub thread wakes, reads and completes the future, then hands a
wake-up to the loop (``call_soon_threadsafe`` / ``run_sync_soon``). With it, the loop
holds the executor inbox's reader role (``runtime._inbox``) while any of its tasks
awaits a result, watches the inbox's fd like any socket (``loop.add_reader`` on
asyncio, ``trio.lowlevel.wait_readable`` in a system task on trio), and completes the
futures in its own thread: one wake-up, no helper thread, no self-pipe write.

The role is held only while a task of the loop awaits (a count). When none does, it
stays reserved for the loop's thread for a moment (``runtime._inbox``'s reservation,
2 ms), so that back-to-back awaits do not re-arm and disarm the hub's watch for every
call; the hub breaks a reservation that nobody claims, so a loop that stops running
keeps the executor's other users (threads, done-callbacks, shutdown) waiting at most
that long. Between two back-to-back awaits
the fd stays registered with the loop; a wake-up while the role is not held removes
it. The loop watches a ``dup`` of the inbox's fd, so the executor may close its own at
any time; the loop's copy is closed in the loop thread when the executor goes away
(or when the loop has ended). When the role is busy (another thread reads), or the
loop cannot watch fds (Windows' proactor), awaiting falls back to the thread-safe
wake-up, which always works.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

# runtime._executor is loaded whenever this module is: the first Loop is made for an
# AsyncExecutor (which imports it) or for run_sync's default executor (which starts one).
from .._executor import enqueue, inbox_of
from .._wire import DONE as _DONE

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from .._executor import Executor
    from .._inbox import Inbox
    from ._loop import Loop

log = logging.getLogger("runtime")

__all__ = ["AsyncioReader", "Call", "Readers", "TrioReader", "start_call"]

# The states of concurrent.futures.Future, so the executor treats a Call like one.
_PENDING, _RUNNING, _FINISHED, _CANCELLED = "PENDING", "RUNNING", "FINISHED", "CANCELLED"


def _drain(readers: Readers, inbox: Inbox) -> None:
    readers.reading = True
    try:
        inbox.drain_now()
    finally:
        readers.reading = False


class _Reader:
    """Holds the inbox's reader role while a task of its loop awaits (loop thread only)."""

    def __init__(self, inbox: Inbox, readers: Readers) -> None:
        self.inbox = inbox
        self.readers = readers
        self.count = 0
        self.holding = False
        self.usable = inbox.nested
        inbox.on_close(self._closed)

    def enter(self) -> None:
        """A task starts awaiting a result of this inbox's executor."""
        self.count += 1
        # An idle reservation of another thread is taken over, as a waiting caller does:
        # that thread finds the role taken when it comes to wait, and this loop serves it.
        if self.count != 1 or not self.usable or not self.inbox.hold(steal=True):
            return
        self.holding = True
        if not self._start():
            self.holding = False
            self.inbox.release()

    def exit(self) -> None:
        """That task stopped awaiting (result, failure or cancellation)."""
        self.count -= 1
        if self.count == 0 and self.holding:
            self.holding = False
            # Kept reserved for this thread for a moment (runtime._inbox) if nothing else
            # is in flight: a task that got its result usually awaits another at once, and
            # then takes the role back without re-arming and disarming the hub's watch
            # (two syscalls a call). The hub breaks a reservation that nobody claims.
            self.inbox.release(linger=True)

    def _start(self) -> bool:
        """Make sure the loop watches the inbox; False if it cannot."""
        raise NotImplementedError

    def _closed(self) -> None:
        raise NotImplementedError


class AsyncioReader(_Reader):
    """Watches the inbox with ``loop.add_reader``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: Inbox, readers: Readers) -> None:
        super().__init__(inbox, readers)
        self.loop = loop
        self.fd: int | None = None

    def _start(self) -> bool:
        if self.fd is not None:
            return True
        fd = os.dup(self.inbox.fileno())
        try:
            self.loop.add_reader(fd, self._readable)
        except (NotImplementedError, RuntimeError, OSError, ValueError):
            os.close(fd)
            self.usable = False  # a proactor loop: the thread-safe wake-up it is
            return False
        self.fd = fd
        return True

    def _unwatch(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            os.close(fd)

    def _readable(self) -> None:
        if self.holding:
            _drain(self.readers, self.inbox)
        else:
            self._unwatch()  # someone else reads it now; watch again when a task awaits

    def _closed(self) -> None:
        # The executor closed its inbox (any thread): stop watching in the loop thread.
        self.usable = False
        try:
            self.loop.call_soon_threadsafe(self._unwatch)
        except RuntimeError:  # the loop is closed: its selector is gone with our fd in it
            fd, self.fd = self.fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class TrioReader(_Reader):
    """Watches the inbox from a system task with ``trio.lowlevel.wait_readable``."""

    def __init__(self, token: Any, inbox: Inbox, readers: Readers) -> None:
        super().__init__(inbox, readers)
        self.token = token
        self._running = False
        self._parked: Any = None  # trio.Event while the task waits to be needed again
        self._scope: Any = None

    def _start(self) -> bool:
        if not self._running:
            import trio

            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="runtime-inbox-reader")
        elif self._parked is not None:
            self._parked.set()
        return True

    async def _run(self) -> None:
        import trio

        fd = os.dup(self.inbox.fileno())
        try:
            with trio.CancelScope() as self._scope:
                while self.usable:
                    if not self.holding:
                        self._parked = trio.Event()
                        await self._parked.wait()
                        self._parked = None
                        continue
                    await trio.lowlevel.wait_readable(fd)
                    if self.holding:
                        # System tasks are protected from KeyboardInterrupt: this read
                        # cannot be torn in half by Ctrl-C.
                        _drain(self.readers, self.inbox)
        finally:
            self._running = False
            if self.holding:  # cancelled at the end of the run while a task still awaited
                self.holding = False
                self.inbox.release()
            os.close(fd)

    def _closed(self) -> None:
        self.usable = False

        def stop() -> None:
            if self._scope is not None:
                self._scope.cancel()
            if self._parked is not None:
                self._parked.set()

        with contextlib.suppress(Exception):  # trio.RunFinishedError: the task ended with the run
            self.token.run_sync_soon(stop)


def backend_checkpoint_if_cancelled() -> Callable[[], Awaitable[None]]:
    """The running anyio backend's ``checkpoint_if_cancelled``, looked up once.

    ``anyio.lowlevel.checkpoint_if_cancelled`` finds the backend (sniffio, a registry)
    on every call; an event loop's backend does not change.
    """
    try:
        from anyio._core._eventloop import get_async_backend

        method: Callable[[], Awaitable[None]] = get_async_backend().checkpoint_if_cancelled
    except Exception:  # another anyio layout: the public, slower way
        import anyio.lowlevel

        method = anyio.lowlevel.checkpoint_if_cancelled
    return method


class Readers:
    """One event loop's readers, one per executor inbox (loop thread only)."""

    def __init__(self, library: str, loop: asyncio.AbstractEventLoop | None, token: Any) -> None:
        self._library = library
        self._loop = loop
        self._token = token
        self._by_inbox: dict[int, AsyncioReader | TrioReader] = {}
        self._last: tuple[Any, AsyncioReader | TrioReader | None] = (None, None)
        self.reading = False  # a reader of this loop is completing futures right now

    def get(self, executor: Any) -> AsyncioReader | TrioReader | None:
        """The reader for ``executor``'s inbox on this loop; None for other executors."""
        last_executor, reader = self._last
        if executor is last_executor and (reader is None or reader.usable):
            return reader
        reader = self._find(executor)
        self._last = (executor, reader)
        return reader

    def _find(self, executor: Any) -> AsyncioReader | TrioReader | None:
        inbox = inbox_of(executor)
        if inbox is None or not inbox.nested or inbox.closed:
            return None
        key = id(inbox)
        reader = self._by_inbox.get(key)
        if reader is None or reader.inbox is not inbox:
            if self._loop is not None:
                reader = AsyncioReader(self._loop, inbox, self)
            elif self._library == "trio":
                reader = TrioReader(self._token, inbox, self)
            else:  # pragma: no cover - anyio only ships asyncio and trio
                return None
            self._by_inbox[key] = reader
            # Forget it when the executor goes (any thread; a dict pop is atomic).
            inbox.on_close(lambda: self._forget(key))
        return reader

    def _forget(self, key: int) -> None:
        self._by_inbox.pop(key, None)


class Call:
    """One awaited job on a ``runtime.Executor``, completed without a ``concurrent.futures.Future``.

    The executor completes a job through a small protocol (``set_running_or_notify_cancel``,
    ``set_result``, ``set_exception``, ``cancel``, ``done``). A ``concurrent.futures.Future``
    implements it with a condition variable, waiters and done-callbacks that a task awaiting
    one job never uses; each costs the event loop's thread Python calls per job. A Call
    implements it with one lock and wakes its task itself: directly when the loop's own
    reader completes it (the usual case), through the loop's thread-safe entry point from
    any other thread. Cancellation racing dispatch is settled under the lock, as in
    ``concurrent.futures``: a job is either cancelled before it runs, or it runs.
    """

    __slots__ = ("_exception", "_lock", "_loop", "_result", "_state", "armed", "waiter")

    def __init__(self, loop: Loop) -> None:
        self._lock = threading.Lock()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._loop = loop
        self.waiter = loop.waiter()
        self.armed = True  # False once the awaiting task gave up: nobody to wake

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                return False
            self._state = _RUNNING
            return True

    def set_result(self, result: Any) -> None:
        with self._lock:
            if self._state in _DONE:
                raise cf.InvalidStateError(f"the job is already {self._state.lower()}")
            self._result = result
            self._state = _FINISHED
        self._wake()

    def set_exception(self, exception: BaseException | None) -> None:
        with self._lock:
            if self._state in _DONE:
                raise cf.InvalidStateError(f"the job is already {self._state.lower()}")
            self._exception = exception
            self._state = _FINISHED
        self._wake()

    def cancel(self) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                return True
            if self._state != _PENDING:
                return False
            self._state = _CANCELLED
        self._wake()  # shutdown(cancel_futures=True) from another thread
        return True

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def outcome(self) -> Any:
        """The job's result; raises its exception, or ExecutorShutdown if it was cancelled."""
        if self._state == _CANCELLED:
            from .._errors import ExecutorShutdown

            raise ExecutorShutdown(
                "the job was cancelled before it started: the executor is shutting down"
            )
        if self._exception is not None:
            raise self._exception
        return self._result

    def _wake(self) -> None:
        if self.armed:
            try:  # noqa: SIM105 - on every job's path; try is cheaper than suppress()
                self._loop.wake(self.waiter)
            except RuntimeError:  # the loop ended while the job ran
                pass


def start_call(
    loop: Loop, executor: Executor, fn: Callable[..., Any], args: Any, kwargs: Any
) -> Call:
    """Queue ``fn(*args, **kwargs)`` on ``executor``; returns the :class:`Call` it completes."""
    call = Call(loop)
    enqueue(executor, call, fn, args, kwargs)
    return call
