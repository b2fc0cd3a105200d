"""Tasks, bootstraps and jobs that tests send to workers.

Imported inside workers of every backend (including Python 3.12 subinterpreters),
so it only imports modules that are safe there. Tasks report through files because
a file is the one thing every backend shares with the test.
"""

from __future__ import annotations

import os
import time

import runtime

BOOT_COUNTER = 0
MODULE_STATE = "pristine"


def record(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def read_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_for_lines(path: str, count: int, timeout: float = 20.0) -> list[str]:
    """Wait until ``path`` has ``count`` lines (tests only; workers write asynchronously)."""
    end = time.monotonic() + timeout
    lines = read_lines(path)
    while len(lines) < count and time.monotonic() < end:
        time.sleep(0.01)
        lines = read_lines(path)
    return lines


def boot(worker: runtime.WorkerInfo) -> dict[str, object]:
    global BOOT_COUNTER
    BOOT_COUNTER += 1
    return {"booted_in": worker.id, "boots_here": BOOT_COUNTER, "pid": os.getpid()}


def boot_generator() -> object:
    yield {"resource": "open"}
    path = os.environ.get("RUNTIME_TEST_FINALIZE_FILE")
    if path:
        record(path, "finalized")


def boot_fails() -> None:
    raise RuntimeError("config file missing: /etc/shop.toml")


class Report(runtime.Task):
    """Write who ran, with which context, then return."""

    def __init__(self, path: str, tag: str = "") -> None:
        self.path = path
        self.tag = tag

    def run(self) -> None:
        ctx = self.context or {}
        record(
            self.path,
            f"{self.tag}|{self.worker.id}|{self.worker.kind}|{self.worker.attempt}|"
            f"{ctx.get('booted_in')}|{ctx.get('boots_here')}",
        )


class KindA(Report):
    pass


class KindB(Report):
    pass


class Isolation(runtime.Task):
    """Read then change a module global: isolated workers must each see it pristine."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self) -> None:
        global MODULE_STATE
        seen = MODULE_STATE
        MODULE_STATE = f"changed by {self.worker.id}"
        record(self.path, seen)


class FailAlways(runtime.Task):
    def __init__(self, path: str) -> None:
        self.path = path

    def run(self) -> None:
        record(self.path, f"attempt {self.worker.attempt} in worker {self.worker.id}")
        raise ValueError(f"boom on attempt {self.worker.attempt}")


class FailOnce(runtime.Task):
    """Fails on the first attempt (leaving state behind), succeeds on the second."""

    def __init__(self, path: str, *, die: bool = False) -> None:
        self.path = path
        self.die = die

    def run(self) -> None:
        global MODULE_STATE
        record(self.path, f"{self.worker.attempt}|{self.worker.id}|{MODULE_STATE}")
        if self.worker.attempt == 1:
            MODULE_STATE = "leaked by attempt 1"
            if self.die:
                raise SystemExit("the worker goes away")
            raise RuntimeError("first attempt fails")


class Loop(runtime.Task):
    """Runs until asked to stop; reports start and clean end."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self) -> None:
        record(self.path, f"start|{self.worker.id}")
        while not self.wait_stopping(5.0):
            pass
        record(self.path, f"stop|{self.worker.id}")


class Stubborn(runtime.Task):
    """Ignores stop requests for a while (to test the stop deadline)."""

    def __init__(self, path: str, seconds: float = 3.0) -> None:
        self.path = path
        self.seconds = seconds

    def run(self) -> None:
        record(self.path, f"start|{self.worker.id}")
        time.sleep(self.seconds)


# -- executor jobs --------------------------------------------------------------------
def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def whoami() -> tuple[int, object]:
    return os.getpid(), runtime.current_context()


def worker_id() -> int:
    info = runtime.current_worker()
    return -1 if info is None else info.id


def slow_worker_id(seconds: float) -> int:
    time.sleep(seconds)
    return worker_id()


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def raise_key_error(key: str) -> None:
    raise KeyError(key)


class Rejected(Exception):
    """Its constructor does not round-trip: the default unpickling calls Rejected(message)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def reject(code: int) -> None:
    """Raise Rejected from a KeyError, with a note."""
    try:
        {}["order-1"]
    except KeyError as exc:
        err = Rejected(code, "no such order")
        err.add_note("looked in the order table")
        raise err from exc


def reject_while_handling(code: int) -> None:
    """Raise Rejected while a ValueError is being handled (implicit __context__)."""
    try:
        raise ValueError("first problem")
    except ValueError:
        raise Rejected(code, "second problem")  # noqa: B904


def reject_if(x: int, bad: int) -> int:
    if x == bad:
        raise Rejected(x, "bad item")
    return x


def reject_with_a_lock() -> None:
    import threading

    err = Rejected(5, "locked")
    err.lock = threading.Lock()  # type: ignore[attr-defined]
    raise err


def reject_many() -> None:
    raise ExceptionGroup("several", [Rejected(1, "a"), ValueError("b")])


class Unrebuildable(Exception):
    """Cannot be rebuilt at all: one of its args cannot be pickled."""


def raise_unrebuildable() -> None:
    import threading

    raise Unrebuildable("holds a lock", threading.Lock())


class RejectedTask(runtime.Task):
    def run(self) -> None:
        raise Rejected(7, "task said no")


def return_unpicklable() -> object:
    import threading

    return threading.Lock()


def die_hard() -> None:
    os._exit(3)


def fail_if(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def wait_for_stop(timeout: float) -> bool:
    return runtime.stop_requested(timeout)


class Hello(runtime.Task):
    """Needs no arguments: for the CLI."""

    def run(self) -> None:
        print(f"hello from worker {self.worker.id} ({self.worker.backend})", flush=True)


def nested_executor() -> str:
    """Try to open an executor from inside a worker; report what happened."""
    try:
        with runtime.Executor(1, backend="thread") as ex:
            return f"ok:{ex.submit(square, 3).result(timeout=20)}"
    except runtime.Error as exc:
        return f"{type(exc).__name__}:{exc}"


class Idle(runtime.Task):
    """Needs no arguments and runs until asked to stop: for the CLI with --metrics-port."""

    def run(self) -> None:
        while not self.wait_stopping(5.0):
            pass


FAILURES: list[object] = []


def remember_failure(failure: object) -> None:
    """An on_failure hook given by reference; runs in the main interpreter."""
    FAILURES.append(failure)


def failing_hook(failure: object) -> None:
    raise RuntimeError("the hook itself is broken")


def released_by(gate: runtime.Channel | None, value: object) -> object:
    """Return ``value`` at once, or once the test sends on ``gate`` (orders jobs without sleeping)."""
    if gate is not None:
        gate.recv(timeout=30)
    return value


def module_loaded(name: str) -> bool:
    import sys

    return name in sys.modules


def refuse_to_load() -> object:
    raise ImportError("this object cannot be rebuilt here")


class LoadsBadly:
    """Pickles fine in the caller; unpickling it (in the worker) raises."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (refuse_to_load, ())


def gated_boot() -> None:
    """A bootstrap that waits for the test to open the gate (a named pipe), then maybe fails.

    The gate is the path in ``RUNTIME_TEST_BOOT_GATE``; each worker takes one byte of it.
    With ``RUNTIME_TEST_BOOT_FAILS`` set, the bootstrap then raises.
    """
    fd = os.open(os.environ["RUNTIME_TEST_BOOT_GATE"], os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
    if os.environ.get("RUNTIME_TEST_BOOT_FAILS"):
        raise RuntimeError("the gated bootstrap failed as told")


def announce(channel: runtime.Channel, value: object) -> object:
    """Send ``value`` on ``channel`` (the test learns that this job ran), then return it."""
    channel.send(value)
    return value
