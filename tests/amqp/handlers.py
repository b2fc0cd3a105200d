"""Handlers the amqp tests run inside workers. No pika here: subinterpreters import this module.

Each handled message appends one line to ``<dir>/<pid>.log`` (the directory comes in the
``out`` header): ``O_APPEND`` writes of a short line are atomic, so every worker of every
process can share the file.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import runtime
from runtime.amqp import Message


def _record(message: Message, extra: str = "") -> None:
    out = message.headers["out"]
    line = f"{message.body.decode()} {message.attempt} {int(message.redelivered)}{extra}\n".encode()
    fd = os.open(
        os.path.join(out, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
    )
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def record(message: Message) -> None:
    _record(message)


def slow_record(message: Message) -> None:
    time.sleep(float(message.headers.get("sleep", 0.002)))
    _record(message)


def fail_always(message: Message) -> None:
    _record(message)
    raise ValueError(f"cannot handle {message.body.decode()}")


def fail_twice(message: Message) -> None:
    _record(message)
    if message.attempt < 3:
        raise RuntimeError(f"transient failure on attempt {message.attempt}")


def needs_json(message: Message) -> None:
    data = message.json()
    _record(Message(str(data["id"]).encode(), headers=message.headers, attempt=message.attempt))


def burn(message: Message) -> None:
    """Pure-Python CPU work for ``seconds`` (holds the worker's GIL the whole time)."""
    end = time.perf_counter() + float(message.headers["seconds"])
    n = 0
    while time.perf_counter() < end:
        for i in range(1000):
            n += i * i
    _record(message)


def wait_for_file(message: Message) -> None:
    """Block until the file named in the ``gate`` header exists, then record."""
    gate = message.headers["gate"]
    end = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < end:
        time.sleep(0.01)
    _record(message)


def noop(message: Message) -> None:
    pass


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def cpu(message: Message) -> None:
    fib(int(message.body or b"20"))


class Recorder(runtime.Task):
    """One instance per worker: records which instance handled each message."""

    instances = 0
    _lock = threading.Lock()

    def __init__(self) -> None:
        with Recorder._lock:
            Recorder.instances += 1
        self.handled: list[Any] = []

    def handle(self, message: Message) -> None:
        self.handled.append(message.body)
        worker = self.worker.id if getattr(self, "worker", None) is not None else 0
        _record(message, f" {worker} {id(self)}")


def record_failure(failure: runtime.Failure) -> None:
    """An ``--on-failure`` hook (runs in the consume process's main interpreter)."""
    with open(os.environ["RUNTIME_TEST_FAILURES"], "a") as fh:
        fh.write(failure.to_json() + "\n")


class Halt(BaseException):
    """Not an Exception, so it escapes the handler wrapper and is decoded in the caller.

    Its constructor does not round-trip (the default unpickling would call Halt(message)).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code


def halt(message: Message) -> None:
    _record(message)
    raise Halt(503, f"halted on {message.body.decode()}")
