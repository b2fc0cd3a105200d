"""What the calling worker knows about itself: who it is, its bootstrap's context, its stop requests.

The state lives in a thread-local that the worker loop (``runtime._worker.serve``) fills
for the thread it runs in, and everything that reads it lives here: tasks
(``runtime._task``), the public :func:`current_worker`, :func:`current_context` and
:func:`stop_requested`, and the exception codec (``runtime._exc_transfer``, for the
pickler results travel back with). A leaf: it imports nothing of ours, so those
modules can all read the calling worker's state without importing each other.

A fresh worker imports this module at boot, with ``runtime._worker``, so it imports only
C modules and ``os`` (loaded already): every Python module pulled in here would be paid
once per worker in start-up time and memory. Not typing, not dataclasses.
"""

from __future__ import annotations

import os
from _struct import iter_unpack
from _thread import _local as _ThreadLocal

TYPE_CHECKING = False  # not typing's: this module loads in every fresh worker
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "WorkerInfo",
    "WorkerState",
    "current_context",
    "current_state",
    "current_worker",
    "results_pickler",
    "set_results_pickler",
    "set_state",
    "stop_requested",
]

_local = _ThreadLocal()  # _thread's: a worker need not import threading for it


class WorkerInfo:
    """Who is running a task: handed to the task as ``self.worker`` (immutable).

    Plain slots rather than a dataclass: this module is imported by every fresh
    worker, and ``dataclasses`` drags ``inspect`` along.
    """

    # Defined here so that current_worker() needs no other module; its public home is
    # runtime._task (which re-exports it) and runtime.WorkerInfo, and pickles keep naming it
    # the way they always did.
    __module__ = "runtime._task"
    __slots__ = ("attempt", "backend", "id", "kind", "pid", "slot")
    _fields = ("id", "backend", "attempt", "slot", "kind", "pid")

    id: int
    backend: str
    attempt: int
    slot: int | None
    kind: str | None
    pid: int

    def __init__(
        self,
        id: int,
        backend: str,
        attempt: int = 1,
        slot: int | None = None,
        kind: str | None = None,
        pid: int | None = None,
    ) -> None:
        values = (id, backend, attempt, slot, kind, pid or os.getpid())
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("WorkerInfo is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkerInfo):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._fields))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"WorkerInfo({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerInfo, tuple(getattr(self, f) for f in self._fields))


class WorkerState:
    """One worker's identity, bootstrap context and stop requests (one per worker thread)."""

    def __init__(self, info: dict[str, Any], stop_fd: int) -> None:
        self.info = info
        self.stop_fd = stop_fd
        self.context: Any = None
        # Stop requests arrive as 8-byte records: 0 = stop for good (pool), k = stop batch k.
        self.stop_all = False
        self.stop_batches: set[int] = set()
        self.batch = 0

    def poll_stop(self) -> bool:
        try:
            data = os.read(self.stop_fd, 4096)
        except (BlockingIOError, OSError):
            data = b""
        else:
            if not data:
                # End of file: the main side is gone (killed, crashed). Nobody will ever
                # send a stop request again, so treat it as one; a task that loops on
                # `stopping` ends instead of spinning as an orphan.
                self.stop_all = True
        for (target,) in iter_unpack("!Q", data[: len(data) // 8 * 8]):
            if target == 0:
                self.stop_all = True
            else:
                self.stop_batches.add(target)
        return self.stop_all or self.batch in self.stop_batches


def set_state(state: WorkerState | None) -> None:
    """The worker loop starts (a state) or ends (None) in the calling thread."""
    _local.state = state


def current_state() -> WorkerState | None:
    """The calling worker's state; None outside workers."""
    state: WorkerState | None = getattr(_local, "state", None)
    return state


def current_context() -> Any:
    """What the bootstrap returned in the calling worker (None outside workers or without bootstrap)."""
    state: WorkerState | None = getattr(_local, "state", None)
    return None if state is None else state.context


def current_worker() -> Any:
    """The :class:`~runtime.WorkerInfo` of the calling worker, or None in the main program."""
    state: WorkerState | None = getattr(_local, "state", None)
    if state is None:
        return None
    return WorkerInfo(**state.info)


def stop_requested(timeout: float | None = 0) -> bool:
    """True once the pool, or the executor for the running job, asked to stop.

    Waits up to ``timeout`` seconds (``None``: until asked) without polling: the
    wait is a ``select`` on the worker's stop pipe. Always False outside workers.
    """
    import select
    import time

    state: WorkerState | None = getattr(_local, "state", None)
    if state is None:
        if timeout:
            time.sleep(timeout)
        return False
    if state.poll_stop():
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([state.stop_fd], [], [], remaining)[0]:
            return False
        if state.poll_stop():
            return True
    return False


# How what goes back to the caller (results, exceptions) is pickled in the calling worker
# thread: set from the worker's pickling mode (runtime._pickling.set_worker_mode); None
# means plain pickle.
def set_results_pickler(pickler: Callable[[Any], bytes] | None) -> None:
    _local.pickler = pickler


def results_pickler() -> Callable[[Any], bytes] | None:
    pickler: Callable[[Any], bytes] | None = getattr(_local, "pickler", None)
    return pickler
