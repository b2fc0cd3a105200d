"""Failure reports: the frozen :class:`Failure` record and the thread that hands it to ``on_failure``.

The hook runs on a thread of its own (one per component, started at the first
failure), never on the thread that noticed the failure: those are the pool
supervisor (holding the pool's lock), the hub (which completes every future) and
the broker I/O thread (which keeps heartbeats flowing). A hook that blocks (a
publish waiting for its confirm, a slow HTTP call) or calls back into the pool
(``pool.statistics()`` takes that lock) would otherwise stall or deadlock them.
A hook that raises is logged and counted; the component never sees it.
"""

from __future__ import annotations

import logging
import threading

try:  # the C queue itself: the queue module costs a new executor 0.8 ms to import
    from _queue import SimpleQueue
except ImportError:  # pragma: no cover - a build without the C module
    from queue import SimpleQueue

from .._errors import ConfigurationError
from .._wire import exception_name

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._failure_record import Failure

__all__ = ["Failure", "FailureReports", "combine_hooks", "exception_name", "resolve_hook"]

log = logging.getLogger("runtime")


def __getattr__(name: str) -> Any:
    # Failure is a dataclass, and on 3.13 importing dataclasses costs a fresh process about
    # 9 ms: it loads with the first failure (or the first use of runtime.Failure).
    if name == "Failure":
        from ._failure_record import Failure

        return Failure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_hook(hook: Any) -> Callable[[Failure], Any] | None:
    """Validate ``on_failure`` in the caller: a callable, a ``"pkg.mod:fn"`` reference, or None."""
    if hook is None:
        return None
    if isinstance(hook, str):
        from .._task import resolve_reference

        fn = resolve_reference(hook)  # ReferenceNotFound names the module and what to check
        if not callable(fn):
            raise ConfigurationError(
                f"on_failure {hook!r} resolves to {fn!r}, which is not callable"
            )
        return fn  # type: ignore[no-any-return]
    if not callable(hook):
        raise ConfigurationError(
            f"on_failure must be a callable taking a runtime.Failure or a 'pkg.mod:fn' "
            f"reference, got {hook!r}"
        )
    return hook  # type: ignore[no-any-return]


def combine_hooks(*hooks: Any) -> Any:
    """One ``on_failure`` that calls each hook given (None skipped); the first error is re-raised."""
    resolved = [fn for fn in map(resolve_hook, hooks) if fn is not None]
    if len(resolved) < 2:
        return resolved[0] if resolved else None

    def on_failure(failure: Failure) -> None:
        error: Exception | None = None
        for hook in resolved:
            try:
                hook(failure)
            except Exception as exc:
                if error is None:
                    error = exc
                else:
                    log.error("runtime: on_failure hook %r raised too: %r", hook, exc)
        if error is not None:
            raise error

    return on_failure


_STOP = object()


class FailureReports:
    """Queue of failures for one component's hook, delivered in order on the hook's own thread."""

    def __init__(self, hook: Any, owner: str) -> None:
        self.hook = resolve_hook(hook)
        self.owner = owner
        self.errors = 0  # written by the hook thread only
        self._queue: SimpleQueue[Any] = SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def report(self, failure: Failure) -> None:
        """Hand ``failure`` to the hook without waiting for it."""
        if self.hook is None:
            return
        with self._lock:
            if self._closed:
                log.warning(
                    "runtime: a failure after %s stopped was not reported: %s", self.owner, failure
                )
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="runtime-failure-reports", daemon=True
                )
                self._thread.start()
        self._queue.put(failure)

    def _run(self) -> None:
        from .._early import block_signals_in_this_thread

        block_signals_in_this_thread()
        while True:
            failure = self._queue.get()
            if failure is _STOP:
                return
            self._deliver(failure)

    def _deliver(self, failure: Failure) -> None:
        assert self.hook is not None
        try:
            self.hook(failure)
        except Exception:
            self.errors += 1
            log.exception(
                "runtime: the on_failure hook %r of %s raised; the failure it was given: %s: %s",
                self.hook,
                self.owner,
                failure.exception_type,
                failure.message,
            )

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (waiting up to ``timeout``), then end the hook thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "runtime: the on_failure hook of %s did not return within %.0fs; abandoning it",
                self.owner,
                timeout,
            )
