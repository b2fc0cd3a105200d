"""An Event whose wait() in the main thread still runs Python signal handlers at once.

CPython runs a Python-level signal handler in the main thread, the next time that thread executes bytecode. A signal
sent to the process may be taken by any of its threads that does not block it; when the kernel picks another thread
(which it does under load, or when the main thread already has a signal pending), the C handler only records the
signal, and a main thread asleep in ``threading.Event.wait()`` (a lock acquire) is not woken: SIGTERM or Ctrl-C is
then handled only when something else sets the event, which for ``Pool.run()`` may be never. Measured: one
``Pool.run()`` in 150 under a loaded CPU slept through its SIGINT that way.

:class:`SignalAwareEvent` sleeps in ``poll()`` on a pipe that is also the process's signal wakeup fd
(``signal.set_wakeup_fd``) for the time of the wait: the C handler writes the signal's number to the pipe from
whichever thread took it, the main thread wakes, and its handler runs before the next check of the event. ``set()``
writes to the same pipe. Off the main thread (or where the wakeup fd cannot be set) it is a plain Event wait.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time


class SignalAwareEvent:
    """``threading.Event`` (``set``/``is_set``/``wait``) that a signal wakes in the main thread."""

    __slots__ = ("_event", "_lock", "_pipes")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._pipes: list[int] = []  # write ends of the main thread's waits in progress

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()
        with self._lock:
            for fd in self._pipes:
                with contextlib.suppress(OSError):  # full: the waiter is awake already
                    os.write(fd, b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        if self._event.is_set():
            return True
        if threading.current_thread() is not threading.main_thread():
            return self._event.wait(timeout)
        r, w = os.pipe()
        try:
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            try:
                previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            except ValueError:  # not the main interpreter: its signals are not ours to see
                return self._event.wait(timeout)
            try:
                return self._wait_on(r, w, previous, timeout)
            finally:
                signal.set_wakeup_fd(previous)
        finally:
            os.close(r)
            os.close(w)

    def _wait_on(self, r: int, w: int, previous: int, timeout: float | None) -> bool:
        with self._lock:
            self._pipes.append(w)
        try:
            poller = select.poll()
            poller.register(r, select.POLLIN)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._event.is_set():
                if deadline is None:
                    wait_ms = None
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    wait_ms = max(1, int(left * 1000))
                # A handler that raises (KeyboardInterrupt) leaves from here, and the finally clauses clean up.
                if poller.poll(wait_ms):
                    self._drain(r, previous)
            return self._event.is_set()
        finally:
            with self._lock:
                self._pipes.remove(w)

    @staticmethod
    def _drain(r: int, previous: int) -> None:
        with contextlib.suppress(BlockingIOError):
            data = os.read(r, 4096)
            # Signal numbers are passed on to whoever owned the wakeup fd before us (an event loop), so it still
            # learns of the signals that arrived meanwhile; the zero bytes are ours (set()).
            forward = data.replace(b"\0", b"")
            if forward and previous != -1:
                with contextlib.suppress(OSError):
                    os.write(previous, forward)
