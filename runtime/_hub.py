"""The main interpreter's I/O thread: one poller over every worker's pipes.

Writes to a worker that would block are buffered and finished here when its pipe
drains, so no thread ever blocks on a full pipe while its peer waits on it (the
classic two-pipe deadlock). Callers on other threads write directly when the pipe
has room, which keeps submit → worker to one syscall.

Incoming messages reach the hub two ways:

* a :class:`Connection` added with :meth:`Hub.add` (the Pool's workers) is read here;
* an fd handed to :meth:`Hub.watch` has its callback run here when it is readable. The
  Executor's workers come that way: their pipes sit in one nested epoll (the executor's
  inbox, ``runtime._inbox``), watched one-shot. Whoever holds the inbox's reader role
  reads it: a caller blocked in ``result()``, an event loop, or, when nobody else does,
  this thread. A caller taking the role disarms the hub's watch (:meth:`Hub.switches`)
  without waking it, so a completion costs one wake-up (worker → caller) instead of two
  (worker → hub → caller), and the hub remains the reader of last resort: whenever the
  role is released the watch is re-armed, and data left unread wakes the hub. The hub
  knows nothing of inboxes: a watch is an fd, a callback and, at the hub's end, a
  closing callback.

Timers (:meth:`Hub.call_later`: boot deadlines, worker age limits, retry back-off) run
on this same thread: the poll's timeout is the nearest deadline. An executor starts no
thread of its own for them, so they cost its start-up nothing, and a timer callback
runs serialised with the worker messages the hub reads.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import itertools
import logging
import marshal
import os
import select
import threading
import time

try:  # the C functions: heapq.py costs a new executor 0.2-0.4 ms to import
    from _heapq import heappop, heappush
except ImportError:  # pragma: no cover - a build without the C module
    from heapq import heappop, heappush

from ._heartbeat import Heartbeat
from ._wire import HEADER, MARSHAL, RESULTS, RESULTS_HEAD, unpack
from ._wire import _pickle as pickle_pair  # (dumps, loads), imported on first use

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

log = logging.getLogger("runtime")

__all__ = ["Connection", "Hub", "Timer"]

#: Bytes one read takes from a worker's pipe, unless a frame in progress needs more.
#: Kept under glibc's mmap threshold, so a small read is not an mmap/munmap pair.
READ_SIZE = 1 << 16
#: The most one read takes (a worker's pipe buffer is raised to 1 MiB).
READ_MAX = 1 << 20
#: A nested epoll and one-shot arming (:meth:`Hub.watch`) make the inbox's reader role
#: possible; without epoll (not Linux) every message is read by the hub thread.
NESTABLE = hasattr(select, "epoll")
_IN = select.POLLIN
_OUT = select.POLLOUT
_INVALID = 0 if NESTABLE else select.POLLNVAL

_WAKE, _READ, _WRITE, _WATCH = range(4)
_NOTHING: tuple[int, Any] = (-1, None)


class Connection:
    """Main-side ends of one worker's pipes: buffered writes, framed reads.

    Reads are "consume after apply": a message leaves the buffer only after its
    handler returned, so an exception that interrupts a reader (a signal handler's,
    in the main thread) leaves it to be handled again, and handlers are written to
    be idempotent. Bytes read from the pipe but not yet in the buffer cannot be
    recovered that way; ``reading`` stays true if that window was interrupted, and
    the inbox then treats the worker as lost.
    """

    def __init__(
        self,
        hub: Hub,
        read_fd: int,
        write_fd: int,
        on_message: Callable[[Any], None],
        on_close: Callable[[], None],
    ) -> None:
        self.hub = hub
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.on_message = on_message
        self.on_close = on_close
        self._pending: collections.deque[memoryview] = collections.deque()
        self._lock = threading.Lock()
        self._rbuf = bytearray()
        self._rpos = 0
        self.reading = False
        self.closed = False
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)

    # ------------------------------------------------------------------ writing
    def send_bytes(self, data: bytes) -> None:
        """Queue one frame; written now if the pipe has room, otherwise by the hub thread."""
        with self._lock:
            if self.closed:
                raise BrokenPipeError("worker connection is closed")
            if self._pending:
                self._pending.append(memoryview(data))
            else:
                try:
                    n = os.write(self.write_fd, data)
                except BlockingIOError:
                    n = 0
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.EBADF):
                        raise BrokenPipeError("worker is gone") from exc
                    raise
                if n == len(data):
                    return
                self._pending.append(memoryview(data)[n:])
        self.hub._want_write(self)

    def _flush(self, poller: Any, registered: bool) -> bool:
        """Write what is pending (hub thread). Returns whether the write fd stays registered.

        The fd is (un)registered under the connection's lock, so it cannot be closed and
        its number reused by another pipe in between.
        """
        with self._lock:
            if self.closed:
                return False  # closing the fd took it out of the poller
            while self._pending:
                view = self._pending[0]
                try:
                    n = os.write(self.write_fd, view)
                except BlockingIOError:
                    break
                except OSError:
                    self._pending.clear()
                    break
                if n == len(view):
                    self._pending.popleft()
                else:
                    self._pending[0] = view[n:]
                    break
            want = bool(self._pending)
            if want and not registered:
                poller.register(self.write_fd, _OUT)
            elif registered and not want:
                poller.unregister(self.write_fd)
            return want

    # ------------------------------------------------------------------ reading
    def pump(self) -> bool:
        """Read what the pipe holds and handle every complete message; False at end of file."""
        buf = self._rbuf
        if not buf:
            # The usual case: nothing buffered, and the read brings exactly one message.
            # It is handled straight from the bytes read; `reading` covers the handling
            # too, since the bytes are in no buffer to replay them from.
            self.reading = True
            try:
                data = os.read(self.read_fd, READ_SIZE)
            except BlockingIOError:
                self.reading = False
                return True
            except OSError:
                data = b""
            if len(data) >= HEADER.size and HEADER.unpack_from(data)[0] == len(data) - HEADER.size:
                try:
                    self.on_message(_decode(data, HEADER.size, len(data)))
                except Exception:
                    log.exception("runtime: error while handling a worker message")
                self.reading = False
                return True
            buf += data
            self.reading = False
            if not data:
                return False
            self.deliver()
            return True
        want = READ_SIZE
        if len(buf) - self._rpos >= HEADER.size:  # a big frame in progress: take the rest at once
            (length,) = HEADER.unpack_from(buf, self._rpos)
            want = min(READ_MAX, max(want, self._rpos + HEADER.size + length - len(buf)))
        self.reading = True
        more: bytes | None
        try:
            more = os.read(self.read_fd, want)
        except BlockingIOError:
            more = None
        except OSError:
            more = b""
        if more:
            self._rbuf += more
        self.reading = False
        if more == b"":
            return False
        self.deliver()
        return True

    def deliver(self) -> None:
        """Handle every complete message in the buffer, in order."""
        buf = self._rbuf
        size = HEADER.size
        while True:
            pos = self._rpos
            if len(buf) - pos < size:
                break
            (length,) = HEADER.unpack_from(buf, pos)
            end = pos + size + length
            if len(buf) < end:
                break
            with memoryview(buf) as view:
                message = _decode(view, pos + size, end)
            try:
                self.on_message(message)
            except Exception:
                log.exception("runtime: error while handling a worker message")
            self._rpos = end
        if self._rpos == len(buf):
            buf.clear()
            self._rpos = 0
        elif self._rpos > READ_MAX:
            del buf[: self._rpos]
            self._rpos = 0

    def close_fds(self) -> bool:
        """Close both ends; False if they were closed already."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._pending.clear()
            for fd in (self.read_fd, self.write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
        return True


def _poll_timeout(seconds: float | None, scale: float) -> float | None:
    if seconds is None:
        return None
    # Round up: a poll that returns a hair early would spin until the deadline.
    return max(seconds, 0.0) * scale + (0.0005 if scale == 1.0 else 1.0)


def _decode(view: bytes | memoryview, start: int, end: int) -> tuple[Any, ...]:
    """One message from a worker (see ``runtime._wire``); results are rebuilt here."""
    if view[start] == RESULTS:
        _, batch_id = RESULTS_HEAD.unpack_from(view, start)
        start += RESULTS_HEAD.size
        try:
            if view[start] == MARSHAL:  # plain values (runtime._wire.pack)
                results = marshal.loads(view[start + 1 : end])
            else:
                results = pickle_pair()[1](view[start:end])
        except Exception as exc:
            return ("results_failed", batch_id, f"{type(exc).__name__}: {exc}")
        return ("results", batch_id, results)
    message: tuple[Any, ...] = unpack(view[start:end])
    return message


class Timer:
    """A callback scheduled on the hub thread by :meth:`Hub.call_later`; ``cancel()`` it."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], object]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran). Callable from any thread."""
        self.cancelled = True


class Hub:
    """One daemon thread multiplexing write flushes, the Pool's connections, watched fds and timers."""

    def __init__(self, name: str = "runtime-hub") -> None:
        self._poller: Any = select.epoll() if NESTABLE else select.poll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # fd -> (kind, object); written by the hub thread, and by attach() before any worker exists.
        self._handlers: dict[int, tuple[int, Any]] = {self._wake_r: (_WAKE, None)}
        self._poller.register(self._wake_r, _IN)
        self._todo: collections.deque[tuple[str, Any]] = collections.deque()
        self._closing = False
        self._closed = False  # the loop has ended: nothing registers any more
        self._todo_lock = threading.Lock()
        self.heartbeat = Heartbeat("hub")  # for /healthz: parked in select, or busy since
        self._on_close: list[Callable[[], object]] = []  # the watches' closing callbacks
        # (deadline, sequence, timer): a heap the loop's poll timeout is computed from.
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_seq = itertools.count()
        try:
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self.heartbeat.thread = self._thread
            self._thread.start()
        except RuntimeError as exc:  # e.g. inside a subinterpreter: daemon threads are refused
            if isinstance(self._poller, select.epoll):
                self._poller.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            from ._errors import BackendUnavailable

            raise BackendUnavailable(
                f"cannot start runtime's I/O thread here ({exc}); create pools and executors in "
                "the main interpreter and hand work to workers through them or a Channel"
            ) from exc

    def add(self, conn: Connection) -> None:
        """Have the hub thread read ``conn`` (and call its ``on_close`` at end of file)."""
        with self._todo_lock:
            if self._closed or self._closing:
                raise RuntimeError("the runtime I/O hub is closed; no new worker can join it")
            self._todo.append(("add", conn))
        self._wake()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` on the hub thread after ``delay`` seconds (from any thread).

        Returns a :class:`Timer` whose ``cancel()`` drops it. A callback that raises is
        logged. Timers still pending when the hub closes never run.
        """
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._todo_lock:
            if self._closed or self._closing:
                timer.cancelled = True
                return timer
            earliest = not self._timers or timer.deadline < self._timers[0][0]
            heappush(self._timers, (timer.deadline, next(self._timer_seq), timer))
        if earliest and threading.current_thread() is not self._thread:
            self._wake()  # the loop sleeps until the old nearest deadline: shorten it
        return timer

    def _run_timers(self) -> float | None:
        """Run the due timers (hub thread); returns seconds until the next one, or None."""
        timers = self._timers
        while timers:
            now = time.monotonic()
            with self._todo_lock:
                if not timers:
                    break
                deadline, _, timer = timers[0]
                if timer.cancelled:
                    heappop(timers)
                    continue
                if deadline > now:
                    return deadline - now
                heappop(timers)
            timer.cancelled = True  # ran: a later cancel() is a no-op
            try:
                timer.callback()
            except Exception:
                log.exception("runtime: error in a timer callback on the I/O thread")
        return None

    def remove(self, conn: Connection) -> None:
        self._todo.append(("remove", conn))
        self._wake()

    def _want_write(self, conn: Connection) -> None:
        self._todo.append(("write", conn))
        self._wake()

    # ------------------------------------------------------------------ watches
    def watch(
        self,
        fd: int,
        callback: Callable[[], object],
        *,
        oneshot: bool = False,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        """Run ``callback()`` on the hub thread whenever ``fd`` is readable (from any thread).

        ``oneshot`` (epoll only, see :data:`NESTABLE`): the watch fires once, then stays
        disarmed until :meth:`switches` re-arms it; it starts armed. An fd that is itself
        an epoll makes a nested watch over many fds at once. The callback must consume
        what made ``fd`` readable, or disarm a one-shot watch; one that raises is logged.
        ``on_close`` runs on the hub thread when the hub ends, after its connections were
        dropped (the owner then closes ``fd``). The fd stays watched until then.
        """
        if oneshot and not NESTABLE:
            raise ValueError("one-shot watches need epoll")
        with self._todo_lock:
            if self._closed or self._closing:
                raise RuntimeError("the runtime I/O hub is closed")
            self._handlers[fd] = (_WATCH, callback)
            if on_close is not None:
                self._on_close.append(on_close)
            self._poller.register(fd, (_IN | select.EPOLLONESHOT) if oneshot else _IN)

    def switches(self, fd: int) -> tuple[Callable[[], None], Callable[[], None]]:
        """``(arm, disarm)`` for the one-shot watch of ``fd``: have it fire when ``fd`` becomes
        readable (once), or not.

        Callable from any thread, without waking the hub (one ``epoll_ctl`` each; C-level
        partials, as they run on every call's path). They raise OSError or ValueError once
        the hub has closed its poller.
        """
        modify = self._poller.modify
        return (
            functools.partial(modify, fd, _IN | select.EPOLLONESHOT),
            functools.partial(modify, fd, select.EPOLLONESHOT),
        )

    # ------------------------------------------------------------------ the thread
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def close(self) -> None:
        self._closing = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _apply_todo(self) -> None:
        poller = self._poller
        while self._todo:
            action, conn = self._todo.popleft()
            if action == "add":
                if not conn.closed:
                    self._handlers[conn.read_fd] = (_READ, conn)
                    poller.register(conn.read_fd, _IN)
            elif action == "remove":
                self._drop(conn, notify=False)
            elif action == "write":
                registered = self._handlers.get(conn.write_fd) == (_WRITE, conn)
                if conn._flush(poller, registered):
                    self._handlers[conn.write_fd] = (_WRITE, conn)
                elif registered:
                    del self._handlers[conn.write_fd]

    def _drop(self, conn: Connection, *, notify: bool) -> None:
        if conn.closed:
            return
        with conn._lock:  # the write fd may be registered by _flush under this lock
            for fd in (conn.read_fd, conn.write_fd):
                if self._handlers.get(fd, (None, None))[1] is conn:
                    del self._handlers[fd]
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self._poller.unregister(fd)
        conn.close_fds()
        if notify:
            try:
                conn.on_close()
            except Exception:
                log.exception("runtime: error in a worker-exit callback")

    def _loop(self) -> None:
        poller = self._poller
        handlers = self._handlers
        heartbeat = self.heartbeat
        # epoll takes seconds (-1: no limit); poll() takes milliseconds (None: no limit).
        scale = 1.0 if NESTABLE else 1000.0
        while not self._closing:
            self._apply_todo()
            timeout = self._run_timers() if self._timers else None
            heartbeat.park("worker messages")
            ready = poller.poll(
                -1 if timeout is None and NESTABLE else _poll_timeout(timeout, scale)
            )
            heartbeat.beat()
            for fd, events in ready:
                kind, obj = handlers.get(fd, _NOTHING)
                if events & _INVALID:  # poll(), not epoll: a closed fd stays until unregistered
                    handlers.pop(fd, None)
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        poller.unregister(fd)
                    if kind == _READ:
                        self._drop(obj, notify=True)
                    continue
                if kind == _WATCH:
                    try:
                        obj()
                    except Exception:
                        log.exception("runtime: error in a callback on the I/O thread")
                elif kind == _READ:
                    if obj.closed:
                        continue
                    try:
                        alive = obj.pump()
                    except Exception:
                        log.exception(
                            "runtime: undecodable message from a worker; dropping the worker"
                        )
                        alive = False
                    if not alive:
                        self._drop(obj, notify=True)
                elif kind == _WRITE:
                    if not obj._flush(poller, True):
                        handlers.pop(fd, None)
                elif kind == _WAKE:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
        # Connections added just before close() may still sit in the to-do list: register
        # them too, so that every worker gets its end-of-file and its exit callback.
        with self._todo_lock:
            self._closed = True
            for _, _, timer in self._timers:
                timer.cancelled = True
            self._timers.clear()
        heartbeat.close()
        self._apply_todo()
        for kind, obj in list(handlers.values()):
            if kind == _READ:
                self._drop(obj, notify=True)
        for on_close in self._on_close:
            try:
                on_close()
            except Exception:
                log.exception("runtime: error while closing a watch of the I/O thread")
        if isinstance(poller, select.epoll):
            poller.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
