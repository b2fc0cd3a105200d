"""Resolving a handler reference (in the caller) and calling it (inside a worker).

Pika-free on purpose: :func:`invoke` is what the executor pickles to workers.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .._task import Task, reference_of, resolve_reference
from ._message import HandlerFailure, Message

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["handler_reference", "invoke"]

# One cache per worker: module globals are shared between thread-backend workers,
# so a plain dict would hand one Task instance to several workers.
_local = threading.local()


def _check(obj: Any, ref: str) -> None:
    if isinstance(obj, type) and issubclass(obj, Task):
        if not callable(getattr(obj, "handle", None)):
            raise ConfigurationError(
                f"handler {ref!r} is a runtime.Task without a handle(message) method"
            )
        return
    if isinstance(obj, type) or not callable(obj):
        raise ConfigurationError(
            f"handler {ref!r} must be a function taking the message or a runtime.Task subclass "
            f"with handle(message); got {obj!r}"
        )


def handler_reference(handler: str | Callable[..., Any] | type[Task]) -> str:
    """Validate a handler in the caller and return the ``"pkg.mod:name"`` workers import it by.

    Raises :class:`runtime.ReferenceNotFound` (or ``ConfigurationError``) before anything connects.
    """
    ref = handler if isinstance(handler, str) else reference_of(handler)
    _check(resolve_reference(ref), ref)
    return ref


def _resolve(ref: str) -> Callable[[Message], Any]:
    cache: dict[str, Callable[[Message], Any]] | None = getattr(_local, "handlers", None)
    if cache is None:
        cache = _local.handlers = {}
    fn = cache.get(ref)
    if fn is None:
        obj = resolve_reference(ref)
        _check(obj, ref)
        if isinstance(obj, type) and issubclass(obj, Task):
            from .._worker import current_context, current_worker

            task = obj()
            task.context = current_context()
            worker = current_worker()
            if worker is not None:
                task.worker = worker
            fn = task.handle  # type: ignore[attr-defined]
        else:
            fn = obj
        cache[ref] = fn
    return fn


def invoke(ref: str, message: Message) -> HandlerFailure | float:
    """Run the handler on one message in the calling worker.

    Returns how long the handler ran (seconds, measured here in the worker: it rides
    back on the result the consumer receives anyway), or the failure as data.
    """
    start = perf_counter()
    try:
        _resolve(ref)(message)
    except Exception as exc:
        return HandlerFailure.from_exception(exc, perf_counter() - start)
    return perf_counter() - start
