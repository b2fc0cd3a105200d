"""A ``concurrent.futures.Executor`` on supervised workers.

Data path: ``submit`` queues a work item and, when a worker has room, pickles a
*batch* of queued items onto that worker's pipe (one syscall). The worker loop
wakes on the read, runs the batch, writes one result frame. The hub thread in the
main interpreter reads it and completes the futures. Nothing polls. A worker that
dies fails only its own in-flight futures and is replaced: the executor never
becomes "broken" the way the stdlib pools do.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from ._capabilities import Capabilities, capabilities
from ._channel import pickling_for_process
from ._common import (
    close_at_exit,
    guard_main_import,
    init_spec,
    next_worker_id,
    pack_bootstrap,
    resolve_backend,
    warn_if_gil_returned,
)
from ._errors import (
    BackendUnavailable,
    BootstrapError,
    ConfigurationError,
    ExecutorShutdown,
    NotTransferable,
    WorkerCrashed,
)
from ._hub import Hub
from ._mapping import map_results
from ._pickling import culprit, mode_for
from ._pickling import dumps as pickle_for
from ._pickling import hint as pickling_hint
from ._policy import resolve_workers
from ._wire import decode_exception, dumps, frame
from .backends import WorkerHandle, create_worker, join_all
from .ops._executor_ops import ExecutorOps

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["Executor"]

log = logging.getLogger("runtime")
T = TypeVar("T")

_MAX_INFLIGHT = 2  # batches queued per worker: one running, one ready to go


class _Item:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ):
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs


class _Worker:
    __slots__ = ("handle", "inflight", "ready")

    def __init__(self, handle: WorkerHandle) -> None:
        self.handle = handle
        self.ready = False
        self.inflight: dict[int, list[_Item]] = {}


def _describe(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


class Executor(cf.Executor):
    """Run callables on ``workers`` subinterpreters, threads or processes.

    ``workers`` is a count or a fraction of the usable CPUs (default: all of them).
    ``bootstrap`` runs once in every worker before any job; callables reach its
    return value through :func:`runtime.current_context`. ``on_failure`` (a callable or
    reference) receives a :class:`runtime.Failure` for every job that fails;
    ``metrics=False`` keeps this executor out of ``/metrics``.
    """

    def __init__(
        self,
        workers: int | float | None = None,
        backend: str = "auto",
        bootstrap: Any = None,
        *,
        max_workers: int | None = None,
        max_batch: int = 256,
        on_failure: Any = None,
        metrics: bool = True,
        _capabilities: Capabilities | None = None,
    ) -> None:
        guard_main_import("Executor")
        if max_workers is not None:  # the concurrent.futures spelling
            if workers is not None:
                raise ConfigurationError("pass workers or max_workers, not both")
            workers = max_workers
        caps = _capabilities or capabilities()
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ConfigurationError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self._caps = caps
        self._count = resolve_workers(
            caps.cpu_count if workers is None else workers, caps.cpu_count
        )
        self.backend = resolve_backend(backend, caps)
        # Callables from an interactive __main__ (REPL, notebook) travel by value.
        self._pickling = mode_for(self.backend)
        self._bootstrap = pack_bootstrap(bootstrap, self.backend)
        self._ops = ExecutorOps(self, on_failure, metrics)
        self._max_batch = max_batch
        self._lock = threading.RLock()
        self._pending: collections.deque[_Item] = collections.deque()
        self._workers: dict[int, _Worker] = {}
        self._spawned: list[WorkerHandle] = []  # every worker ever started, joined at shutdown
        self._batch_ids = itertools.count(1)
        self._shutdown = False
        self._up = False  # every initial worker booted: later boot failures do not break us
        self._broken: BaseException | None = None
        self._all_exited = threading.Event()
        self._boot_done = threading.Condition(self._lock)
        self._hub = Hub(name="runtime-executor-hub")
        try:
            self._start_workers()
        except BaseException:
            self._teardown_now()
            raise
        self._ops.attach(self._hub)
        close_at_exit(self)

    # ------------------------------------------------------------------ start-up
    def _spawn(self) -> _Worker:
        handle = create_worker(
            self.backend, next_worker_id(), self._hub, self._on_message, self._on_closed
        )
        worker = _Worker(handle)
        self._workers[handle.id] = worker
        self._spawned.append(handle)
        info = {
            "id": handle.id,
            "backend": self.backend,
            "attempt": 1,
            "slot": None,
            "kind": None,
            "pid": 0,
        }
        try:
            handle.start(init_spec(info, self.backend, self._bootstrap))
        except Exception as exc:
            self._workers.pop(handle.id, None)
            raise BackendUnavailable(f"could not start a {self.backend} worker: {exc}") from exc
        return worker

    def _start_workers(self) -> None:
        with self._lock:
            for _ in range(self._count):
                self._spawn()
            while self._broken is None and not all(w.ready for w in self._workers.values()):
                self._boot_done.wait()
            if self._broken is not None:
                raise self._broken
            self._up = True

    # ------------------------------------------------------------------ hub callbacks
    def _on_message(self, handle: WorkerHandle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "results":
            with self._lock:
                worker = self._workers.get(handle.id)
                items = worker.inflight.pop(msg[1], None) if worker else None
            if items is not None:
                for item, (ok, value) in zip(items, msg[2], strict=True):
                    if ok:
                        item.future.set_result(value)
                    else:
                        item.future.set_exception(decode_exception(value))
                self._ops.batch_done(msg[1], items, msg[2], handle)
            with self._lock:
                self._dispatch()
                self._maybe_finish()
        elif kind == "ready":
            warn_if_gil_returned(msg[2], self._caps, self.backend)
            with self._lock:
                handle.pid = msg[1]
                worker = self._workers.get(handle.id)
                if worker is not None:
                    worker.ready = True
                self._boot_done.notify_all()
                self._dispatch()
        elif kind == "boot_failed":
            payload, refused = msg[1], msg[2]
            _, name, message, tb = payload
            cls = BackendUnavailable if refused else BootstrapError
            hint = " (use backend='thread' or backend='process')" if refused else ""
            error = cls(
                f"the bootstrap failed in a fresh {self.backend} worker: {name}: {message}{hint}",
                tb,
            )
            with self._lock:
                self._workers.pop(handle.id, None)
                if self._broken is None and (not self._workers or not self._up):
                    self._broken = error
                    self._fail_pending(error)
                else:  # a replacement failed to boot; the others carry on
                    log.error("runtime: a replacement worker could not start: %s", error)
                self._boot_done.notify_all()
                self._maybe_finish()

    def _on_closed(self, handle: WorkerHandle) -> None:
        with self._lock:
            self._spawned = [h for h in self._spawned if h is handle or not h.join(0)]
            worker = self._workers.pop(handle.id, None)
            if worker is None:
                self._maybe_finish()
                return
            lost = [item for items in worker.inflight.values() for item in items]
            was_ready = worker.ready
        if lost:
            error = WorkerCrashed(
                f"{handle.describe_exit()} while running {len(lost)} job(s) "
                f"(first: {_describe(lost[0].fn)}); those jobs failed, the worker was replaced"
            )
            for item in lost:
                if not item.future.done():
                    item.future.set_exception(error)
            self._ops.worker_lost(handle, worker.inflight, error)
        with self._lock:
            if not self._shutdown and self._broken is None:
                if was_ready:
                    log.warning("runtime: %s; replacing it", handle.describe_exit())
                    self._ops.worker_replaced()
                    try:
                        self._spawn()
                    except Exception as exc:
                        log.error("runtime: could not replace a worker: %s", exc)
                elif not self._up or not self._workers:
                    self._broken = BootstrapError(
                        f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
                    )
                    self._boot_done.notify_all()
                else:  # a replacement died while booting; the others carry on
                    log.error(
                        "runtime: a replacement worker died while bootstrapping: %s",
                        handle.describe_exit(),
                    )
            if not self._workers and self._broken is not None:
                self._fail_pending(self._broken)
            self._dispatch()
            self._maybe_finish()

    # ------------------------------------------------------------------ dispatch
    def _fail_pending(self, error: BaseException) -> None:
        while self._pending:
            item = self._pending.popleft()
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    def _dispatch(self) -> None:
        """Hand queued items to workers with room. Called with the lock held."""
        if not self._pending:
            return
        ready = [w for w in self._workers.values() if w.ready and len(w.inflight) < _MAX_INFLIGHT]
        if not ready:
            return
        # One batch per worker per pass, least-loaded first, so a burst spreads out.
        while self._pending and ready:
            ready.sort(key=lambda w: len(w.inflight))
            for worker in ready:
                if not self._pending:
                    break
                size = max(
                    1, min(self._max_batch, len(self._pending) // (4 * max(1, len(self._workers))))
                )
                batch: list[_Item] = []
                while self._pending and len(batch) < size:
                    item = self._pending.popleft()
                    if item.future.set_running_or_notify_cancel():
                        batch.append(item)
                if batch:
                    self._send_batch(worker, batch)
            ready = [w for w in ready if len(w.inflight) < _MAX_INFLIGHT and w.ready]

    def _send_batch(self, worker: _Worker, batch: list[_Item]) -> None:
        if self.backend == "process":
            with pickling_for_process():
                self._send_batch_now(worker, batch)
        else:
            self._send_batch_now(worker, batch)

    def _send_batch_now(self, worker: _Worker, batch: list[_Item]) -> None:
        calls = [(item.fn, item.args, item.kwargs) for item in batch]
        mode = self._pickling
        try:
            blob = pickle_for(calls, mode)
        except Exception:
            good: list[_Item] = []
            for item in batch:
                try:
                    pickle_for((item.fn, item.args, item.kwargs), mode)
                except Exception as exc:
                    self._ops.send_failed(item.fn, exc)
                    item.future.set_exception(
                        NotTransferable(
                            f"cannot send the call {_describe(item.fn)}(...) to a {self.backend} worker: "
                            f"{type(exc).__name__}: {exc}. {culprit(item.fn, mode)}"
                            f"{pickling_hint(mode)}"
                        )
                    )
                else:
                    good.append(item)
            if not good:
                return
            batch = good
            blob = pickle_for([(i.fn, i.args, i.kwargs) for i in batch], mode)
        batch_id = next(self._batch_ids)
        worker.inflight[batch_id] = batch
        self._ops.batch_sent(batch_id)
        message = frame(dumps(("calls", batch_id, len(batch), blob)))
        # If the worker is gone, _on_closed fails this batch and replaces the worker.
        with contextlib.suppress(BrokenPipeError):
            worker.handle.send_frame(message)

    def _maybe_finish(self) -> None:
        if not self._shutdown:
            return
        if self._pending or any(w.inflight for w in self._workers.values()):
            return
        for worker in list(self._workers.values()):
            worker.handle.exit()
        if not self._workers:
            self._all_exited.set()

    # ------------------------------------------------------------------ Executor API
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {fn!r}")
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._shutdown:
                raise ExecutorShutdown("cannot submit: the executor is shut down")
            future: cf.Future[T] = cf.Future()
            self._pending.append(_Item(future, fn, args, kwargs))
            self._ops.submitted += 1
            self._dispatch()
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[T]:
        """Like ``concurrent.futures.Executor.map`` (Python 3.14's, ``buffersize`` included).

        Items travel in chunks; with ``chunksize=1`` and no ``buffersize`` the whole
        input is read at once and chunked automatically from the item and worker counts.
        ``buffersize=k`` makes the map lazy: at most ``k`` chunks of ``chunksize`` items
        are submitted ahead of the results taken, so it works on endless iterators.
        ``ordered=False`` yields results as their chunks finish instead of in input
        order. A failing item raises its exception when its turn comes; the chunks not
        started are cancelled.
        """
        return map_results(
            self,
            fn,
            iterables,
            timeout=timeout,
            chunksize=chunksize,
            buffersize=buffersize,
            ordered=ordered,
            auto_chunksize=self._auto_chunksize,
        )

    def _auto_chunksize(self, count: int) -> int:
        # About 8 chunks per worker keeps every worker busy while amortising the per-job cost.
        return max(1, min(self._max_batch, count // (8 * self._count)))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            self._maybe_finish()
        if wait:
            self._all_exited.wait()
            join_all(self._spawned, 5.0)
            self._hub.close()
            self._ops.close()
        else:
            threading.Thread(
                target=self._close_when_done, name="runtime-executor-closer", daemon=True
            ).start()

    def _close_when_done(self) -> None:
        self._all_exited.wait()
        join_all(self._spawned, 5.0)
        self._hub.close()
        self._ops.close()

    def _close_at_exit(self) -> None:
        if not self._all_exited.is_set():
            self.shutdown(wait=True)

    def _teardown_now(self) -> None:
        with self._lock:
            self._shutdown = True
            handles = [w.handle for w in self._workers.values()]
        for handle in handles:
            handle.exit()
        join_all(self._spawned, 5.0)
        self._hub.close()
        self._ops.close()

    def request_stop(self, future: cf.Future[Any] | None = None) -> bool:
        """Ask running jobs to stop: ``runtime.stop_requested()`` turns true inside them.

        With ``future``, only that job is asked, and the call returns False if the job
        is not running (use ``future.cancel()`` for queued jobs). Without it, every
        running job is asked. Cooperative: a job that never checks runs to the end.
        Jobs sent in the same batch as the stopped one see the flag too (batches form
        under bursts of submits); later batches do not.
        """
        with self._lock:
            found = False
            for worker in self._workers.values():
                for batch_id, items in worker.inflight.items():
                    if future is None or any(item.future is future for item in items):
                        worker.handle.request_stop(batch_id)
                        found = True
            return found

    @property
    def workers(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<runtime.Executor workers={self._count} backend={self.backend} shutdown={self._shutdown}>"
