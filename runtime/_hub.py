"""The main interpreter's I/O thread: one selector over every worker's pipes.

Results from all workers are read here and handed to a callback; writes to a
worker that would block are buffered and finished when its pipe drains, so no
thread ever blocks on a full pipe while its peer waits on it (the classic
two-pipe deadlock). Callers on other threads write directly when the pipe has
room, which keeps submit → worker to one syscall.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import pickle
import selectors
import threading
from typing import TYPE_CHECKING, Any

from ._wire import HEADER
from .ops._heartbeat import Heartbeat

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("runtime")

__all__ = ["Connection", "Hub"]


class Connection:
    """Main-side ends of one worker's pipes, driven by a :class:`Hub`."""

    def __init__(
        self,
        hub: Hub,
        read_fd: int,
        write_fd: int,
        on_message: Callable[[Any], None],
        on_close: Callable[[], None],
    ) -> None:
        self.hub = hub
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.on_message = on_message
        self.on_close = on_close
        self._pending: collections.deque[memoryview] = collections.deque()
        self._lock = threading.Lock()
        self._rbuf = bytearray()
        self.closed = False
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)

    def send_bytes(self, data: bytes) -> None:
        """Queue one frame; written now if the pipe has room, otherwise by the hub thread."""
        view = memoryview(data)
        with self._lock:
            if self.closed:
                raise BrokenPipeError("worker connection is closed")
            if not self._pending:
                try:
                    n = os.write(self.write_fd, view)
                except BlockingIOError:
                    n = 0
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.EBADF):
                        raise BrokenPipeError("worker is gone") from exc
                    raise
                if n == len(view):
                    return
                view = view[n:]
            self._pending.append(view)
        self.hub._want_write(self)

    def _flush(self) -> bool:
        """Write what is pending; True when nothing is left. Called on the hub thread."""
        with self._lock:
            while self._pending:
                view = self._pending[0]
                try:
                    n = os.write(self.write_fd, view)
                except BlockingIOError:
                    return False
                except OSError:
                    self._pending.clear()
                    return True
                if n == len(view):
                    self._pending.popleft()
                else:
                    self._pending[0] = view[n:]
                    return False
            return True

    def _feed(self, data: bytes) -> list[Any]:
        buf = self._rbuf
        buf += data
        messages = []
        offset = 0
        size = HEADER.size
        while len(buf) - offset >= size:
            (length,) = HEADER.unpack_from(buf, offset)
            if len(buf) - offset - size < length:
                break
            start = offset + size
            messages.append(pickle.loads(memoryview(buf)[start : start + length]))
            offset = start + length
        if offset:
            del buf[:offset]
        return messages

    def close_fds(self) -> None:
        with self._lock:
            self.closed = True
            self._pending.clear()
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Hub:
    """One daemon thread multiplexing every registered :class:`Connection`."""

    def __init__(self, name: str = "runtime-hub") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._todo: collections.deque[tuple[str, Connection]] = collections.deque()
        self._closing = False
        self._closed = False  # the loop has ended: nothing registers any more
        self._todo_lock = threading.Lock()
        self.heartbeat = Heartbeat("hub")  # for /healthz: parked in select, or busy since
        try:
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self.heartbeat.thread = self._thread
            self._thread.start()
        except RuntimeError as exc:  # e.g. inside a subinterpreter: daemon threads are refused
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            from ._errors import BackendUnavailable

            raise BackendUnavailable(
                f"cannot start runtime's I/O thread here ({exc}); create pools and executors in "
                "the main interpreter and hand work to workers through them or a Channel"
            ) from exc

    def add(self, conn: Connection) -> None:
        with self._todo_lock:
            if self._closed or self._closing:
                raise RuntimeError("the runtime I/O hub is closed; no new worker can join it")
            self._todo.append(("add", conn))
        self._wake()

    def remove(self, conn: Connection) -> None:
        self._todo.append(("remove", conn))
        self._wake()

    def _want_write(self, conn: Connection) -> None:
        self._todo.append(("write", conn))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def close(self) -> None:
        self._closing = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    def _apply_todo(self) -> None:
        sel = self._selector
        while self._todo:
            action, conn = self._todo.popleft()
            if action == "add":
                if not conn.closed:
                    sel.register(conn.read_fd, selectors.EVENT_READ, conn)
            elif action == "remove":
                self._drop(conn, notify=False)
            elif action == "write" and not conn.closed:
                if conn._flush():
                    continue
                try:
                    key = sel.get_key(conn.write_fd)
                except KeyError:
                    sel.register(conn.write_fd, selectors.EVENT_WRITE, conn)
                else:
                    del key

    def _drop(self, conn: Connection, *, notify: bool) -> None:
        for fd in (conn.read_fd, conn.write_fd):
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
        if not conn.closed:
            conn.close_fds()
            if notify:
                try:
                    conn.on_close()
                except Exception:
                    log.exception("runtime: error in a worker-exit callback")

    def _loop(self) -> None:
        sel = self._selector
        heartbeat = self.heartbeat
        while not self._closing:
            self._apply_todo()
            heartbeat.park("worker messages")
            ready = sel.select()
            heartbeat.beat()
            for key, events in ready:
                conn = key.data
                if conn is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                if conn.closed:
                    continue
                if events & selectors.EVENT_WRITE and key.fd == conn.write_fd:
                    if conn._flush():
                        with contextlib.suppress(KeyError, ValueError):
                            sel.unregister(conn.write_fd)
                    continue
                try:
                    data = os.read(conn.read_fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop(conn, notify=True)
                    continue
                try:
                    messages = conn._feed(data)
                except Exception:
                    log.exception("runtime: undecodable message from a worker; dropping the worker")
                    self._drop(conn, notify=True)
                    continue
                for msg in messages:
                    try:
                        conn.on_message(msg)
                    except Exception:
                        log.exception("runtime: error while handling a worker message")
        # Connections added just before close() may still sit in the to-do list: register
        # them too, so that every worker gets its end-of-file and its exit callback.
        with self._todo_lock:
            self._closed = True
        heartbeat.close()
        self._apply_todo()
        for key in list(sel.get_map().values()):
            if key.data is not None:
                self._drop(key.data, notify=True)
        sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
