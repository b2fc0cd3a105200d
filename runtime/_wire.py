"""Framing and serialisation shared by the main side and the worker side.

A frame is an 8-byte big-endian length followed by a pickle. Exceptions travel as
``(pickled exception record or None, type name, message, formatted traceback)`` so
that an exception that cannot be pickled (or rebuilt) still reaches the caller
readably; ``_exc_transfer`` builds and rebuilds the record.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import struct
from typing import Any

from ._exc_transfer import ExcPayload as ExcPayload
from ._exc_transfer import RemoteTraceback as RemoteTraceback
from ._exc_transfer import decode_exception as decode_exception
from ._exc_transfer import encode_exception as encode_exception
from ._pickling import PROTOCOL as PROTOCOL

HEADER = struct.Struct("!Q")
PIPE_SIZE = 1 << 20  # raised from Linux's 64 KiB default, so bursts rarely block a writer


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
