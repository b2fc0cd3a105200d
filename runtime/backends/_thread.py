"""Thread backend: the worker loop in a thread of the main interpreter.

Parallel on a free-threaded build with the GIL off; elsewhere it serialises
Python code but still suits I/O-bound tasks and code that cannot leave the
main interpreter. Per-worker state is the thread-local context the bootstrap
returned, never a shared global.
"""

from __future__ import annotations

import threading

from .._early import block_signals_in_this_thread
from ._handle import WorkerHandle


class ThreadWorker(WorkerHandle):
    backend = "thread"
    _thread: threading.Thread | None = None

    def _launch(self) -> None:
        self._thread = threading.Thread(
            target=self._body, name=f"runtime-thread-worker-{self.id}", daemon=True
        )
        self._thread.start()

    def _body(self) -> None:
        block_signals_in_this_thread()
        from .._worker import serve

        try:
            serve(*self._worker_fds())
        except SystemExit:
            self.exit_detail = f"thread worker {self.id} ended: its task raised SystemExit"
        except BaseException as exc:
            self.exit_detail = f"thread worker {self.id} ended: {type(exc).__name__}: {exc}"
        finally:
            self._close_worker_ends()
            self.exited.set()

    def kill(self) -> bool:
        """Raise SystemExit in the thread at its next bytecode boundary (cooperative at best)."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return True
        import ctypes  # only here: a few milliseconds of every new thread executor otherwise

        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)
        )
        return False

    def join(self, timeout: float | None = None) -> bool:
        # Wait for the thread itself, not just its "exited" flag: a thread still unwinding
        # after destroying its interpreter must not overlap the main interpreter's shutdown.
        thread = self._thread
        if thread is None:
            return self.exited.wait(timeout)
        thread.join(timeout)
        return not thread.is_alive()
