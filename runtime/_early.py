"""What a new executor does before it loads the rest of the package: start its interpreters.

In a fresh process the first ``runtime.Executor(...)`` pays for importing the
executor's machinery (hub, inbox, pickling, metrics: tens of milliseconds on a small
machine), and each subinterpreter worker pays for its own creation (about 10 ms).
Done one after the other, the first result waits for both. Creating an own-GIL
interpreter runs outside the main interpreter's GIL, so the constructor starts the
threads that create its interpreters first (:func:`start_interpreters`), and loads
its machinery while they are being created; each new interpreter imports the worker
module meanwhile too, and then waits until its executor hands it its pipes
(:meth:`EarlyInterpreter.adopt`).

This module and the worker module are all the constructor loads before that, so
only the standard library's ``concurrent.futures`` comes first. The worker-count
rules and the CPU count live here for the same reason.

Creating an interpreter, and importing the worker module in it, still needs the
*main* interpreter's GIL now and then: about fifteen times per creation (CPython
copies single-phase extension modules through the main interpreter, among other
things). While a thread of the main interpreter runs Python code (the constructor
loading the package, an event loop, the application), each of those waits up to the
switch interval (5 ms): measured here on 3.13 and 3.14, a creation beside a busy main
thread took 72-80 ms instead of 10, and the worker import 13 ms instead of 2. So while
our threads create interpreters and import the worker module in them, the switch
interval is lowered (:class:`FastSwitching`), and restored when the last is done.
"""

from __future__ import annotations

import math
import os
import sys
import threading

TYPE_CHECKING = False  # not typing's: this module loads before the rest on purpose
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._errors import ConfigurationError

__all__ = [
    "AUTO_SUBINTERPRETERS",
    "DEFAULT_BOOT_TIMEOUT",
    "EarlyInterpreter",
    "FastSwitching",
    "block_signals_in_this_thread",
    "boot_interpreter",
    "create_interpreter",
    "destroy_interpreter",
    "fast_switching",
    "free_threaded_build",
    "guard_main_import",
    "interpreters_leak",
    "resolve_workers",
    "run_in_interpreter",
    "start_interpreters",
    "usable_cpu_count",
    "worker_prelude",
]

#: Seconds a worker's bootstrap may take (``boot_timeout``'s default everywhere).
DEFAULT_BOOT_TIMEOUT = 60.0


def _config_error(message: str) -> ConfigurationError:
    # The errors load with the first one: a new executor's first steps import nothing more.
    from ._errors import ConfigurationError

    return ConfigurationError(message)


def guard_main_import(what: str) -> None:
    """Refuse to build a pool or executor while a worker re-imports the main script."""
    # Only a worker re-imports a main script, and every worker runs the worker module:
    # where it is not loaded yet, nothing is being re-imported (and it loads later).
    worker = sys.modules.get("runtime._worker")
    if worker is not None and worker.importing_main():
        raise _config_error(
            f"{'an' if what[0] in 'AEIOU' else 'a'} {what} was created while a worker re-imported "
            "the main script; put the code that creates it under `if __name__ == '__main__':`"
        )


# ---------------------------------------------------------------------- CPUs and counts
def _cgroup_cpu_limit() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, int(int(quota) // int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cpu_count() -> int:
    """CPUs this process may run on: affinity mask, then cgroup quota, at least 1."""
    count: int | None = None
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        count = process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    if not count:
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, limit)
    return max(1, count)


def resolve_workers(workers: int | float, cpu_count: int) -> int:
    """An int >= 1 is a count; a float in (0, 1] is a fraction of the usable CPUs (at least 1)."""
    if isinstance(workers, bool):
        raise _config_error(f"workers must be an int >= 1 or a float in (0, 1], got {workers!r}")
    if isinstance(workers, int):
        if workers < 1:
            raise _config_error(f"workers must be >= 1, got {workers}")
        return workers
    if isinstance(workers, float):
        if not (0.0 < workers <= 1.0) or math.isnan(workers):
            raise _config_error(
                f"a fractional worker count must be in (0, 1] (a share of the {cpu_count} usable "
                f"CPUs), got {workers}; pass an int for an absolute count"
            )
        return max(1, math.floor(cpu_count * workers + 1e-9))
    raise _config_error(f"workers must be an int >= 1 or a float in (0, 1], got {workers!r}")


