"""Framing and serialisation shared by the main side and the worker side.

A frame is an 8-byte big-endian length followed by a pickle. Exceptions travel as
``(pickled exception or None, type name, message, formatted traceback)`` so that an
exception that cannot be pickled (or rebuilt) still reaches the caller readably.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import struct
from typing import Any

HEADER = struct.Struct("!Q")
PROTOCOL = pickle.HIGHEST_PROTOCOL
PIPE_SIZE = 1 << 20  # raised from Linux's 64 KiB default, so bursts rarely block a writer

ExcPayload = tuple[bytes | None, str, str, str]


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PROTOCOL)


def make_pipe(size: int | None = None, *, nonblocking: bool = False) -> tuple[int, int]:
    """``os.pipe()``, its buffer raised to ``size`` bytes where the OS allows (``F_SETPIPE_SZ``)."""
    r, w = os.pipe()
    if size:
        import fcntl

        set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
        if set_size is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, set_size, size)
    if nonblocking:
        os.set_blocking(r, False)
        os.set_blocking(w, False)
    return r, w


def _wait(fd: int, *, write: bool) -> None:
    """A non-blocking fd had nothing (room) for us: sleep in select until it has."""
    import select

    if write:
        select.select([], [fd], [])
    else:
        select.select([fd], [], [])


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking or non-blocking fd."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            _wait(fd, write=True)
            continue
        view = view[n:]


def read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes from a blocking or non-blocking fd; None on end of file."""
    if n == 0:
        return b""
    chunks = []
    remaining = n
    while remaining:
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except InterruptedError:
            continue
        except BlockingIOError:
            _wait(fd, write=False)
            continue
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return None
            raise
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def send_message(fd: int, obj: Any) -> None:
    write_all(fd, frame(dumps(obj)))


def recv_message(fd: int) -> Any:
    """Blocking read of one framed message; raises EOFError when the peer is gone."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        raise EOFError
    (size,) = HEADER.unpack(header)
    body = read_exact(fd, size)
    if body is None:
        raise EOFError
    return pickle.loads(body)


def encode_exception(exc: BaseException) -> ExcPayload:
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data: bytes | None = pickle.dumps(exc, protocol=PROTOCOL)
    except Exception:
        data = None
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable exception>"
    return (data, name, message, tb)


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of an exception re-raised from a worker: the worker-side traceback."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


def decode_exception(payload: ExcPayload, fallback: type[Exception] | None = None) -> BaseException:
    """Rebuild the worker's exception with its traceback attached, or a ``fallback`` Error."""
    from ._errors import TaskFailed

    data, name, message, tb = payload
    exc: BaseException | None = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        cls = fallback or TaskFailed
        exc = cls(f"{name}: {message} (the exception could not be rebuilt in the caller)", tb)
        return exc
    exc.__cause__ = RemoteTraceback(tb)
    return exc
