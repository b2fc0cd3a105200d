"""Framing and serialisation shared by the main side and the worker side.

A frame is an 8-byte big-endian length followed by a payload. Most payloads are a
pickle; the two that every executor call pays for carry a small binary header
instead, so neither side pickles an envelope around the pickled calls:

* calls  (main -> worker): ``b"C"`` + batch id (8 bytes) + call count (4) + pickle of the calls;
* results (worker -> main): ``b"R"`` + batch id (8 bytes) + pickle of the results.

The worker can thus name the batch even when the calls cannot be unpickled in it,
and the main side can fail just that batch when its results cannot be rebuilt.

Exceptions travel as ``(pickled exception record or None, type name, message,
formatted traceback)`` so that an exception that cannot be pickled (or rebuilt) still
reaches the caller readably; ``_exc_transfer`` builds and rebuilds the record, and is
imported only when an exception travels.

This module is imported by every fresh worker before anything else, so it imports
only C modules (``_pickle``, ``_struct``): each Python module pulled in here is paid
once per worker in start-up time and memory.
"""

from __future__ import annotations

import os
from _functools import partial  # type: ignore[import-not-found]  # functools in C
from _pickle import dumps as _dumps
from _pickle import loads
from _struct import Struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "CALLS",
    "HEADER",
    "RESULTS",
    "RESULTS_HEAD",
    "ExcPayload",
    "calls_frame",
    "decode",
    "decode_exception",
    "dumps",
    "encode_exception",
    "frame",
    "loads",
    "results_frame",
]

HEADER = Struct("!Q")
_CALLS_HEAD = Struct("!cQI")  # b"C", batch id, call count
RESULTS_HEAD = Struct("!cQ")  # b"R", batch id
CALLS = ord("C")
RESULTS = ord("R")
PROTOCOL = 5  # pickle.HIGHEST_PROTOCOL on every Python we support
PIPE_SIZE = 1 << 20  # raised from Linux's 64 KiB default, so bursts rarely block a writer
#: ``concurrent.futures.Future._state`` values of a finished future (read without its lock
#: only as a hint, before a locked call that decides).
DONE = frozenset(("CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"))


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


#: ``pickle.dumps`` at our protocol (a C-level partial: no Python frame per call).
dumps: Callable[[Any], bytes] = partial(_dumps, protocol=PROTOCOL)


def calls_frame(batch_id: int, count: int, blob: bytes) -> bytes:
    """One framed calls message around ``blob`` (the pickled list of calls)."""
    return b"".join(
        (HEADER.pack(_CALLS_HEAD.size + len(blob)), _CALLS_HEAD.pack(b"C", batch_id, count), blob)
    )


def results_frame(batch_id: int, blob: bytes) -> bytes:
    """One framed results message around ``blob`` (the pickled list of ``(ok, value)``)."""
    return b"".join(
        (HEADER.pack(RESULTS_HEAD.size + len(blob)), RESULTS_HEAD.pack(b"R", batch_id), blob)
    )


def decode(payload: Any) -> tuple[Any, ...]:
    """A frame's payload (bytes or a memoryview) as a message tuple.

    Calls keep their pickle undecoded, as a zero-copy view: ``("calls", batch_id, count,
    blob)``; the worker unpickles it where a failure can be reported for that batch.
    Everything else is a plain pickle. (Results frames are decoded on the main side,
    by ``runtime._hub``.)
    """
    if payload[0] == CALLS:
        _, batch_id, count = _CALLS_HEAD.unpack_from(payload)
        return ("calls", batch_id, count, memoryview(payload)[_CALLS_HEAD.size :])
    message: tuple[Any, ...] = loads(payload)
    return message


def make_pipe(size: int | None = None, *, nonblocking: bool = False) -> tuple[int, int]:
    """``os.pipe()``, its buffer raised to ``size`` bytes where the OS allows (``F_SETPIPE_SZ``)."""
    r, w = os.pipe()
    if size:
        import fcntl

        set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
        if set_size is not None:
            try:  # noqa: SIM105 - contextlib is not imported in every fresh worker
                fcntl.fcntl(w, set_size, size)
            except OSError:
                pass
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
            if exc.errno == 9:  # EBADF: closed under us
                return None
            raise
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FrameReader:
    """Reads frames from a blocking fd, taking whatever the pipe holds in one read.

    A small frame (the usual calls message) costs one ``read`` instead of two (header,
    then body); a frame larger than what arrived is completed with exact reads.
    """

    __slots__ = ("_buf", "_fd")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = b""

    def next_payload(self) -> bytes | None:
        """The next frame's payload; None at end of file."""
        buf = self._buf
        while len(buf) < HEADER.size:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except InterruptedError:
                continue
            except BlockingIOError:
                _wait(self._fd, write=False)
                continue
            except OSError as exc:
                if exc.errno == 9:
                    return None
                raise
            if not chunk:
                return None
            buf = buf + chunk if buf else chunk
        (size,) = HEADER.unpack_from(buf)
        end = HEADER.size + size
        if len(buf) >= end:
            self._buf = buf[end:]
            return buf[HEADER.size : end]
        rest = read_exact(self._fd, end - len(buf))
        if rest is None:
            return None
        self._buf = b""
        return buf[HEADER.size :] + rest


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
    return decode(body)


# Exceptions: _exc_transfer (and the pickling modes it needs) loads on first use, not in
# every fresh worker at boot.
ExcPayload = tuple[bytes | None, str, str, str]


def encode_exception(exc: BaseException) -> ExcPayload:
    from ._exc_transfer import encode_exception as encode

    return encode(exc)


def decode_exception(payload: ExcPayload, fallback: type[Exception] | None = None) -> BaseException:
    from ._exc_transfer import decode_exception as decode_

    return decode_(payload, fallback)


def __getattr__(name: str) -> Any:
    if name == "RemoteTraceback":
        from ._exc_transfer import RemoteTraceback

        return RemoteTraceback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
