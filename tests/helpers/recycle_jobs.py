"""Jobs and bootstraps for the recycling and boot-timeout tests (imported inside workers).

A hung bootstrap blocks on a FIFO whose path is in ``RUNTIME_TEST_HANG_FIFO`` (the
environment reaches every backend); :func:`release_hang` unblocks every reader and
removes the FIFO, so later bootstraps do not hang and no worker outlives the test.
"""

from __future__ import annotations

import contextlib
import os

import runtime

HANG_ENV = "RUNTIME_TEST_HANG_FIFO"
KEPT: list[bytes] = []  # what jobs keep in a module global
MB = 1 << 20


def boot() -> dict[str, list[bytes]]:
    return {"keep": []}


def hang_boot() -> dict[str, list[bytes]]:
    """Block while the FIFO named by the environment exists (until the test releases it)."""
    path = os.environ.get(HANG_ENV)
    if path and os.path.exists(path):
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as fifo:
            fifo.read(1)
    return {"keep": []}


def make_hang(path: str) -> None:
    os.mkfifo(path)
    os.environ[HANG_ENV] = path


def release_hang(path: str) -> None:
    """Unblock every bootstrap waiting on ``path`` and make later ones pass straight through."""
    os.environ.pop(HANG_ENV, None)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer: readers blocked in open() go on
    except FileNotFoundError:
        return
    try:
        os.unlink(path)  # nobody opens it from now on
        os.write(fd, b"x" * 256)  # one byte for every reader that got in
    finally:
        os.close(fd)  # end of file for any reader left


def record(path: str, i: int) -> tuple[int, int]:
    """Append ``i`` to ``path`` (one line per run: a job run twice shows twice)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    worker = runtime.current_worker()
    return i, worker.id if worker is not None else 0


def worker_id() -> int:
    worker = runtime.current_worker()
    return worker.id if worker is not None else 0


def measure(backend: str) -> int:
    from runtime._usage import worker_memory

    return worker_memory(backend, runtime.current_context())


def keep_in_context(megabytes: int) -> int:
    """Keep ``megabytes`` of bytes in the worker's context; returns the worker's id."""
    runtime.current_context()["keep"].append(b"k" * (megabytes * MB))
    return worker_id()


def keep_in_module(megabytes: int) -> int:
    KEPT.append(b"m" * (megabytes * MB))
    return worker_id()
