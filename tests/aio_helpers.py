"""Worker-side functions for tests/test_aio.py.

They run inside subinterpreters, threads and child processes, so they live in an
importable module and import nothing that a 3.12 own-GIL interpreter cannot load
(no asyncio, anyio, ssl or hashlib).
"""

from __future__ import annotations

import os

import runtime


class AioBoom(Exception):
    """A user exception that must come back with its own type and attributes."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def square(x: int) -> int:
    return x * x


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fail(kind: str, value: int = 0) -> None:
    if kind == "value":
        raise ValueError(f"bad value {value}")
    if kind == "key":
        raise KeyError(value)
    raise AioBoom(value)


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise AioBoom(x)
    return x


def hold(fifo: str) -> str:
    """Block until the test writes a line into ``fifo`` (a named pipe): no sleeping, no polling."""
    with open(fifo) as f:
        return f.read()


def append(path: str, text: str) -> str:
    with open(path, "a") as f:
        f.write(text)
    return text


def announce_then_wait_for_stop(started_fifo: str, outcome: str, limit: float) -> bool:
    """Tell the test we are running, then wait for the stop flag (at most ``limit`` s).

    The outcome is written to a file because an abandoned job's result reaches nobody.
    """
    with open(started_fifo, "w") as f:
        f.write("started")
    stopped = runtime.stop_requested(timeout=limit)
    with open(outcome, "w") as f:
        f.write("stopped" if stopped else "ran to the end")
    return stopped


def worker_backend() -> str:
    info = runtime.current_worker()
    return "main" if info is None else info.backend


def boot_fails() -> None:
    raise AioBoom(7)


class QuickTask(runtime.Task):
    """Returns at once: its job is finished."""

    def run(self) -> None:
        return None


class UntilStopped(runtime.Task):
    """Runs until the pool asks it to stop, then writes a marker."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def run(self) -> None:
        while not self.wait_stopping(30):
            pass
        with open(os.path.join(self.marker_dir, f"stopped-{self.worker.id}"), "w") as f:
            f.write("stopped")
