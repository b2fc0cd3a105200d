"""Worker backends behind one protocol.

A :class:`WorkerHandle` owns three pipes (jobs in, results out, stop signal) and
starts :func:`runtime._worker.serve` somewhere: in an own-GIL subinterpreter, in a
thread, or in a child process. Everything else (supervision, executor dispatch)
talks to the handle only, so adding a backend means writing ``_launch``/``kill``.
The handle and the registry of live workers live in ``_handle``, which the backends
(``_interp``, ``_thread``, ``_process``) build on; this package picks among them.
The hub finishes writes that would block; the worker's messages are read by the hub
or, for an executor, by whoever holds its inbox's reader role (``reader``).

Abandoning. A subinterpreter or thread worker stuck in its bootstrap cannot be
pre-empted, so its owner *abandons* it (:meth:`WorkerHandle.abandon`): the owner hears
nothing more from it and the main-side pipe ends close, so the worker ends by itself if
its code ever returns. What this module must then prevent is the interpreter's exit
crashing on it: Python 3.12 aborts (``Fatal Python error: PyInterpreterState_Delete:
remaining subinterpreters``, status 134) when any subinterpreter is left at exit, and
one still running cannot be destroyed. :func:`_exit_guard`, registered when this module
is imported (so it runs after the atexit handlers registered later, the pools' and
executors' among them), ends such a process with ``os._exit`` after flushing, with the
exit status the program asked for. Python 3.13+ exits cleanly with a running abandoned
subinterpreter (measured on 3.13.0, 3.13.18, 3.14.10, 3.15.2), so there the guard only
silences 3.14+'s "remaining subinterpreters" warning for interpreters we abandoned and
logged ourselves; the normal exit keeps every handler and the exact status.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys

from ._handle import (
    WorkerHandle,
    _exit_request,
    abandoned_workers,
    join_all,
    live_workers,
)

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .._hub import Hub
    from .._inbox import Inbox

log = logging.getLogger("runtime")

__all__ = [
    "WorkerHandle",
    "abandoned_workers",
    "create_worker",
    "join_all",
    "live_workers",
]


# -- the exit guard ----------------------------------------------------------------------
# _exit_request: the status the main thread asked for with sys.exit() (Python 3.12; filled
# by WorkerHandle.abandon's sys.exit wrapper, runtime.backends._handle).
def _exit_status() -> int:
    """The status the process would have exited with (Python 3.12, best effort).

    The last ``sys.exit(status)`` of the main thread, as Python turns it into a status;
    else 1 after an uncaught exception (``sys.last_exc``, set just before the traceback is
    printed); else 0. A ``raise SystemExit(n)`` that bypasses ``sys.exit`` reads as 0.
    """
    if _exit_request:
        status = _exit_request[0]
        if status is None:
            return 0
        if isinstance(status, int):
            return status & 0xFF
        with contextlib.suppress(Exception):
            print(status, file=sys.stderr)
        return 1
    if getattr(sys, "last_exc", None) is not None and not hasattr(sys, "ps1"):
        return 1
    return 0


def _exit_guard() -> None:
    """At exit: keep abandoned subinterpreters from crashing (3.12) or warning (3.14+)."""
    running = [h for h in abandoned_workers() if h.backend == "subinterpreter"]
    if not running:
        return
    if sys.version_info >= (3, 13):
        import warnings

        # CPython 3.14+ warns about every interpreter left at exit; ours were logged when
        # they were abandoned, and they cannot be closed while their code runs.
        warnings.filterwarnings(
            "ignore", message="remaining subinterpreters", category=RuntimeWarning
        )
        return
    status = _exit_status()  # pragma: no cover - the 3.12 CI job
    log.warning(
        "runtime: %d abandoned subinterpreter worker(s) still running at exit; Python 3.12 "
        "would abort on them, so the process ends now with status %d",
        len(running),
        status,
    )
    # logging's own atexit handler was registered before this one and would run after it.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(status)


atexit.register(_exit_guard)


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
