"""Subinterpreter backend: each worker is an own-GIL interpreter run by a thread of ours.

Drivers per Python version, all on the low-level module so one code path serves
them (the PEP 734 queue polls every 10 ms, so data goes through our pipes):

* 3.13 / 3.14: ``_interpreters.create()`` (isolated config, own GIL) + ``run_string``.
* 3.12: ``_xxsubinterpreters.create(isolated=True)`` + ``run_string``; the compiled
  ``interpreters-3-12`` backport segfaults at import on 3.12.1.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from . import WorkerHandle, block_signals_in_this_thread

if sys.version_info >= (3, 13):
    import _interpreters as _low

    def _create() -> Any:
        return _low.create()

    def _run(interp: Any, code: str) -> Any:
        return _low.run_string(interp, code)

else:  # pragma: no cover - exercised by the 3.12 CI job
    import _xxsubinterpreters as _low

    def _create() -> Any:
        return _low.create(isolated=True)

    def _run(interp: Any, code: str) -> Any:
        try:
            return _low.run_string(interp, code)
        except _low.RunFailedError as exc:
            return exc


def _create_retrying(attempts: int = 3) -> Any:
    """Create an interpreter, trying again after a moment if CPython refuses.

    Seen once on 3.12.1 under load: ``RuntimeError: interpreter creation failed`` while
    other workers' interpreters were being created and destroyed; the next try works.
    """
    import time

    for attempt in range(1, attempts):
        try:
            return _create()
        except RuntimeError:
            time.sleep(0.01 * attempt)
    return _create()  # the last try: its error is the worker's


def _destroy(interp: Any) -> None:
    try:
        _low.destroy(interp)
    except Exception as exc:  # still running, already gone
        import logging

        logging.getLogger("runtime").debug("could not destroy interpreter %s: %s", interp, exc)


class InterpreterWorker(WorkerHandle):
    backend = "subinterpreter"
    _thread: threading.Thread | None = None
    interp: Any = None

    def _launch(self) -> None:
        inbox, outbox, stop = self._worker_fds()
        self._code = (
            f"import sys\nsys.path[:] = {list(sys.path)!r}\nsys.argv[:] = {list(sys.argv)!r}\n"
            f"from runtime._worker import serve\nserve({inbox}, {outbox}, {stop})\n"
        )
        self._thread = threading.Thread(
            target=self._body, name=f"runtime-interp-worker-{self.id}", daemon=True
        )
        self._thread.start()

    def _body(self) -> None:
        # Created on the worker's own thread so that N workers start in parallel.
        block_signals_in_this_thread()
        try:
            self.interp = _create_retrying()
        except BaseException as exc:
            self.exit_detail = f"could not create a subinterpreter: {exc}"
            self._close_worker_ends()
            self.exited.set()
            return
        try:
            failure = _run(self.interp, self._code)
            if failure is not None:
                detail = getattr(failure, "formatted", None) or str(failure)
                self.exit_detail = f"subinterpreter worker {self.id} ended: {detail}"
        except BaseException as exc:
            self.exit_detail = f"subinterpreter worker {self.id} could not run: {exc}"
        finally:
            # Destroy first, then close our pipe ends: the main side learns that the worker
            # is gone from the end-of-file, and by then no interpreter of ours is left for
            # the main interpreter's finalization to trip over (it segfaults on 3.13.0 when
            # it meets one that a daemon thread is still tearing down).
            _destroy(self.interp)
            self._close_worker_ends()
            self.exited.set()

    def join(self, timeout: float | None = None) -> bool:
        # Wait for the thread itself, not just its "exited" flag: a thread still unwinding
        # after destroying its interpreter must not overlap the main interpreter's shutdown.
        thread = self._thread
        if thread is None:
            return self.exited.wait(timeout)
        thread.join(timeout)
        return not thread.is_alive()
