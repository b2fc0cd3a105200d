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

Payloads made only of plain built-in values (see :func:`is_plain`) travel as ``b"M"`` +
``marshal`` instead of a pickle, and so do calls of module-level functions with such
arguments (the function named by module and qualified name, as pickle would name it).
``marshal`` is built into every interpreter; ``_pickle`` is not free: importing it loads
copyreg, functools, collections and more, about 6 ms in a fresh 3.14 subinterpreter, more
than a third of the interpreter's own creation. A worker whose first jobs are plain thus
answers them without ever importing pickle; it does so the first time a payload needs it.
From Python 3.13 on (``MARSHAL_OK``): on 3.12 marshal's interned strings are not safe
across own-GIL subinterpreters, so everything is pickled there.

This module is imported by every fresh worker before anything else, so it imports
only C modules (``_struct``, ``_functools``; ``_pickle`` on first use): each Python
module pulled in here is paid once per worker in start-up time and memory. Of ours it
imports only ``_exc_transfer`` (on first use, and that one only the leaf ``_context``):
``_pickling``, the hub, the worker loop and the backends build on it, never the reverse.
"""

from __future__ import annotations

import marshal
import os
import sys
from _struct import Struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "CALLS",
    "HEADER",
    "MARSHAL",
    "MARSHAL_OK",
    "MARSHAL_TAG",
    "RESULTS",
    "RESULTS_HEAD",
    "ExcPayload",
    "calls_frame",
    "decode",
    "decode_exception",
    "encode",
    "encode_exception",
    "frame",
    "is_plain",
    "named_in",
    "pack",
    "pack_calls",
    "results_frame",
    "unpack",
    "unpack_calls",
]
# Also ``dumps`` and ``loads`` (pickle's, at our protocol): attributes made on first use by
# the module's __getattr__, so that importing this module does not import _pickle.

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


_PICKLE: list[Callable[[Any], Any]] = []  # [dumps, loads] once _pickle is imported


def _pickle() -> list[Callable[[Any], Any]]:
    if not _PICKLE:
        from _functools import partial  # type: ignore[import-not-found]  # functools in C
        from _pickle import dumps as pickle_dumps
        from _pickle import loads as pickle_loads

        # A C-level partial: no Python frame per call.
        _PICKLE[:] = [partial(pickle_dumps, protocol=PROTOCOL), pickle_loads]
    return _PICKLE


# ---------------------------------------------------------------------- plain payloads
MARSHAL = ord("M")
MARSHAL_TAG = b"M"
_SCALARS = frozenset((int, float, complex, str, bytes, bool, type(None)))
PLAIN_LIMIT = 64  # objects looked at before a payload is called not plain (pickle is then cheaper)
# marshal.loads interns the strings that were interned where they were dumped. On 3.12 the
# interned strings of every interpreter share one dict, and a string interned there by an
# own-GIL subinterpreter (its own allocator) is freed twice at exit: "free(): invalid
# pointer" (seen on 3.12.1). From 3.13 each interpreter interns into its own dict.
MARSHAL_OK = sys.version_info >= (3, 13)


def is_plain(obj: Any, limit: int = PLAIN_LIMIT) -> bool:
    """True when ``obj`` is made of at most ``limit`` objects whose types are exactly int,
    float, complex, str, bytes, bool, None, tuple, list or dict.

    For those, ``marshal`` rebuilds the same values as pickle would (shared references
    included). Exact types only: marshal would turn a bytearray, a memoryview or an array
    into bytes, and refuses subclasses; those, and anything larger, are pickled.
    """
    stack = [obj]
    seen = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        seen += 1
        if kind in _SCALARS:
            continue
        if kind is tuple or kind is list:
            if seen + len(stack) + len(item) > limit:
                return False
            stack.extend(item)
        elif kind is dict:
            if seen + len(stack) + 2 * len(item) > limit:
                return False
            stack.extend(item)
            stack.extend(item.values())
        else:
            return False
    return True


def encode(obj: Any, pickler: Callable[[Any], bytes] | None = None) -> tuple[bytes, bytes]:
    """``(tag, data)``: ``(b"M", marshal)`` for plain values, else ``(b"", pickler(obj))``
    (pickle by default; a pickle starts with its own PROTO opcode, never ``M``). Frames join
    the two pieces with their header in one copy."""
    if MARSHAL_OK and is_plain(obj):
        return MARSHAL_TAG, marshal.dumps(obj)
    return b"", (pickler or _pickle()[0])(obj)


def pack(obj: Any) -> bytes:
    """A (small) message payload: marshal for plain values, else a pickle."""
    tag, data = encode(obj)
    return tag + data if tag else data


def unpack(payload: Any) -> Any:
    """The value of a payload made by :func:`pack` (bytes or a memoryview)."""
    if payload[0] == MARSHAL:
        return marshal.loads(payload[1:])
    return _pickle()[1](payload)


def _reference(fn: Any) -> tuple[str, str] | None:
    """(module, qualified name) of a function that pickle would send by reference and that
    any worker can import; None for anything else (methods, partials, ``__main__``).

    Looked up on every call, as pickle does: a name rebound since the last call must not
    send the old function's name for the new function."""
    kind = type(fn)
    if kind is not _FUNCTION and kind is not _BUILTIN:
        return None
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return (module, qualname) if named_in(sys.modules.get(module), qualname, fn) else None


