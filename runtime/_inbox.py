"""An executor's incoming messages, read by whoever is waiting for them.

Every worker of an executor writes its results to its own pipe; the pipes' read ends
sit in one nested epoll, the *inbox*. Exactly one thread at a time holds the inbox's
*reader role* and reads it: a caller blocked in ``Future.result()``, an event loop
that awaits results (``runtime.aio._reader``), or the hub thread when nobody else
does. A caller that reads its own completion is woken once, by the worker's write,
instead of by a hub thread that was woken first — the round trip wakes two threads,
not three, and the main interpreter spends no GIL hand-off on it.

What the design prevents:

* **Lost completions.** The hub watches the inbox one-shot. Taking the role disarms
  that watch (``epoll_ctl``, no wake-up); giving the role back re-arms it, so anything
  left unread wakes the hub. A holder that stops waiting always gives the role back
  (``finally``), and a hub that finds the role taken leaves the re-arming to the holder.
* **A reader that never wakes.** A future completed by another thread (cancelled,
  failed at submit) while its caller reads pokes the inbox's own pipe.
* **Interrupted reads.** In the main thread a signal handler (Ctrl-C) may raise
  between any two bytecodes of a reader. Messages leave a connection's buffer only
  after they were handled, and handlers are idempotent, so an interrupted reader marks
  the inbox dirty and the next reader handles the rest; bytes that were read but had
  not reached the buffer are detected (``Connection.reading``) and that worker is
  treated as lost — its jobs fail with ``WorkerCrashed`` instead of hanging.
* **The two-pipe deadlock.** Writes that would block are still finished by the hub
  thread, which never waits for the role.
* **Deadlock on a blocked event loop.** An event loop holds the role only while it
  awaits results; a synchronous wait in the loop's own thread reads the inbox itself.

Without epoll (not Linux) the inbox hands its workers' pipes to the hub thread and
nobody else reads them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from threading import get_ident

from ._hub import NESTABLE
from ._wire import DONE as _DONE
from ._wire import make_pipe

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._hub import Connection, Hub

log = logging.getLogger("runtime")

__all__ = ["Inbox"]


# Role states. The holder is a thread id; the hub thread holds the role as a reader too.
_FREE, _RESERVED, _READING = 0, 1, 2
#: How long a reservation taken by ``submit`` keeps the hub away before the hub
#: concludes that its thread will not come to read (it went on to other work).
RESERVATION_GRACE = 0.002

if sys.version_info >= (3, 13) and hasattr(os, "timerfd_create"):

    def _new_timer() -> int | None:
        return os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)

    def _set_timer(fd: int | None, seconds: float) -> None:
        if fd is not None:
            os.timerfd_settime(fd, initial=seconds)

else:  # reservations need a timer the hub can sleep on (os.timerfd_create, Linux, 3.13+)

    def _new_timer() -> int | None:
        return None

    def _set_timer(fd: int | None, seconds: float) -> None:
        pass


_RESERVABLE = NESTABLE and sys.version_info >= (3, 13) and hasattr(os, "timerfd_create")


def _nothing() -> bool:
    return False


class Inbox:
    """The read ends of a group of workers' pipes, and who reads them."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.nested = NESTABLE
        self._conns: dict[int, Connection] = {}
        self._mutex = threading.Lock()  # guards the role: _state, _holder, _reserved_at
        self._state = _FREE
        self._holder: int | None = None
        self._reserved_at = 0.0
        self._timer_armed = False
        self._draining = False
        self._watched: Any = None  # the future a reading caller waits for
        self._dirty = False  # a reader was interrupted: buffered messages may wait
        self._on_close: list[Callable[[], None]] = []
        self.closed = False
        # Whether others' work may still arrive (the executor's jobs in flight): a reader
        # that is done keeps no reservation then, so nobody waits for it to come back.
        self.others_in_flight: Callable[[], bool] = _nothing
        self.timer_fd: int | None = None
        if self.nested:
            self._ep = select.epoll()
            self._poke_r, self._poke_w = make_pipe(nonblocking=True)
            self._ep.register(self._poke_r, select.EPOLLIN)
            if _RESERVABLE:
                self.timer_fd = _new_timer()
            # The hub reads the inbox when nobody else does (one-shot: see the module's
            # docstring), breaks stale reservations (their timer) and closes the inbox at
            # its end. Before any worker exists, so nothing is readable yet.
            hub.watch(self.fileno(), self.serve_from_hub, oneshot=True, on_close=self.close)
            if self.timer_fd is not None:
                hub.watch(self.timer_fd, self.timer_fired)
            self._arm, self._disarm = hub.switches(self.fileno())

    def fileno(self) -> int:
        """The nested epoll: readable while a worker's pipe (or the poke pipe) has data."""
        return self._ep.fileno()

    # ------------------------------------------------------------------ membership
    def add(self, conn: Connection) -> None:
        """Read ``conn`` from now on; its ``on_close`` runs at its end of file."""
        if not self.nested:
            self._hub.add(conn)
            return
        self._conns[conn.read_fd] = conn
        self._ep.register(conn.read_fd, select.EPOLLIN)

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` without its exit callback (a worker that failed to launch)."""
        if not self.nested:
            self._hub.remove(conn)
            return
        self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        if self._conns.get(conn.read_fd) is conn:
            del self._conns[conn.read_fd]
            with contextlib.suppress(OSError, ValueError):
                self._ep.unregister(conn.read_fd)

    def _drop(self, conn: Connection) -> None:
        self._forget(conn)
        if not conn.close_fds():
            return  # another reader dropped it first
        try:
            conn.on_close()
        except Exception:
            log.exception("runtime: error in a worker-exit callback")

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) when the inbox closes; an event loop detaches then."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Drop every remaining worker and release the epoll (hub thread, at its end)."""
        if self.closed:
            return
        self.closed = True
        if not self.nested:
            return
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._poke()  # a reader still polling sees `closed`
        for callback in self._on_close:
            try:
                callback()
            except Exception:
                log.exception("runtime: error while detaching an event loop from an executor")
        self._ep.close()
        for fd in (self._poke_r, self._poke_w, self.timer_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ------------------------------------------------------------------ the role
    def reserve(self) -> None:
        """Keep the hub away: this thread is about to send work and will likely wait for it.

        Called by ``submit`` *before* it writes, so that a worker that answers before the
        caller reaches ``result()`` (the caller was preempted by the worker it woke) does
        not wake the hub first. A reservation that is not claimed by a wait within
        :data:`RESERVATION_GRACE` is broken by the hub (its timer), so work that nobody
        waits for in ``result()`` is still read.
        """
        if not _RESERVABLE or self._state != _FREE:  # a racy peek; rechecked below
            return
        with self._mutex:
            if self._state != _FREE or self.closed:
                return
            self._state = _RESERVED
            self._holder = get_ident()
            self._reserved_at = time.monotonic()
            self._switch(self._disarm)
            if self._timer_armed:
                return
            self._timer_armed = True
        self._set_timer(RESERVATION_GRACE)

    def unreserve(self) -> None:
        """Someone will wait by callback, not by reading: let the hub read now."""
        if self._state != _RESERVED:
            return
        with self._mutex:
            if self._state == _RESERVED:
                self._free()

    def timer_fired(self) -> None:
        """The hub's reservation timer expired (hub thread)."""
        with contextlib.suppress(OSError, TypeError):
            os.read(self.timer_fd, 8)  # type: ignore[arg-type]
        with self._mutex:
            self._timer_armed = False
            if self._state != _RESERVED:
                return
            age = time.monotonic() - self._reserved_at
            if age >= RESERVATION_GRACE:
                self._free()  # its thread went on to other work; the hub reads from now on
                return
            self._timer_armed = True
        self._set_timer(RESERVATION_GRACE - age)

    def _set_timer(self, seconds: float) -> None:
        with contextlib.suppress(OSError, TypeError):
            _set_timer(self.timer_fd, max(seconds, 1e-6))

    def _free(self) -> None:
        # Under _mutex: nobody holds the role; the hub watches (and reads what is there).
        self._state = _FREE
        self._holder = None
        self._switch(self._arm)

    @staticmethod
    def _switch(switch: Callable[[], None]) -> None:
        try:  # noqa: SIM105 - on every call's path; try is cheaper than suppress()
            switch()
        except (OSError, ValueError):  # the hub has closed its poller
            pass

    def hold(self, *, steal: bool = False) -> bool:
        """Take the reader role for this thread: free, or reserved by this thread.

        ``steal``: or reserved by any thread, as a waiting caller does (see :meth:`wait`).
        """
        return self._take(steal=steal)

    def _take(self, *, steal: bool) -> bool:
        if not self.nested or self.closed:
            return False
        me = get_ident()
        with self._mutex:
            if self._state == _FREE:
                self._switch(self._disarm)
            elif self._state != _RESERVED or not (steal or self._holder == me):
                return False
            self._state = _READING
            self._holder = me
        return True

    def release(self, *, linger: bool = False) -> None:
        """Give the role back; the hub reads whatever is left.

        ``linger`` keeps it reserved for this thread instead (see :meth:`reserve`): a
        caller that just got its result usually submits again at once, and a lingering
        reservation spares it disarming and re-arming the hub for every call. Only while
        nothing else is in flight: others' results must not wait for this thread to come
        back (or for the hub to break the reservation).
        """
        with self._mutex:
            if not linger or not _RESERVABLE or self.closed or self.others_in_flight():
                self._free()
                return
            self._state = _RESERVED
            self._reserved_at = time.monotonic()
            if self._timer_armed:
                return
            self._timer_armed = True
        self._set_timer(RESERVATION_GRACE)

    def held_here(self) -> bool:
        """Whether this thread holds the role and is not reading right now."""
        return self._state == _READING and self._holder == get_ident() and not self._draining

    def serve_from_hub(self) -> None:
        """The hub's watch fired: read, unless someone holds the role (they re-arm the hub)."""
        with self._mutex:
            if self._state != _FREE:
                return
            self._state = _READING
            self._holder = get_ident()
        try:
            self._drain(0)
        except Exception:
            log.exception("runtime: error while reading workers' messages")
        finally:
            self.release()

    def drain_now(self) -> None:
        """Read what is there without waiting (the holder's event loop, when the inbox is readable)."""
        try:
            self._drain(0)
        except BaseException:
            self._interrupted()
            raise

    # ------------------------------------------------------------------ waiting
    def wait(self, future: Any, timeout: float | None) -> float | None:
        """Read completions in this thread until ``future`` is done, if the role is free.

        An idle reservation (of any thread) is taken over: its thread finds the role
        taken when it waits, and is served by this reader or, later, the hub. Returns the
        part of ``timeout`` left for the caller's own wait (which finds the future done,
        or waits on it while someone else reads).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._lead(future, None, deadline, linger=True)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def serve_until(self, done: Callable[[], bool], deadline: float | None = None) -> None:
        """Read until ``done()`` (or ``deadline``) if the role is free or idle in this thread.

        Returns at once if another thread reads: the caller then waits its own way.
        """
        self._lead(None, done, deadline, linger=False)

    def _lead(
        self,
        future: Any,
        done: Callable[[], bool] | None,
        deadline: float | None,
        *,
        linger: bool,
    ) -> None:
        if self._take(steal=True):
            owned = True
        elif self.held_here():
            owned = False  # this thread's event loop holds it and is blocked in this call
        else:
            return
        self._watched = future
        try:
            while not (future._state in _DONE if done is None else done()) and not self.closed:
                if deadline is None:
                    wait = -1.0
                else:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                self._drain(wait)
        except BaseException:
            self._interrupted()
            linger = False  # let the hub finish what the interruption left
            raise
        finally:
            self._watched = None
            if owned:
                self.release(linger=linger)

    def completed(self, future: Any) -> None:
        """``future`` was completed: wake its reading caller if another thread did it."""
        if future is self._watched and self._holder != get_ident():
            self._poke()

    # ------------------------------------------------------------------ reading
    def wake_reader(self) -> None:
        """Wake the thread reading the inbox, if another one reads, to re-check what it waits for.

        For state changes that arrive without a message (a hub timer gave up on a worker):
        a reader waits in the inbox's epoll for messages only.
        """
        if self._state == _READING and self._holder != get_ident():
            self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._poke_w, b"\0")

    def _interrupted(self) -> None:
        # Something raised out of a reader (a signal handler, in the main thread): what
        # it left half done is finished by the next reader, woken by the poke.
        self._dirty = True
        self._poke()

    def _drain(self, timeout: float) -> None:
        try:
            events = self._ep.poll(timeout)
        except (OSError, ValueError):
            if self.closed:
                return
            raise
        self._draining = True
        try:
            if self._dirty:
                self._recover()
            conns = self._conns
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is None:
                    if fd == self._poke_r:
                        with contextlib.suppress(OSError):
                            os.read(fd, 4096)
                    continue
                if conn.closed:
                    continue
                try:
                    alive = conn.pump()
                except Exception:
                    log.exception("runtime: undecodable message from a worker; dropping the worker")
                    alive = False
                if not alive:
                    self._drop(conn)
        finally:
            self._draining = False

    def _recover(self) -> None:
        self._dirty = False
        for conn in list(self._conns.values()):
            if conn.reading:
                conn.reading = False
                log.error(
                    "runtime: reading a worker's messages was interrupted; its jobs fail and "
                    "the worker is replaced"
                )
                self._drop(conn)
            else:
                conn.deliver()
