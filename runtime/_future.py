"""The Future an :class:`~runtime.Executor` hands out, and its waiter list.

``result()`` reads the executor's completions itself when it can: a caller blocked
here takes the inbox's reader role (``runtime._inbox``) if it is free, so the
worker's write wakes the caller directly (one wake-up instead of two). The stdlib's
methods on every job's path are redone with the same states and the same lock, minus
the Python calls they cost per job (see :class:`Future`).
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import threading
from _thread import RLock as _RLock

from ._wire import DONE as _DONE

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ._inbox import Inbox

    T = TypeVar("T")

__all__ = ["Future"]

#: Reading a finished future's fields without its lock is safe under the GIL; a
#: free-threaded build takes the stdlib's locked path.
#: (The GIL, once disabled at start-up, may come back; it never goes away again.)
_PLAIN_READS = getattr(sys, "_is_gil_enabled", lambda: True)()
_CONDITION_BUILT = threading.Lock()


class Future(cf.Future["T"]):  # a string: a PEP 695 class would import typing
    """A future whose ``result()`` reads the executor's completions itself when it can.

    A caller blocked here holds the inbox's reader role if it is free, so the worker's
    write wakes the caller directly; otherwise it waits as any ``concurrent.futures``
    caller does, and whoever reads completes the future.

    The stdlib's methods on every job's path (create, start, finish, read the result)
    are redone here with the same states and the same lock, minus what costs Python
    calls per job: the ``Condition`` is built only when a thread waits on it the
    stdlib's way (``__getattr__``, around the future's own lock, which the fast paths
    take directly), no ``notify_all`` with nobody waiting, no callbacks when none.
    ``tests/test_executor.py`` checks that the attributes match the stdlib's Future.
    """

    def __init__(self, inbox: Inbox) -> None:
        # cf.Future.__init__, but the Condition (about half of its cost) waits for a waiter.
        self._lock = _RLock()
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._waiters = _Waiters(inbox)  # type: ignore[assignment]  # a list of waiters
        self._done_callbacks: list[Callable[[cf.Future[T]], object]] = []
        self._inbox = inbox

    def __getattr__(self, name: str) -> Any:
        if name != "_condition":
            raise AttributeError(name)
        with _CONDITION_BUILT:  # once per future, by whoever needs it first
            condition = self.__dict__.get("_condition")
            if condition is None:
                condition = self.__dict__["_condition"] = threading.Condition(self._lock)
        return condition

    def result(self, timeout: float | None = None) -> T:
        if self._state not in _DONE:  # a racy peek: the stdlib's own wait follows anyway
            timeout = self._inbox.wait(self, timeout)
        if _PLAIN_READS and self._state == "FINISHED" and self._exception is None:
            # Under the GIL a finished future's result is final: no lock needed to read it.
            return self._result  # type: ignore[no-any-return,return-value]
        return super().result(timeout)

    def done(self) -> bool:
        return self._state in _DONE

    def set_running_or_notify_cancel(self) -> bool:
        with self._lock:
            if self._state == "PENDING":
                self._state = "RUNNING"
                return True
        return super().set_running_or_notify_cancel()  # cancelled (or misused): the stdlib's path

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state not in _DONE:
            timeout = self._inbox.wait(self, timeout)
        return super().exception(timeout)

    def set_result(self, result: T) -> None:
        with self._lock:
            if self._state in _DONE:
                raise cf.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._state = "FINISHED"
            for waiter in self._waiters:
                waiter.add_result(self)
            condition = self.__dict__.get("_condition")  # None: nobody ever waited on it
            if condition is not None:
                condition.notify_all()
        if self._done_callbacks:  # type: ignore[attr-defined]
            self._invoke_callbacks()  # type: ignore[attr-defined]
        self._inbox.completed(self)

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._inbox.completed(self)

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self._inbox.completed(self)
        return cancelled

    def add_done_callback(self, fn: Callable[[cf.Future[T]], object]) -> None:
        # Whoever submitted may now wait for the callback instead of reading: let the hub read.
        self._inbox.unreserve()
        super().add_done_callback(fn)


class _Waiters(list[object]):
    """``Future._waiters``: ``concurrent.futures.wait``/``as_completed`` append theirs here.

    Such a caller waits on an event, not by reading, so its reservation (taken by
    ``submit``) is handed to the hub at once instead of after the grace period.
    """

    __slots__ = ("_inbox",)

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self._inbox = inbox

    def append(self, waiter: Any) -> None:
        self._inbox.unreserve()
        super().append(waiter)
