"""What the backends share: :class:`WorkerHandle` and the registry of live and abandoned workers.

The base of ``_interp``, ``_thread`` and ``_process``, kept out of the package's
``__init__`` so that those import it without importing the package back (the package
picks among them in :func:`runtime.backends.worker_class`). See the package's docstring
for the protocol, abandoning and the exit guard.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import sys
import threading

from .._hub import Connection, Hub
from .._wire import PIPE_SIZE, frame, make_pipe, pack

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .._early import EarlyInterpreter
    from .._inbox import Inbox

log = logging.getLogger("runtime")

__all__ = ["WorkerHandle", "abandoned_workers", "join_all", "live_workers"]

_live: set[WorkerHandle] = set()
_live_lock = threading.Lock()
# Abandoned workers, kept (strongly) until their code returns: their threads still run.
_abandoned: list[WorkerHandle] = []


def live_workers() -> list[WorkerHandle]:
    """Workers started and not ended yet, abandoned ones excluded."""
    with _live_lock:
        return list(_live)


def abandoned_workers() -> list[WorkerHandle]:
    """Workers abandoned (:meth:`WorkerHandle.abandon`) whose code is still running."""
    with _live_lock:
        _abandoned[:] = [h for h in _abandoned if not h.join(0)]
        return list(_abandoned)


def join_all(handles: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
    """Wait (shared deadline) until each worker's thread or process is gone; returns the stragglers."""
    import time

    deadline = time.monotonic() + timeout
    return [h for h in handles if not h.join(max(0.0, deadline - time.monotonic()))]


