"""A channel between the main interpreter and workers of every backend.

Built only from OS pipes, so the same object works in the main interpreter, in
own-GIL subinterpreters, in threads and in child processes, and every blocking
wait is a ``select`` on a file descriptor — the thread sleeps in the kernel until
the other side acts, instead of waking up every 10 ms as the PEP 734 queue does.

* ``data``: framed pickles (8-byte length + payload).
* ``send lock`` / ``recv lock``: a pipe holding one token byte. Taking the byte is
  acquiring; putting it back is releasing. This is a mutex every interpreter and
  process can share, and a waiter blocks in ``select`` without polling.
* ``slots`` (bounded channels): a pipe holding one token per free place.
* ``closed``: becomes readable once, forever, when the channel is closed.

An unbounded channel can buffer as much as the OS pipe holds (1 MiB on Linux,
raised with ``F_SETPIPE_SZ``); beyond that ``send`` waits for a receiver and
``send_nowait`` raises :class:`ChannelFull`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import threading
import time

from ._errors import (
    ChannelClosed,
    ChannelEmpty,
    ChannelFull,
    ChannelTimeout,
    ConfigurationError,
    NotTransferable,
)
from ._wire import HEADER, PIPE_SIZE, PROTOCOL, make_pipe, read_exact, write_all

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Channel"]

_local = threading.local()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class _Token:
    """A counting semaphore in a pipe: one byte per permit."""

    def __init__(self, r: int, w: int) -> None:
        self.r = r
        self.w = w

    def try_acquire(self) -> bool:
        try:
            return bool(os.read(self.r, 1))
        except BlockingIOError:
            return False

    def acquire(self, deadline: float | None, closed_fd: int | None = None) -> bool:
        """Take a permit; False on timeout. Raises ChannelClosed if ``closed_fd`` fires first."""
        while True:
            if self.try_acquire():
                return True
            if closed_fd is not None and _is_readable(closed_fd):
                raise ChannelClosed("the channel is closed")
            timeout = _remaining(deadline)
            if timeout == 0.0:
                return False
            fds = [self.r] if closed_fd is None else [self.r, closed_fd]
            select.select(fds, [], [], timeout)

    def release(self, n: int = 1) -> None:
        os.write(self.w, b"t" * n)


def _is_readable(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _read_exact(fd: int, n: int) -> bytes:
    data = read_exact(fd, n)
    if data is None:
        raise ChannelClosed("the channel's pipe was closed underneath it")
    return data


class Channel:
    """A multi-producer, multi-consumer channel that crosses interpreters and processes.

    ``capacity=None`` is unbounded (up to the OS pipe buffer); ``capacity=N`` makes
    ``send`` wait when N messages are queued. Pass the channel to a worker as a task
    constructor argument or a call argument; every copy talks to the same pipes.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
        ):
            raise ConfigurationError(
                f"capacity must be None (unbounded) or an int >= 1, got {capacity!r}"
            )
        self.capacity = capacity
        self._data = make_pipe(PIPE_SIZE, nonblocking=True)
        self._closed = make_pipe(nonblocking=True)
        self._send_lock = _Token(*make_pipe(nonblocking=True))
        self._recv_lock = _Token(*make_pipe(nonblocking=True))
        self._send_lock.release()
        self._recv_lock.release()
        self._slots: _Token | None = None
        if capacity is not None:
            slots_r, slots_w = make_pipe(max(PIPE_SIZE, capacity), nonblocking=True)
            self._slots = _Token(slots_r, slots_w)
            self._slots.release(capacity)
        self._owner_pid = os.getpid()
        self._owns_fds = True

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        """True once any copy of the channel was closed."""
        return _is_readable(self._closed[0])

    def close(self) -> None:
        """Close for sending. Receivers still get what is buffered, then :class:`ChannelClosed`."""
        if not self.closed:
            with contextlib.suppress(BlockingIOError):
                os.write(self._closed[1], b"c")

    def fileno(self) -> int:
        """A descriptor that is readable while messages may be waiting (for select/poll users)."""
        return self._data[0]

    # ------------------------------------------------------------------ send
    def _encode(self, obj: Any) -> bytes:
        try:
            payload = pickle.dumps(obj, protocol=PROTOCOL)
        except Exception as exc:
            where = getattr(type(obj), "__module__", "?")
            raise NotTransferable(
                f"cannot send an object of type {where}.{type(obj).__qualname__} over a channel: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return HEADER.pack(len(payload)) + payload

    def send(self, obj: Any, timeout: float | None = None) -> None:
        """Send ``obj``; waits for room in a bounded channel. Raises ChannelClosed / ChannelTimeout."""
        self._send(obj, None if timeout is None else time.monotonic() + timeout, timeout)

    def send_nowait(self, obj: Any) -> None:
        """Send without waiting; raises :class:`ChannelFull` if there is no room now."""
        self._send(obj, time.monotonic(), 0.0, nowait=True)

    def _send(
        self, obj: Any, deadline: float | None, timeout: float | None, nowait: bool = False
    ) -> None:
        data = self._encode(obj)
        if self.closed:
            raise ChannelClosed("cannot send: the channel is closed")
        if self._slots is not None and not self._slots.acquire(deadline, self._closed[0]):
            if nowait:
                raise ChannelFull(f"the channel is at its capacity of {self.capacity}")
            raise ChannelTimeout(f"send timed out after {timeout}s: the channel stayed full")
        try:
            if not self._send_lock.acquire(deadline):
                raise ChannelTimeout(f"send timed out after {timeout}s waiting for other senders")
            try:
                if (
                    nowait
                    and self._slots is None
                    and not select.select([], [self._data[1]], [], 0)[1]
                ):
                    raise ChannelFull("the channel's OS buffer is full")
                write_all(self._data[1], data)
            finally:
                self._send_lock.release()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise

    # ------------------------------------------------------------------ receive
    def recv(self, timeout: float | None = None) -> Any:
        """Receive the next message, waiting up to ``timeout`` seconds (None: forever)."""
        return self._recv(None if timeout is None else time.monotonic() + timeout, timeout)

    def recv_nowait(self) -> Any:
        """Receive without waiting; raises :class:`ChannelEmpty` if nothing is buffered."""
        return self._recv(time.monotonic(), 0.0, nowait=True)

    def _recv(self, deadline: float | None, timeout: float | None, nowait: bool = False) -> Any:
        data_r, closed_r = self._data[0], self._closed[0]
        while True:
            # Wait for data *before* taking the receive lock: a receiver that dies while it
            # waits (a process worker SIGKILLed in recv) must not take the lock's token,
            # and with it every other receiver, down with it. The lock is held only while
            # a frame that is already there is read.
            ready, _, _ = select.select([data_r, closed_r], [], [], _remaining(deadline))
            if data_r not in ready:
                if closed_r in ready:
                    raise ChannelClosed("the channel is closed and empty")
                if nowait:
                    raise ChannelEmpty("nothing to receive")
                raise ChannelTimeout(f"recv timed out after {timeout}s")
            if not self._recv_lock.acquire(deadline):
                if nowait:
                    raise ChannelEmpty("nothing to receive")
                raise ChannelTimeout(f"recv timed out after {timeout}s waiting for other receivers")
            try:
                if not _is_readable(data_r):
                    continue  # another receiver took that message: wait again
                (size,) = HEADER.unpack(_read_exact(data_r, HEADER.size))
                payload = _read_exact(data_r, size)
            finally:
                self._recv_lock.release()
            break
        if self._slots is not None:
            self._slots.release()
        return pickle.loads(payload)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Channel:
        return self

    def __next__(self) -> Any:
        try:
            return self.recv()
        except ChannelClosed:
            raise StopIteration from None

    # ------------------------------------------------------------------ transfer
    def _fds(self) -> list[int]:
        fds = [
            *self._data,
            *self._closed,
            self._send_lock.r,
            self._send_lock.w,
            self._recv_lock.r,
            self._recv_lock.w,
        ]
        if self._slots is not None:
            fds += [self._slots.r, self._slots.w]
        return fds

    def __reduce__(self) -> tuple[Any, ...]:
        fds = self._fds()
        if getattr(_local, "for_process", False):
            from multiprocessing.reduction import DupFd

            return (_rebuild_dup, (self.capacity, [DupFd(fd) for fd in fds]))
        return (_rebuild_shared, (self.capacity, fds, self._owner_pid))

    def _adopt(self, capacity: int | None, fds: list[int], owns: bool) -> None:
        self.capacity = capacity
        self._data = (fds[0], fds[1])
        self._closed = (fds[2], fds[3])
        self._send_lock = _Token(fds[4], fds[5])
        self._recv_lock = _Token(fds[6], fds[7])
        self._slots = _Token(fds[8], fds[9]) if len(fds) > 8 else None
        self._owner_pid = os.getpid()
        self._owns_fds = owns
        for fd in fds:
            os.set_blocking(fd, False)

    def release(self) -> None:
        """Close this copy's descriptors (the creator's copy also does so when collected)."""
        if self._owns_fds:
            self._owns_fds = False
            for fd in self._fds():
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    def __repr__(self) -> str:
        state = "closed" if self._owns_fds is not None and self._safe_closed() else "open"
        return f"<runtime.Channel capacity={self.capacity} {state}>"

    def _safe_closed(self) -> bool:
        try:
            return self.closed
        except (OSError, ValueError):
            return True


def _rebuild_shared(capacity: int | None, fds: list[int], pid: int) -> Channel:
    if pid != os.getpid():
        raise NotTransferable(
            "this channel was pickled for a worker in the same process and cannot be opened in "
            "another one; pass it to process workers through a runtime Pool/Executor argument"
        )
    channel = Channel.__new__(Channel)
    channel._adopt(capacity, fds, owns=False)
    return channel


def _rebuild_dup(capacity: int | None, dups: list[Any]) -> Channel:
    key = os.environ.get("RUNTIME_MP_AUTHKEY")
    if key:
        # The descriptors are handed over by multiprocessing's resource sharer, which
        # authenticates with the parent's key; our workers are not multiprocessing children.
        from multiprocessing import process

        process.current_process().authkey = bytes.fromhex(key)
    channel = Channel.__new__(Channel)
    channel._adopt(capacity, [d.detach() for d in dups], owns=True)
    return channel


@contextlib.contextmanager
def pickling_for_process() -> Any:
    """While active on this thread, channels pickle as duplicated descriptors for a child process."""
    previous = getattr(_local, "for_process", False)
    _local.for_process = True
    try:
        yield
    finally:
        _local.for_process = previous
