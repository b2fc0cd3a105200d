"""Tasks and bootstraps for the lifecycle tests (boot timeouts, recycling, crash loops).

Imported inside workers of every backend, so only modules safe in a Python 3.12
subinterpreter. Hung bootstraps wait on a FIFO named by ``RUNTIME_TEST_HANG_GATE``
that the test holds open and writes to at teardown, so no worker outlives its test.
"""

from __future__ import annotations

import os
import time

import runtime
from tests.helpers.tasks import record


def _wait_gate() -> None:
    fd = os.open(os.environ["RUNTIME_TEST_HANG_GATE"], os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)


def hang() -> None:
    """A bootstrap that hangs until the test opens the gate."""
    _wait_gate()


def hang_after_first(worker: runtime.WorkerInfo) -> None:
    """Boots the slot's first worker; every replacement hangs until the gate opens."""
    if worker.attempt > 1:
        _wait_gate()


def note_boot(worker: runtime.WorkerInfo) -> None:
    """Records ``boot|<worker id>`` in the file named by ``RUNTIME_TEST_BOOT_LOG``."""
    record(os.environ["RUNTIME_TEST_BOOT_LOG"], f"boot|{worker.id}")


class Fail(runtime.Task):
    """Records its worker, optionally sleeps, then raises."""

    def __init__(self, path: str | None = None, sleep: float = 0.0) -> None:
        self.path = path
        self.sleep = sleep

    def run(self) -> None:
        if self.path:
            record(self.path, f"{self.worker.attempt}|{self.worker.id}")
        if self.sleep:
            time.sleep(self.sleep)
        raise ValueError(f"fails on attempt {self.worker.attempt}")


class FailWhenReleased(runtime.Task):
    """Raises once the test sends on ``gate`` (orders the test's actions before the failure)."""

    def __init__(self, gate: runtime.Channel, path: str) -> None:
        self.gate = gate
        self.path = path

    def run(self) -> None:
        record(self.path, f"{self.worker.attempt}|{self.worker.id}")
        self.gate.recv(timeout=30)
        raise ValueError("released")


class KeepThenFail(runtime.Task):
    """Records its worker, keeps ``megabytes`` in the bootstrap's context, then raises."""

    def __init__(self, path: str, megabytes: int) -> None:
        self.path = path
        self.megabytes = megabytes

    def run(self) -> None:
        record(self.path, f"{self.worker.attempt}|{self.worker.id}")
        self.context["keep"].append(b"k" * (self.megabytes << 20))
        raise ValueError("fails after keeping memory")
