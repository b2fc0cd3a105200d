"""Worker backends behind one protocol.

A :class:`WorkerHandle` owns three pipes (jobs in, results out, stop signal) and
starts :func:`runtime._worker.serve` somewhere: in an own-GIL subinterpreter, in a
thread, or in a child process. Everything else (supervision, executor dispatch)
talks to the handle only, so adding a backend means writing ``_launch``/``kill``.
The hub finishes writes that would block; the worker's messages are read by the hub
or, for an executor, by whoever holds its inbox's reader role (``reader``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
from typing import TYPE_CHECKING, Any

from .._hub import Connection, Hub
from .._wire import PIPE_SIZE, dumps, frame, make_pipe

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._inbox import Inbox

log = logging.getLogger("runtime")

__all__ = ["WorkerHandle", "create_worker", "live_workers"]

_live: set[WorkerHandle] = set()
_live_lock = threading.Lock()


def live_workers() -> list[WorkerHandle]:
    with _live_lock:
        return list(_live)


def join_all(handles: list[WorkerHandle], timeout: float) -> list[WorkerHandle]:
    """Wait (shared deadline) until each worker's thread or process is gone; returns the stragglers."""
    import time

    deadline = time.monotonic() + timeout
    return [h for h in handles if not h.join(max(0.0, deadline - time.monotonic()))]


def block_signals_in_this_thread() -> None:
    """Keep SIGINT/SIGTERM away from our helper threads so the kernel delivers them to the main thread.

    Python runs handlers only in the main thread anyway; a signal that lands on a thread
    running a subinterpreter interrupts it for nothing, and at worst races its teardown.
    """
    import signal

    if hasattr(signal, "pthread_sigmask"):
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


class WorkerHandle:
    """Main-side handle of one worker. Subclasses implement ``_launch``, ``kill`` and ``join``."""

    backend = ""

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
        self.abandoned: str | None = None  # why the owner gave up on it (see abandon())

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
        self.conn.send_bytes(frame(dumps(msg)))

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
        """Give up on a worker that cannot be killed (a subinterpreter or thread stuck in its bootstrap).

        The owner hears nothing more from it (no message, no exit callback), the main-side
        pipe ends are closed so that the worker ends by itself if its bootstrap ever
        returns (its first write fails), and it no longer counts in :func:`live_workers`.
        """
        self.abandoned = reason
        self.conn.on_message = _ignore
        self.conn.on_close = _nothing
        self._on_close = _ignore
        self._reader.remove(self.conn)
        self._close_main_ends()
        with _live_lock:
            _live.discard(self)
        log.warning("runtime: abandoned %s worker %s: %s", self.backend, self.id, reason)

    def join(self, timeout: float | None = None) -> bool:
        return self.exited.wait(timeout)

    def describe_exit(self) -> str:
        return self.exit_detail or f"{self.backend} worker {self.id} ended"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} pid={self.pid}>"


def _ignore(*args: Any) -> None:
    pass


def _nothing() -> None:
    pass


def worker_class(backend: str) -> type[WorkerHandle]:
    if backend == "subinterpreter":
        from ._interp import InterpreterWorker

        return InterpreterWorker
    if backend == "thread":
        from ._thread import ThreadWorker

        return ThreadWorker
    if backend == "process":
        from ._process import ProcessWorker

        return ProcessWorker
    raise ValueError(backend)


def create_worker(
    backend: str,
    worker_id: int,
    hub: Hub,
    on_message: Callable[[WorkerHandle, Any], None],
    on_close: Callable[[WorkerHandle], None],
    reader: Hub | Inbox | None = None,
) -> WorkerHandle:
    return worker_class(backend)(worker_id, hub, on_message, on_close, reader)