def named_in(module: Any, qualname: str, obj: Any) -> bool:
    """Whether ``qualname`` looked up from ``module`` is ``obj`` itself (pickle's check
    that a reference names the object it is sent for)."""
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return target is obj


_FUNCTION = type(_reference)
_BUILTIN = type(len)


def pack_calls(calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> bytes | None:
    """The calls of a batch as marshal (functions by name; frame it with ``tag=MARSHAL_TAG``),
    or None when pickle must carry them."""
    if not MARSHAL_OK:
        return None
    named = []
    for fn, args, kwargs in calls:
        ref = _reference(fn)
        if ref is None or not is_plain(args) or (kwargs and not is_plain(kwargs)):
            return None
        named.append((ref[0], ref[1], args, kwargs))
    return marshal.dumps(named)


def unpack_calls(blob: Any) -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    """The calls of a batch from :func:`pack_calls` or a pickle; raises if one cannot be loaded."""
    if blob[0] != MARSHAL:
        return _pickle()[1](blob)  # type: ignore[no-any-return]
    calls = []
    for module, qualname, args, kwargs in marshal.loads(blob[1:]):
        fn: Any = sys.modules.get(module)
        if fn is None:
            __import__(module)
            fn = sys.modules[module]
        for part in qualname.split("."):
            fn = getattr(fn, part)
        calls.append((fn, args, kwargs))
    return calls


def calls_frame(batch_id: int, count: int, blob: bytes, tag: bytes = b"") -> bytes:
    """One framed calls message around ``tag`` + ``blob`` (the encoded list of calls)."""
    return b"".join(
        (
            HEADER.pack(_CALLS_HEAD.size + len(tag) + len(blob)),
            _CALLS_HEAD.pack(b"C", batch_id, count),
            tag,
            blob,
        )
    )


def results_frame(batch_id: int, blob: bytes, tag: bytes = b"") -> bytes:
    """One framed results message around ``tag`` + ``blob`` (the encoded list of ``(ok, value)``)."""
    return b"".join(
        (
            HEADER.pack(RESULTS_HEAD.size + len(tag) + len(blob)),
            RESULTS_HEAD.pack(b"R", batch_id),
            tag,
            blob,
        )
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
    message: tuple[Any, ...] = unpack(payload)
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
    write_all(fd, frame(pack(obj)))


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


# Exceptions: _exc_transfer loads on first use, not in every fresh worker at boot. It sits
# below this module (it imports only runtime._context, the worker's state, where it finds
# the pickler results travel back with), so nothing of ours that this module imports comes
# back to it.
ExcPayload = tuple[bytes | None, str, str, str]


def exception_name(qualified: str) -> str:
    """How failures name an exception class: ``builtins.ValueError`` -> ``ValueError``;
    other names keep their module (``runtime.WorkerCrashed``)."""
    return qualified[len("builtins.") :] if qualified.startswith("builtins.") else qualified


def encode_exception(exc: BaseException) -> ExcPayload:
    from ._exc_transfer import encode_exception as encode

    return encode(exc)


def decode_exception(payload: ExcPayload, fallback: type[Exception] | None = None) -> BaseException:
    from ._exc_transfer import decode_exception as decode_

    return decode_(payload, fallback)


def __getattr__(name: str) -> Any:
    if name == "dumps":
        return _pickle()[0]
    if name == "loads":
        return _pickle()[1]
    if name == "RemoteTraceback":
        from ._exc_transfer import RemoteTraceback

        return RemoteTraceback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