class WorkerHandle:
    """Main-side handle of one worker. Subclasses implement ``_launch``, ``kill`` and ``join``."""

    backend = ""
    #: An interpreter its executor started creating ahead (``runtime._early``); the
    #: subinterpreter backend runs the worker in it instead of creating one.
    early: EarlyInterpreter | None = None

    def __init__(
        self,
        worker_id: int,
        hub: Hub,
        on_message: Callable[[WorkerHandle, Any], None],
        on_close: Callable[[WorkerHandle], None],
        reader: Hub | Inbox | None = None,
    ) -> None:
        self.id = worker_id
        self.pid: int | None = None
        self._in_r, self._in_w = make_pipe(PIPE_SIZE)
        self._out_r, self._out_w = make_pipe(PIPE_SIZE)
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_w, False)
        self.conn = Connection(
            hub,
            self._out_r,
            self._in_w,
            on_message=functools.partial(on_message, self),
            on_close=self._closed,
        )
        self._on_close = on_close
        self._hub = hub
        self._reader: Hub | Inbox = reader or hub
        self.exited = threading.Event()
        self.exit_detail: str | None = None
        self.abandoned: str | None = None  # the reason, once abandoned

    # -- lifecycle -----------------------------------------------------------------
    def start(self, spec: dict[str, Any]) -> None:
        """Launch the worker and hand it its init spec (bootstrap, main fixup, identity)."""
        with _live_lock:
            _live.add(self)
        self.send(("init", spec))
        self._reader.add(self.conn)
        try:
            self._launch()
        except BaseException:
            self._reader.remove(self.conn)
            self._close_worker_ends()
            self._close_main_ends()
            with _live_lock:
                _live.discard(self)
            self.exited.set()
            raise

    def _launch(self) -> None:
        raise NotImplementedError

    def _worker_fds(self) -> tuple[int, int, int]:
        return self._in_r, self._out_w, self._stop_r

    def _close_worker_ends(self) -> None:
        for fd in self._worker_fds():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _close_main_ends(self) -> None:
        self.conn.close_fds()
        with contextlib.suppress(OSError):
            os.close(self._stop_w)

    def _closed(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._stop_w)
        with _live_lock:
            _live.discard(self)
        self._on_close(self)

    # -- talking to it ---------------------------------------------------------------
    def send(self, msg: Any) -> None:
        self.conn.send_bytes(frame(pack(msg)))

    def send_frame(self, data: bytes) -> None:
        self.conn.send_bytes(data)

    def request_stop(self, batch: int = 0) -> None:
        """Make ``Task.stopping`` / ``runtime.stop_requested()`` true in this worker.

        ``batch=0`` stops the worker's task for good (pools); ``batch=k`` only the
        executor batch ``k`` (the flag is gone for the batches after it).
        """
        with contextlib.suppress(OSError):
            os.write(self._stop_w, struct.pack("!Q", batch))

    def exit(self) -> None:
        """Ask the worker loop to finish after the job it is running."""
        with contextlib.suppress(OSError):
            self.send(("exit",))

    def kill(self) -> bool:
        """Stop the worker now if the backend can; returns False when it cannot be pre-empted."""
        return False

    def abandon(self, reason: str) -> None:
        """Give up on a worker that cannot be pre-empted (a subinterpreter or thread stuck in code).

        Afterwards its owner hears nothing more from it (no ``on_message``/``on_close``
        callbacks), the main-side pipe ends are closed (so the worker ends by itself if
        its code ever returns: its next message meets a closed pipe, its stop flag is
        set), it leaves :func:`live_workers` for :func:`abandoned_workers`, and the
        interpreter's exit neither waits for it nor crashes on it (see the module's
        docstring). A process worker is killed instead. Logged at WARNING with ``reason``.
        """
        with _live_lock:
            if self.abandoned is not None:
                return
            self.abandoned = reason
            _live.discard(self)
            if self.backend != "process":
                _abandoned.append(self)
        if self.backend == "subinterpreter":
            _watch_exit_status()
        # No callback may reach the owner from now on; the reader may be handling one of
        # this worker's messages right now, so owners also ignore events of abandoned workers.
        self.conn.on_message = _ignore_message
        self._on_close = _ignore_close
        if self.exit_detail is None:
            self.exit_detail = f"{self.backend} worker {self.id} was abandoned: {reason}"
        log.warning(
            "runtime: abandoning %s worker %d: %s; it cannot be pre-empted and keeps running "
            "until its code returns (it then ends by itself)",
            self.backend,
            self.id,
            reason,
        )
        if self.backend == "process" and self.kill():
            # Only a process can be stopped safely; an asynchronous exception in a thread
            # can land anywhere (an import half done, a finally block) and is not raised.
            self.join(5.0)  # reap it
        # The reader closes the pipe ends itself (on its own thread, so no fd it is
        # reading can be closed and reused underneath it); a hub that has ended cannot.
        reader = self._reader
        hub_reads = isinstance(reader, Hub) or not getattr(reader, "nested", True)
        with contextlib.suppress(Exception):
            reader.remove(self.conn)
        if not hub_reads or self._hub._closed:
            self.conn.close_fds()
        with contextlib.suppress(OSError):
            os.close(self._stop_w)

    def join(self, timeout: float | None = None) -> bool:
        return self.exited.wait(timeout)

    def describe_exit(self) -> str:
        return self.exit_detail or f"{self.backend} worker {self.id} ended"

    @property
    def native_thread_id(self) -> int | None:
        """The OS id of the thread that runs this worker in this process (None: a child
        process, or not started). For CPU accounting (``runtime.bench``)."""
        thread = getattr(self, "_thread", None)
        return None if thread is None else thread.native_id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} pid={self.pid}>"


def _ignore_message(message: Any) -> None:
    """The ``on_message`` of an abandoned worker."""


def _ignore_close(worker: WorkerHandle) -> None:
    """The ``on_close`` of an abandoned worker."""


# -- the exit guard's part (the guard itself: runtime.backends) -----------------------------
# Python 3.12 only: the status the main thread asked for with sys.exit(). An atexit
# handler cannot see it otherwise (the C runtime keeps it in a local), and os._exit
# needs it. Filled in place: the package's exit guard reads this same list.
_exit_request: list[Any] = []


def _record_exit(original: Any) -> Any:
    @functools.wraps(original)
    def exit(status: Any = None, /) -> Any:
        if threading.current_thread() is threading.main_thread():
            _exit_request[:] = [status]
        return original(status)

    exit.__runtime_wrapped__ = True  # type: ignore[attr-defined]
    return exit


def _watch_exit_status() -> None:
    """Python 3.12, from the first abandoned subinterpreter on: remember sys.exit()'s status
    (the exit guard may have to end the process itself). Nothing is wrapped before."""
    if sys.version_info < (3, 13) and not getattr(sys.exit, "__runtime_wrapped__", False):
        sys.exit = _record_exit(sys.exit)