def interpreters_leak(backend: str, version: tuple[int, ...] | None = None) -> bool:
    """Whether each created-and-destroyed worker of ``backend`` leaks memory in this process.

    CPython before 3.14 leaks about 3-4 MB of RSS per own-GIL interpreter it creates and
    destroys (2.6 MB on 3.12.1, 3.1 on 3.13.0, 4.0 on 3.13.18; 0.00 on 3.14.10 and 3.15.2).
    """
    version = version or sys.version_info[:2]
    return backend == "subinterpreter" and tuple(version) < (3, 14)


# ---------------------------------------------------------------------- the low-level driver
# One code path for every supported version (the PEP 734 queue polls every 10 ms, so
# data goes through our pipes):
# * 3.13+: ``_interpreters.create()`` (isolated config, own GIL) + ``run_string``.
# * 3.12: ``_xxsubinterpreters.create(isolated=True)`` + ``run_string``; the compiled
#   ``interpreters-3-12`` backport segfaults at import on 3.12.1.
try:
    if sys.version_info >= (3, 13):
        import _interpreters as _low
    else:  # pragma: no cover - exercised by the 3.12 CI job
        import _xxsubinterpreters as _low
except ImportError:  # pragma: no cover - a build without subinterpreters
    _low = None  # type: ignore[assignment]


#: What a refused creation raises: InterpreterError on 3.13+ (not a RuntimeError there).
_REFUSED: tuple[type[BaseException], ...] = (
    RuntimeError,
    *((_low.InterpreterError,) if hasattr(_low, "InterpreterError") else ()),
)


def _create() -> Any:
    if sys.version_info >= (3, 13):
        return _low.create()
    return _low.create(isolated=True)  # pragma: no cover - 3.12


def run_in_interpreter(interp: Any, code: str) -> Any:
    """Run ``code`` in ``interp``; None, or a description of the exception it raised."""
    if sys.version_info >= (3, 13):
        return _low.run_string(interp, code)
    try:  # pragma: no cover - 3.12
        return _low.run_string(interp, code)
    except _low.RunFailedError as exc:  # pragma: no cover - 3.12
        return exc


# ---------------------------------------------------------------------- the switch interval
#: The main interpreter's switch interval (seconds) while interpreters are being created.
FAST_SWITCH_INTERVAL = 1e-4
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None  # the interval to restore, when we lowered it


class FastSwitching:
    """Lower the switch interval while any thread is inside one of these blocks (see the module's doc).

    Reentrant across threads: the first block in lowers it, the last one out restores
    it, unless the program has set another interval meanwhile (then it is left alone).
    Only our own, bounded steps run inside (creating an interpreter, importing the
    worker module, destroying an interpreter), never a user's bootstrap or task.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        global _switch_users, _switch_saved
        with _switch_lock:
            _switch_users += 1
            if _switch_users == 1:
                current = sys.getswitchinterval()
                if current > FAST_SWITCH_INTERVAL * 1.5:
                    _switch_saved = current
                    sys.setswitchinterval(FAST_SWITCH_INTERVAL)

    def __exit__(self, *exc_info: object) -> None:
        global _switch_users, _switch_saved
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0 and _switch_saved is not None:
                if abs(sys.getswitchinterval() - FAST_SWITCH_INTERVAL) < 1e-6:
                    sys.setswitchinterval(_switch_saved)
                _switch_saved = None


fast_switching = FastSwitching()


def create_interpreter(attempts: int = 6) -> Any:
    """Create an own-GIL interpreter, trying again after a moment if CPython refuses.

    Seen on 3.12.1 and 3.13.0 under load: ``interpreter creation failed`` while other
    interpreters were being created and destroyed. The tries back off from 10 ms,
    doubling (310 ms in all). On 3.13+ the refusal is an ``InterpreterError``, which is
    not a ``RuntimeError``: until this was caught too, 3.13+ never tried again.
    """
    import time

    for attempt in range(1, attempts):
        try:
            return _create()
        except _REFUSED:
            time.sleep(0.01 * 2 ** (attempt - 1))
    try:
        return _create()  # the last try: its error is the worker's
    except _REFUSED as exc:
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            raise
        raise RuntimeError(f"{exc} ({type(cause).__name__}: {cause})") from cause


def destroy_interpreter(interp: Any) -> None:
    try:
        with fast_switching:
            _low.destroy(interp)
    except Exception as exc:  # still running, already gone
        import logging

        logging.getLogger("runtime").debug("could not destroy interpreter %s: %s", interp, exc)


def block_signals_in_this_thread() -> None:
    """Keep SIGINT/SIGTERM away from our helper threads so the kernel delivers them to the main thread.

    Python runs handlers only in the main thread anyway; a signal that lands on a thread
    running a subinterpreter interrupts it for nothing, and at worst races its teardown.
    """
    # _signal, not signal: signal's enums cost a new executor's first thread 0.4-0.7 ms
    # before it can start creating its interpreter.
    import _signal  # type: ignore[import-not-found, unused-ignore]  # no stubs: signal.py is its front

    if hasattr(_signal, "pthread_sigmask"):
        try:  # noqa: SIM105 - contextlib is not loaded yet on this path
            _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM})
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------------- created ahead
def worker_prelude() -> str:
    """What a new worker interpreter runs first: this process's path and argv, the worker module."""
    return (
        f"import sys\nsys.path[:] = {list(sys.path)!r}\nsys.argv[:] = {list(sys.argv)!r}\n"
        "import runtime._worker\n"
    )


