"""Tasks, jobs, bootstraps and message handlers that the fault-injection suite sends to workers.

Imported inside workers of every backend (Python 3.12 subinterpreters included) and by
``parallel-runtime consume`` subprocesses, so it imports only modules that are safe
everywhere and never pika. Whatever a worker must tell the test travels through a
:class:`runtime.Channel` or an ``O_APPEND`` file: both are shared by every backend.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import runtime

if TYPE_CHECKING:
    from runtime.amqp import Message

_RAISES: dict[str, type[BaseException]] = {
    "ValueError": ValueError,
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
}


def append_line(path: str, line: str) -> None:
    """Append one line atomically (``O_APPEND`` writes of a short line never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class RaiseOnCue(runtime.Task):
    """Wait for a token on ``gate``, tell ``started`` which attempt this is, then raise.

    The test hands out one token per failure it wants, so it controls exactly when
    each attempt fails and can check the pool between failures.
    """

    def __init__(self, gate: runtime.Channel, exc: str = "ValueError") -> None:
        self.gate = gate
        self.exc = exc

    def run(self) -> None:
        token = self.gate.recv(timeout=60)
        if token == "return":
            return
        raise _RAISES[self.exc](f"injected {self.exc} on attempt {self.worker.attempt}")


class RaiseOnce(runtime.Task):
    """Raise ``exc`` on the first attempt, record every attempt to ``path``, return afterwards."""

    def __init__(self, path: str, exc: str) -> None:
        self.path = path
        self.exc = exc

    def run(self) -> None:
        append_line(self.path, f"{self.worker.attempt} {self.worker.id} {os.getpid()}")
        if self.worker.attempt == 1:
            raise _RAISES[self.exc](f"injected {self.exc}")


class AnnounceThenWait(runtime.Task):
    """Append ``attempt pid worker`` to ``path``, then run until stopped (a target for SIGKILL).

    A file, not a channel: a process killed between a channel write and the release of
    the channel's send lock would leave that lock taken for every later sender.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self) -> None:
        append_line(self.path, f"{self.worker.attempt} {os.getpid()} {self.worker.id}")
        while not self.wait_stopping(5.0):
            pass


class FailForever(runtime.Task):
    """A crash loop: every attempt raises at once."""

    def run(self) -> None:
        raise ValueError(f"always failing (attempt {self.worker.attempt})")


# -- executor jobs --------------------------------------------------------------------------
def raise_named(exc: str) -> None:
    raise _RAISES[exc](f"injected {exc} in a job")


def identity(value: object) -> object:
    return value


def send_on(channel: runtime.Channel, value: object) -> object:
    """Send ``value`` on ``channel`` from the worker, then return it."""
    channel.send(value)
    return value


def pid_then_wait(channel: runtime.Channel, seconds: float) -> int:
    """Tell the test this worker's pid, then block (the test SIGKILLs the worker meanwhile)."""
    channel.send(os.getpid())
    runtime.stop_requested(seconds)
    return os.getpid()


def kill_own_process() -> None:
    """The job takes its own process down with SIGKILL: the batch it belongs to is lost."""
    os.kill(os.getpid(), signal.SIGKILL)


def record_job(path: str, job_id: int) -> tuple[int, int]:
    """Record ``job_id`` and the worker that ran it; return both (recycling under load)."""
    info = runtime.current_worker()
    worker = -1 if info is None else info.id
    append_line(path, f"{job_id} {worker}")
    return job_id, worker


# -- bootstraps -----------------------------------------------------------------------------
def hang_boot() -> None:
    """A bootstrap that hangs until the test writes to (or closes) the FIFO in ``RUNTIME_FAULT_HANG``.

    A FIFO reaches every backend, child processes included (they inherit no other fds).
    """
    fd = os.open(os.environ["RUNTIME_FAULT_HANG"], os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)


# -- message handlers (parallel-runtime consume subprocesses and in-process consumers) -------
def record_id(message: Message) -> None:
    """Append the message body to ``<out>/<pid>.log`` (``out`` comes in the headers).

    A ``sleep`` header makes each message take that many seconds first, so a stream lasts
    long enough for a fault to land in the middle of it.
    """
    pause = message.headers.get("sleep")
    if pause:
        time.sleep(float(pause))
    append_line(
        os.path.join(str(message.headers["out"]), f"{os.getpid()}.log"), message.body.decode()
    )


def always_raise(message: Message) -> None:
    """A poison handler: records the attempt, then fails, whatever the message."""
    append_line(
        os.path.join(str(message.headers["out"]), "attempts.log"),
        f"{message.body.decode(errors='replace')} {message.attempt}",
    )
    raise RuntimeError(f"poison: cannot handle attempt {message.attempt}")


def decode_json(message: Message) -> None:
    """Needs a JSON body; records each attempt first (a body that cannot be decoded fails)."""
    append_line(
        os.path.join(str(message.headers["out"]), "attempts.log"),
        f"{message.body.hex()} {message.attempt}",
    )
    message.json()


def released_by(gate: runtime.Channel, value: object) -> object:
    """Block until the test sends a token on ``gate``, then return ``value``."""
    gate.recv(timeout=60)
    return value
