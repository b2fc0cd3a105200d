"""Subinterpreter backend: each worker is an own-GIL interpreter run by a thread of ours.

The low-level driver (one code path for 3.12 to 3.15) lives in ``runtime._early``, so
that a new executor can start creating its interpreters before it loads this package.
"""

from __future__ import annotations

import threading

from .._early import (
    block_signals_in_this_thread,
    boot_interpreter,
    destroy_interpreter,
    run_in_interpreter,
    worker_prelude,
)
from ._handle import WorkerHandle

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class InterpreterWorker(WorkerHandle):
    backend = "subinterpreter"
    _thread: threading.Thread | None = None
    interp: Any = None

    def _launch(self) -> None:
        inbox, outbox, stop = self._worker_fds()
        self._code = f"from runtime._worker import serve\nserve({inbox}, {outbox}, {stop})\n"
        name = f"runtime-interp-worker-{self.id}"
        early, self.early = self.early, None
        if early is not None:  # its interpreter exists (or is being created) and imported us
            self._thread = early.thread
            early.adopt(self._serve, name)
            return
        self._thread = threading.Thread(target=self._body, name=name, daemon=True)
        self._thread.start()

    def _body(self) -> None:
        # Created on the worker's own thread so that N workers start in parallel.
        block_signals_in_this_thread()
        interp, failure = boot_interpreter(worker_prelude())
        self._serve(interp, failure)

    def _serve(self, interp: Any, failure: BaseException | str | None) -> None:
        """Run the worker loop in ``interp`` (this thread), then destroy it.

        ``failure``: why the interpreter could not be created (an exception), or why the
        worker module did not import in it (its formatted traceback).
        """
        self.interp = interp
        if interp is None:
            self.exit_detail = f"could not create a subinterpreter: {failure}"
            self._close_worker_ends()
            self.exited.set()
            return
        try:
            if failure is not None:
                self.exit_detail = f"subinterpreter worker {self.id} ended: {failure}"
            else:
                failed = run_in_interpreter(interp, self._code)
                if failed is not None:
                    detail = getattr(failed, "formatted", None) or str(failed)
                    self.exit_detail = f"subinterpreter worker {self.id} ended: {detail}"
        except BaseException as exc:
            self.exit_detail = f"subinterpreter worker {self.id} could not run: {exc}"
        finally:
            # Destroy first, then close our pipe ends: the main side learns that the worker
            # is gone from the end-of-file, and by then no interpreter of ours is left for
            # the main interpreter's finalization to trip over (it segfaults on 3.13.0 when
            # it meets one that a daemon thread is still tearing down).
            destroy_interpreter(interp)
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