class EarlyInterpreter:
    """A thread creating an interpreter (and importing the worker module in it) before it has a worker.

    :meth:`adopt` hands it the rest of a worker's life (``body(interp, failure)``,
    run in this same thread); :meth:`discard` ends it instead (the constructor
    failed), destroying the interpreter.
    """

    __slots__ = ("_body", "_go", "failure", "interp", "thread")

    def __init__(self, prelude: str) -> None:
        self.interp: Any = None
        self.failure: BaseException | str | None = None
        self._body: Callable[[Any, BaseException | str | None], None] | None = None
        self._go = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(prelude,), name="runtime-interp-worker-early", daemon=True
        )
        self.thread.start()

    def _run(self, prelude: str) -> None:
        block_signals_in_this_thread()
        self.interp, self.failure = boot_interpreter(prelude)
        self._go.wait()
        body = self._body
        if body is None:
            if self.interp is not None:
                destroy_interpreter(self.interp)
            return
        body(self.interp, self.failure)

    def adopt(self, body: Callable[[Any, BaseException | str | None], None], name: str) -> None:
        """Run ``body(interp, failure)`` in this thread: ``failure`` is None, or why creation failed."""
        self.thread.name = name
        self._body = body
        self._go.set()

    def discard(self) -> None:
        """Nobody will use it: destroy the interpreter, and wait until its thread has ended.

        Waiting matters: a process that exits while an interpreter is still being
        created (the constructor failed, the program gave up) crashes in finalization.
        """
        self._body = None
        self._go.set()
        self.thread.join(30.0)


def boot_interpreter(prelude: str) -> tuple[Any, BaseException | str | None]:
    """Create an interpreter and run ``prelude`` in it (this thread), switching fast meanwhile.

    Returns ``(interp, None)``; ``(None, exception)`` when it could not be created;
    ``(interp, traceback text)`` when the prelude raised (the worker module would not import).
    """
    with fast_switching:
        try:
            interp = create_interpreter()
        except BaseException as exc:
            return None, exc
        try:
            failed = run_in_interpreter(interp, prelude)
        except BaseException as exc:
            failed = exc
    if failed is not None:
        return interp, getattr(failed, "formatted", None) or str(failed)
    return interp, None


def free_threaded_build() -> bool | None:
    """Whether this is a free-threaded build, read from ``sys.abiflags``; None where that is
    missing (Windows before 3.14), for the caller to decide."""
    abiflags = getattr(sys, "abiflags", None)
    return None if abiflags is None else "t" in abiflags


#: Why ``backend="auto"`` means subinterpreters when :func:`start_interpreters` started them.
AUTO_SUBINTERPRETERS = "own-GIL subinterpreters available on {}.{} (a build with the GIL)".format(
    *sys.version_info
)


def start_interpreters(count: int, backend: str, injected: bool) -> list[EarlyInterpreter]:
    """Start creating ``count`` interpreters if ``backend`` will surely be subinterpreters.

    ``backend`` is the name passed to the constructor. "auto" counts only where its
    answer does not depend on anything but the build: a default (GIL) build of 3.13+
    with the low-level module. Injected capabilities (tests) start nothing early.
    """
    if injected or _low is None or sys.version_info < (3, 13):
        return []
    if backend == "auto":
        if free_threaded_build() is not False:  # free-threaded, or unknown: decided later
            return []
    elif backend != "subinterpreter":
        return []
    prelude = worker_prelude()
    return [EarlyInterpreter(prelude) for _ in range(count)]
