"""Heartbeats of the supervising threads, for ``/healthz``.

A supervising thread (the pool's supervisor, a hub, a consumer's broker I/O thread)
spends its life either *parked* in a wait it expects to last (a selector with no
timeout, an event queue with nothing due, a reconnect back-off) or *busy* handling
what woke it. A plain "last stamped at" time cannot tell a thread parked for an hour
in a wait without timeout (healthy: nothing happened) from one stuck for an hour in
a handler (not healthy). So the thread records which of the two it is in:
``park(why)`` just before a wait, ``beat()`` on every wake-up. A parked thread is
alive by definition (it is in a known wait and wakes on its event; that it is still
a live thread is checked separately); a busy thread is stuck once it has been busy
longer than the bound. Each stamp is one attribute store (plus one clock read when
waking), so the hot loops pay next to nothing for it.

Core, not ops: the hub (``runtime._hub``) stamps one, and core never imports
``runtime.ops``; ``runtime.ops`` reads these heartbeats for ``/healthz``.
"""

from __future__ import annotations

import time

try:  # queue.Empty itself: the queue module costs a new executor 0.8 ms to import
    from _queue import Empty as _Empty
except ImportError:  # pragma: no cover - a build without the C module
    from queue import Empty as _Empty

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import queue
    import threading

__all__ = ["Heartbeat"]

_monotonic = time.monotonic


class Heartbeat:
    """What one supervising thread is doing: busy since a time, parked in a named wait, or done."""

    __slots__ = ("_state", "closed", "name", "thread")

    def __init__(self, name: str, thread: threading.Thread | None = None) -> None:
        self.name = name
        self.thread = thread
        self.closed = False  # the thread ended on purpose: nothing to judge any more
        # A float: busy since that monotonic time. A str: parked in that wait.
        self._state: float | str = _monotonic()

    def beat(self) -> None:
        """The thread woke up (or finished a bounded step) and is working now."""
        self._state = _monotonic()

    def park(self, why: str = "waiting for work") -> None:
        """The thread is about to block in an expected wait (which may have no timeout)."""
        self._state = why

    def close(self) -> None:
        self.closed = True

    def get[T](self, events: queue.SimpleQueue[T], why: str = "events") -> T:
        """``events.get()`` (no timeout), parked while it waits."""
        self._state = why
        try:
            return events.get()
        finally:
            self._state = _monotonic()

    def get_or_none[T](
        self, events: queue.SimpleQueue[T], timeout: float | None, why: str = "events"
    ) -> T | None:
        """``events.get(timeout=timeout)``, parked while it waits; None when it timed out."""
        self._state = why
        try:
            return events.get(timeout=timeout)
        except _Empty:
            return None
        finally:
            self._state = _monotonic()

    def problem(self, now: float, stale_after: float) -> str | None:
        """Why this thread is not healthy, or None when it is."""
        if self.closed:
            return None
        thread = self.thread
        if thread is not None and not thread.is_alive():
            return f"{self.name}: its thread {thread.name!r} has died"
        state = self._state  # one read: the owner may stamp concurrently
        if isinstance(state, str):
            return None
        busy = now - state
        if busy > stale_after:
            return (
                f"{self.name}: busy for {busy:.1f}s without reaching a wait "
                f"(limit {stale_after:g}s): stuck"
            )
        return None

    def describe(self, now: float) -> dict[str, object]:
        state = self._state
        out: dict[str, object] = {"thread": self.name}
        if self.closed:
            out["state"] = "closed"
        elif isinstance(state, str):
            out["state"] = "parked"
            out["waiting_for"] = state
        else:
            out["state"] = "busy"
            out["busy_seconds"] = round(now - state, 3)
        if self.thread is not None:
            out["alive"] = self.thread.is_alive()
        return out
