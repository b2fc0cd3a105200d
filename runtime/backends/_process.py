"""Process backend: the worker loop in a fresh child interpreter (spawn-style exec).

The only backend that survives a segfaulting extension and the only one whose
running task can be killed. The child inherits exactly its three pipe ends,
ignores SIGINT (the parent drives shutdown) and rebuilds ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from ._handle import WorkerHandle


class ProcessWorker(WorkerHandle):
    backend = "process"
    proc: subprocess.Popen[bytes] | None = None

    def _launch(self) -> None:
        inbox, outbox, stop = self._worker_fds()
        code = (
            "import signal, sys\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            f"sys.path[:] = {list(sys.path)!r}\n"
            f"sys.argv[:] = {list(sys.argv)!r}\n"
            "from runtime._worker import serve\n"
            f"serve({inbox}, {outbox}, {stop})\n"
        )
        from multiprocessing import process

        env = dict(os.environ)
        env["RUNTIME_MP_AUTHKEY"] = process.current_process().authkey.hex()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=(inbox, outbox, stop), close_fds=True, env=env
        )
        self.pid = self.proc.pid
        self._close_worker_ends()

    def _closed(self) -> None:
        proc = self.proc
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            if code is not None and code != 0:
                if code < 0:
                    with contextlib.suppress(ValueError):
                        name = signal.Signals(-code).name
                        self.exit_detail = (
                            f"process worker {self.id} (pid {proc.pid}) was killed by {name}"
                        )
                if not self.exit_detail:
                    self.exit_detail = (
                        f"process worker {self.id} (pid {proc.pid}) exited with code {code}"
                    )
        self.exited.set()
        super()._closed()

    def kill(self) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        return True

    def join(self, timeout: float | None = None) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
