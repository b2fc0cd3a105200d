"""How an exception raised in a worker reaches the caller with its type, arguments and attributes.

The default pickling of an exception re-runs its constructor with ``args``; an
exception such as ``Rejected(code, detail)`` that passes a formatted message to
``super().__init__`` cannot be rebuilt that way (``TypeError: missing argument``).
ProcessPoolExecutor breaks its whole pool on it; we used to hand back a
``TaskFailed`` that a caller catching ``Rejected`` misses. Here each exception
travels as a record that carries, beside its default pickle, the parts needed to
rebuild it *without* calling the constructor: its class, ``args`` and ``__dict__``
(``__notes__`` included), and the records of its ``__cause__`` and ``__context__``
and, for exception groups, of its members. Each part is pickled on its own, so an
attribute that cannot travel (a lock, a socket) is dropped with a note instead of
sinking the whole exception; only an exception whose class or ``args`` cannot travel
comes back as :class:`runtime.TaskFailed`.

The worker-side traceback (text) hangs at the root of the rebuilt chain as a
:class:`RemoteTraceback`, so a printed traceback shows the worker's frames first,
then the caller's.

Parts are pickled the way the worker's results travel back (``runtime._pickling``'s
mode, which the worker keeps in ``runtime._context``). This module imports nothing of
ours but that leaf (and the errors, on a failure): ``runtime._wire`` imports it on
first use, for its ``encode_exception``/``decode_exception``.
"""

from __future__ import annotations

import pickle
from typing import Any

from ._context import results_pickler

__all__ = ["ExcPayload", "RemoteTraceback", "decode_exception", "encode_exception"]

ExcPayload = tuple[bytes | None, str, str, str]

_MAX_DEPTH = 32  # links of __cause__/__context__/group members followed; deeper ones are dropped

# A record: (whole, parts, cause, context, context_is_cause, suppress_context)
#   whole: the default pickle of the exception, or None
#   parts: (pickled (class, args), pickled __dict__ subset, dropped names, member records) or None
Record = tuple[Any, ...]


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` at the root of an exception re-raised from a worker: the worker-side traceback."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


def _dumps(obj: Any) -> bytes:
    """Pickle ``obj`` as the calling worker thread sends its results (plain pickle elsewhere)."""
    pickler = results_pickler()
    if pickler is None:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # runtime._wire.PROTOCOL
    return pickler(obj)


def _try_dumps(obj: Any) -> bytes | None:
    try:
        return _dumps(obj)
    except Exception:
        return None


def _constructor_may_not_round_trip(cls: type) -> bool:
    """True if default unpickling (``cls(*args)``) might fail: a user class overrides the constructor."""
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            return False
        own = vars(klass)
        if "__reduce__" in own or "__reduce_ex__" in own:
            return False  # the class decides how it travels; trust it
        if "__init__" in own or "__new__" in own:
            return True
    return False


def _state(exc: BaseException) -> tuple[bytes, list[str]]:
    state = dict(vars(exc))
    whole = _try_dumps(state)
    if whole is not None:
        return whole, []
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if _try_dumps(value) is None:
            dropped.append(key)
        else:
            kept[key] = value
    return _dumps(kept), dropped


def _parts(exc: BaseException, seen: set[int], depth: int) -> tuple[Any, ...] | None:
    members: list[Record] | None = None
    args: tuple[Any, ...] = exc.args
    if isinstance(exc, BaseExceptionGroup):
        members = []
        for member in exc.exceptions:
            record = _record(member, seen, depth + 1)
            if record is None:
                return None
            members.append(record)
        args = (exc.message,)
    head = _try_dumps((type(exc), args))
    if head is None:
        return None
    try:
        state, dropped = _state(exc)
    except Exception:
        return None
    return (head, state, dropped, members)


def _record(exc: BaseException | None, seen: set[int], depth: int) -> Record | None:
    if exc is None or id(exc) in seen or depth > _MAX_DEPTH:
        return None
    seen.add(id(exc))
    group = isinstance(exc, BaseExceptionGroup)
    # A group's default pickle would rebuild its members the default way (and drop
    # their chains): send its parts, and the default pickle only if those fail.
    parts = _parts(exc, seen, depth) if group else None
    whole = _try_dumps(exc) if parts is None else None
    if not group and (whole is None or _constructor_may_not_round_trip(type(exc))):
        parts = _parts(exc, seen, depth)
    if whole is None and parts is None:
        return None
    cause = _record(exc.__cause__, seen, depth + 1)
    context_is_cause = exc.__context__ is not None and exc.__context__ is exc.__cause__
    context = None if context_is_cause else _record(exc.__context__, seen, depth + 1)
    return (whole, parts, cause, context, context_is_cause, exc.__suppress_context__)


def encode_exception(exc: BaseException) -> ExcPayload:
    """Inside a worker: ``(record or None, type name, message, formatted traceback)``."""
    import traceback

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        record = _record(exc, set(), 0)
        data = None if record is None else pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # never let reporting a failure fail the worker
        data = None
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable exception>"
    return (data, name, message, tb)


def _rebuild(parts: tuple[Any, ...], depth: int) -> BaseException | None:
    head, state, dropped, members = parts
    cls, args = pickle.loads(head)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    if members is not None:
        rebuilt = [_unpack(m, depth + 1) for m in members]
        if any(m is None for m in rebuilt):
            return None
        exc: BaseException = cls.__new__(cls, args[0], rebuilt)
    else:
        try:
            exc = cls.__new__(cls, *args)
        except Exception:
            exc = BaseException.__new__(cls)
        exc.args = args
    vars(exc).update(pickle.loads(state))
    if dropped:
        exc.add_note(
            "runtime: attribute(s) "
            + ", ".join(repr(name) for name in dropped)
            + " of this exception could not be sent from the worker and are missing"
        )
    return exc


def _unpack(record: Record, depth: int = 0) -> BaseException | None:
    whole, parts, cause, context, context_is_cause, suppress = record
    exc: Any = None
    if whole is not None:
        try:
            exc = pickle.loads(whole)
        except Exception:  # the constructor does not round-trip: rebuild from the parts
            exc = None
    if not isinstance(exc, BaseException) and parts is not None:
        try:
            exc = _rebuild(parts, depth)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        return None
    if cause is not None:
        exc.__cause__ = _unpack(cause, depth + 1)
    if context_is_cause:
        exc.__context__ = exc.__cause__
    elif context is not None:
        exc.__context__ = _unpack(context, depth + 1)
    exc.__suppress_context__ = suppress
    return exc


def _attach_traceback(exc: BaseException, tb: str) -> None:
    node, seen = exc, {id(exc)}
    while True:
        nxt = node.__cause__
        if nxt is None and not node.__suppress_context__:
            nxt = node.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        node = nxt
    node.__cause__ = RemoteTraceback(tb)


def decode_exception(payload: ExcPayload, fallback: type[Exception] | None = None) -> BaseException:
    """Rebuild the worker's exception with its traceback attached, or a ``fallback`` Error."""
    from ._errors import TaskFailed

    data, name, message, tb = payload
    exc: BaseException | None = None
    if data is not None:
        try:
            exc = _unpack(pickle.loads(data))
        except Exception:
            exc = None
    if exc is None:
        cls = fallback or TaskFailed
        return cls(f"{name}: {message} (the exception could not be rebuilt in the caller)", tb)
    _attach_traceback(exc, tb)
    return exc
