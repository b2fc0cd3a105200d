"""A ``concurrent.futures.Executor`` on supervised workers.

Data path: ``submit`` queues a work item and, when a worker has room, pickles a
*batch* of queued items onto that worker's pipe (one syscall). The worker loop
wakes on the read, runs the batch, writes one result frame. Whoever holds the
executor inbox's reader role (``runtime._inbox``) reads it and completes the
futures in one place, :meth:`Executor._complete_batch`: a caller blocked in
``result()``, an event loop awaiting results, or the hub thread when nobody else
reads. Nothing polls. A worker that dies fails only its own in-flight futures and
is replaced: the executor never becomes "broken" the way the stdlib pools do.

Start-up does not wait: the constructor starts every worker and returns; jobs
queue until the first worker is ready, and while the first workers boot a ready
worker takes one batch at a time, so a burst still spreads over all of them.
A bootstrap that fails in one of the first workers breaks the executor, and the
error (with the worker's traceback) is raised by the next ``submit`` (and
:meth:`Executor.wait_ready`) and set on every queued job's future; so does a first
worker whose bootstrap outlives ``boot_timeout``.

The workers are :class:`~runtime._executor_workers.ExecutorWorkers`' (replacement,
recycling without a dip, the first workers' boot), on a :class:`~runtime._workerset.WorkerSet`
(spawn, boot deadline, kill-or-abandon, the standby hand-over). A worker that is retired
gets no new batch (``ready`` is false) and runs what it holds before it ends, so every
job runs exactly once.

Without limits the per-job path is unchanged: ``_send`` checks one attribute. Without
observers, each event costs one attribute check (``runtime._events``).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import itertools
import logging
import threading
import time

from ._early import (
    AUTO_SUBINTERPRETERS,
    DEFAULT_BOOT_TIMEOUT,
    _config_error,
    fast_switching,
    guard_main_import,
    resolve_workers,
    start_interpreters,
    usable_cpu_count,
)

# Not typing.TYPE_CHECKING: see _load() for why this module keeps its imports few.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, Protocol, TypeVar

    from ._capabilities import Capabilities
    from ._common import (
        bootstrap_name,
        close_at_exit,
        pack_bootstrap,
        resolve_backend,
        warn_if_gil_returned,
    )
    from ._early import EarlyInterpreter
    from ._errors import ExecutorShutdown, NotTransferable, WorkerCrashed
    from ._events import BatchFinished, Hooks, JobEvent, JobFailed, Observer
    from ._executor_workers import ExecutorWorkers, _Worker
    from ._future import Future
    from ._hub import Hub
    from ._inbox import Inbox
    from ._lifecycle import Limits
    from ._mapping import auto_chunksize
    from ._pickling import culprit, mode_for
    from ._pickling import dumps as pickle_for
    from ._pickling import hint as pickling_hint
    from ._statistics import ExecutorStatistics
    from ._task import WorkerInfo
    from ._wire import (
        MARSHAL_TAG,
        calls_frame,
        decode_exception,
        encode_exception,
        exception_name,
        pack_calls,
    )
    from ._wire import _pickle as pickle_pair
    from ._worker import map_chunk
    from ._workerset import State
    from .backends import WorkerHandle
    from .ops._executor_ops import ExecutorOps

    T = TypeVar("T")
    _new_batch: Callable[[tuple[Any, ...]], BatchFinished]

    class Completion(Protocol):
        """What the executor needs of a job's future: ``concurrent.futures.Future``'s protocol.

        ``submit`` returns a real Future; the async front awaits single jobs through a leaner
        ``runtime.aio._reader.Call``.
        """

        _state: str

        def set_running_or_notify_cancel(self) -> bool: ...

        def set_result(self, result: Any) -> None: ...

        def set_exception(self, exception: BaseException | None) -> None: ...

        def cancel(self) -> bool: ...

        def done(self) -> bool: ...


_loaded = False


def _load() -> None:
    """Import the executor's machinery (at the first construction, once).

    Deferred from the module's import so that a new executor starts creating its
    interpreters first (``runtime._early``): in a fresh process this import costs more
    than creating the interpreters, and the two now overlap. The names are bound as
    this module's globals, exactly as top-level imports would bind them.
    """
    global bootstrap_name, close_at_exit, pack_bootstrap, resolve_backend, warn_if_gil_returned
    global Hub, Inbox, Limits, culprit, mode_for, pickle_for, pickling_hint
    global WorkerHandle, ExecutorOps, _loaded
    global ExecutorShutdown, NotTransferable, WorkerCrashed
    global MARSHAL_TAG, calls_frame, decode_exception, encode_exception, exception_name
    global pack_calls
    global pickle_pair, Future, Hooks, BatchFinished, JobEvent, JobFailed, WorkerInfo
    global State, ExecutorWorkers, map_chunk, auto_chunksize, _new_batch
    from ._common import (
        bootstrap_name,
        close_at_exit,
        pack_bootstrap,
        resolve_backend,
        warn_if_gil_returned,
    )
    from ._errors import ExecutorShutdown, NotTransferable, WorkerCrashed
    from ._events import BatchFinished, Hooks, JobEvent, JobFailed
    from ._executor_workers import ExecutorWorkers
    from ._future import Future
    from ._hub import Hub
    from ._inbox import Inbox
    from ._lifecycle import Limits
    from ._mapping import auto_chunksize
    from ._pickling import culprit, mode_for
    from ._pickling import dumps as pickle_for
    from ._pickling import hint as pickling_hint
    from ._task import WorkerInfo
    from ._wire import (
        MARSHAL_TAG,
        calls_frame,
        decode_exception,
        encode_exception,
        exception_name,
        pack_calls,
    )
    from ._wire import _pickle as pickle_pair  # (dumps, loads), imported on first use
    from ._worker import map_chunk
    from ._workerset import State
    from .backends import WorkerHandle
    from .ops._executor_ops import ExecutorOps

    # BatchFinished(...) without the Python frame of a named tuple's __new__: once per batch.
    _new_batch = functools.partial(tuple.__new__, BatchFinished)
    _loaded = True


__all__ = ["Executor"]

log = logging.getLogger("runtime")

_MAX_INFLIGHT = 2  # batches queued per worker: one running, one ready to go
_perf_counter = time.perf_counter


class _Item:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(
        self,
        future: Completion,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ):
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs


def _describe(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def _fail(items: list[_Item], error: BaseException) -> None:
    """Fail the running jobs ``items`` that are not done yet with ``error``."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


def _user_fn(fn: Any, args: tuple[Any, ...]) -> Any:
    """What observers are told a job runs: the user's function for a ``map`` chunk."""
    return args[0] if fn is map_chunk else fn


class Executor(cf.Executor):
    """Run callables on ``workers`` subinterpreters, threads or processes.

    ``workers`` is a count or a fraction of the usable CPUs (default: all of them).
    ``bootstrap`` runs once in every worker before any job; callables reach its
    return value through :func:`runtime.current_context`. ``on_failure`` (a callable or
    reference) receives a :class:`runtime.Failure` for every job that fails;
    ``metrics=False`` keeps this executor out of ``/metrics``. ``observers`` (a list of
    :class:`runtime.Observer`) hear this executor's events.

    Recycling (keyword-only, default off): ``max_tasks_per_worker=N`` replaces a worker
    after it took N jobs (a ``submit`` is one job; a ``map`` chunk is one job);
    ``max_worker_memory`` (bytes, or ``"512M"``/``"2G"``) replaces a worker that holds
    more (measured inside it, see :func:`runtime._usage.worker_memory` for what each
    backend counts; a soft limit); ``max_worker_age`` (seconds) replaces a worker after
    that long. A recycled worker finishes what it holds; its successor boots first.
    ``boot_timeout`` (seconds, default 60, None: no limit) gives up on a bootstrap that
    takes longer: :class:`BootstrapError` for the first workers (as a failed bootstrap),
    a logged retry with back-off for replacements.
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
        observers: Iterable[Observer] = (),
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
        _capabilities: Capabilities | None = None,
    ) -> None:
        guard_main_import("Executor")
        if max_workers is not None:  # the concurrent.futures spelling
            if workers is not None:
                raise _config_error("pass workers or max_workers, not both")
            workers = max_workers
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise _config_error(f"max_batch must be an int >= 1, got {max_batch!r}")
        cpus = usable_cpu_count() if _capabilities is None else _capabilities.cpu_count
        self._count = resolve_workers(cpus if workers is None else workers, cpus)
        # Interpreters take longer to create than the rest of the package takes to load
        # (see runtime._early): start creating them first. While this process still has
        # the package to load, leave a CPU to the loading, so that it does not slow down
        # the creation that the first result waits for (the rest start at spawn).
        ahead = self._count if _loaded else min(self._count, max(1, cpus - 1))
        early = start_interpreters(ahead, backend, injected=_capabilities is not None)
        try:
            if not _loaded:
                with fast_switching:  # its imports wait for the GIL at each file they read
                    _load()
            self._hooks = Hooks(observers)
            self._limits = Limits(
                max_tasks_per_worker, max_worker_memory, max_worker_age, boot_timeout
            )
            self._setup(backend, bootstrap, max_batch, on_failure, metrics, early, _capabilities)
        finally:
            for interp in early:  # not handed to a worker: the constructor failed
                interp.discard()

    def _setup(
        self,
        backend: str,
        bootstrap: Any,
        max_batch: int,
        on_failure: Any,
        metrics: bool,
        early: list[EarlyInterpreter],
        injected: Capabilities | None,
    ) -> None:
        if early:  # the early start already knew: subinterpreters (see runtime._early)
            self._caps: Capabilities | None = None  # read for thread workers only
            self.backend = "subinterpreter"
            if backend == "auto":
                log.info("runtime: backend=auto chose 'subinterpreter': %s", AUTO_SUBINTERPRETERS)
        else:
            from ._capabilities import capabilities

            self._caps = injected or capabilities()
            self.backend = resolve_backend(backend, self._caps)
        # Callables from an interactive __main__ (REPL, notebook) travel by value.
        self._pickling = mode_for(self.backend)
        # Channels in a call are pickled as duplicated fds for a child process.
        self._send_batch = self._send_to_process if self.backend == "process" else self._send
        self._ops = ExecutorOps(self, on_failure, metrics)
        self._max_batch = max_batch
        self._lock = threading.RLock()
        self._pending: collections.deque[_Item] = collections.deque()
        # batch id -> (worker id, jobs) whose results arrived and whose futures are being set
        self._completing: dict[int, tuple[int, list[_Item]]] = {}
        self._sent: dict[int, float] = {}  # batch id -> when written (for batch_finished)
        self._batch_ids = itertools.count(1)
        self._shutdown = False
        self._all_exited = threading.Event()
        self._submitted = self._completed = self._failed = 0
        self._hub = Hub(name="runtime-executor-hub")
        self._inbox = Inbox(self._hub)
        self._inbox.others_in_flight = self._jobs_in_flight
        self._crew = ExecutorWorkers(
            self,
            backend=self.backend,
            hub=self._hub,
            reader=self._inbox,
            limits=self._limits,
            bootstrap=pack_bootstrap(bootstrap, self.backend),
            boot_name=bootstrap_name(bootstrap),
            hooks=self._hooks,
            lock=self._lock,
            on_message=self._on_message,
            on_closed=self._on_closed,
            changed=self._changed,
            on_broken=self._fail_pending,
            stopping=lambda: self._shutdown,
            wanted=lambda: not self._shutdown or bool(self._pending),
            wake_reader=self._inbox.wake_reader,
        )
        self._workers = self._crew.members
        if self.backend != "subinterpreter":
            for interp in early:
                interp.discard()
            early.clear()
        try:
            with self._lock:
                for _ in range(self._count):
                    self._crew.spawn(initial=True, early=early.pop() if early else None)
        except BaseException:
            self._teardown_now()
            raise
        self._ops.attach(self._hooks, [self._hub.heartbeat])
        close_at_exit(self)

    # ------------------------------------------------------------------ worker messages
    # Handlers run on whichever thread reads the inbox. Each must be idempotent: a reader
    # interrupted by a signal handler leaves the message for the next reader to handle again.
    def _on_message(self, handle: WorkerHandle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "results":
            self._complete_batch(handle, msg[1], msg[2])
        elif kind == "results_failed":
            self._complete_batch(handle, msg[1], None, msg[2])
        else:  # lifecycle: ready, boot_failed, over_memory
            if kind == "ready":
                warn_if_gil_returned(msg[2], self._caps, self.backend)
            with self._lock:
                self._crew.set.message(handle, msg)

    def _complete_batch(
        self,
        handle: WorkerHandle,
        batch_id: int,
        results: list[tuple[bool, Any]] | None,
        failure: str | None = None,
    ) -> None:
        """Complete one finished batch's futures: every batch that ends well passes here.

        ``results`` holds ``(ok, value)`` per job; None (with ``failure``) when they could
        not be rebuilt in this process. Observers hear of every batch here, whoever read it.

        The batch leaves ``inflight`` (and the next one is dispatched) *before* its futures
        are set, so a caller that submits again from a done-callback, or as soon as its
        result returns, finds this worker free. Until every future is set the batch sits
        in ``_completing``: a reader interrupted half-way (see above) leaves it there, and
        the replayed message finishes it, or the worker's loss fails what is left.
        """
        with self._lock:
            entry = self._completing.get(batch_id)
            if entry is None:  # not a replay after an interruption: the usual case
                worker = self._workers.get(handle.id)
                popped = worker.inflight.pop(batch_id, None) if worker is not None else None
                if popped is None:
                    return
                entry = self._completing[batch_id] = (handle.id, popped)
                # Counted before any future is set, so that a caller woken by its result
                # reads statistics() that include its job; a failure moves its job from
                # completed to failed just before its future is set (below).
                self._completed += len(popped)
                if self._pending:
                    self._dispatch()
        items = entry[1]
        hooks = self._hooks
        failed = 0
        if results is None:
            error = NotTransferable(
                f"the results of {len(items)} job(s) (first: {_describe(items[0].fn)}) could "
                f"not be rebuilt in the caller: {failure}"
            )
            self._completed -= len(items)
            self._failed += len(items)
            _fail(items, error)
            failed = len(items)
            if hooks.job_failed:
                payload = encode_exception(error)
                for item in items:
                    self._job_failed(_user_fn(item.fn, item.args), item.future, payload, handle)
        else:
            finished = hooks.job_finished  # per job: only when an observer implements it
            for item, (ok, value) in zip(items, results, strict=True):
                future = item.future
                if future._state == "FINISHED":  # handled before an interruption
                    continue
                if ok and (item.fn is not map_chunk or value[1] is None):
                    future.set_result(value)
                    if finished:
                        finished(JobEvent(self, _user_fn(item.fn, item.args), future, handle.id))
                    continue
                failed += 1  # it raised, or a map() chunk whose function raised
                self._completed -= 1
                self._failed += 1
                if ok:
                    future.set_result(value)  # map() raises it when its turn comes
                    if hooks.job_failed:
                        self._job_failed(item.args[0], None, value[1], handle)
                else:
                    future.set_exception(decode_exception(value))
                    if hooks.job_failed:
                        self._job_failed(_user_fn(item.fn, item.args), future, value, handle)
        if hooks.batch_finished:
            started = self._sent.pop(batch_id, None)
            if started is not None:
                seconds = _perf_counter() - started
                hooks.batch_finished(_new_batch((self, handle.id, len(items), failed, seconds)))
        with self._lock:
            del self._completing[batch_id]
            if self._shutdown:
                self._maybe_finish()

    def _job_failed(self, fn: Any, future: Any, payload: Any, handle: WorkerHandle | None) -> None:
        worker = None
        if handle is not None:
            worker = WorkerInfo(id=handle.id, backend=self.backend, pid=handle.pid)
        self._hooks.job_failed(
            JobFailed(self, fn, future, worker, exception_name(payload[1]), payload[2], payload[3])
        )

    def _on_closed(self, handle: WorkerHandle) -> None:
        """A worker's pipe closed: fail the jobs it held; its replacement is the crew's."""
        crew = self._crew
        with self._lock:
            worker: _Worker | None = crew.set.closed(handle)  # type: ignore[assignment]
            if worker is None:
                self._maybe_finish()
                return
            batches = worker.inflight
            lost = [item for items in batches.values() for item in items]
            # Batches whose completion an interrupted reader left half done (see above).
            for batch_id, (owner, items) in list(self._completing.items()):
                if owner == handle.id:
                    del self._completing[batch_id]
                    lost += items
            for batch_id in batches:
                self._sent.pop(batch_id, None)
            was_ready = worker.booted
            if not was_ready:
                crew.booted(worker)
        if lost:
            error = WorkerCrashed(
                f"{handle.describe_exit()} while running {len(lost)} job(s) "
                f"(first: {_describe(lost[0].fn)}); those jobs failed, the worker was replaced"
            )
            _fail(lost, error)
            self._failed += len(lost)
            if self._hooks.job_failed:
                payload = encode_exception(error)
                for item in lost:
                    self._job_failed(_user_fn(item.fn, item.args), item.future, payload, handle)
        with self._lock:
            crew.lost(worker, handle, was_ready)
            if not self._workers and crew.broken is not None:
                self._fail_pending(crew.broken)
            self._changed()

    # ------------------------------------------------------------------ dispatch
    def _fail_pending(self, error: BaseException) -> None:
        while self._pending:
            item = self._pending.popleft()
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    def _dispatch(self) -> None:
        """Hand queued items to workers with room. Called with the lock held."""
        pending = self._pending
        if not pending:
            return
        # While the first workers boot, a ready one takes a single batch: a burst submitted
        # right after the constructor must not all land on whichever worker booted first.
        room = 1 if self._crew.booting else _MAX_INFLIGHT
        if len(pending) == 1:  # one call (the latency path): the least-loaded worker takes it
            best: _Worker | None = None
            for worker in self._workers.values():
                if worker.ready and len(worker.inflight) < room:
                    if not worker.inflight:
                        best = worker
                        break
                    if best is None or len(worker.inflight) < len(best.inflight):
                        best = worker
            if best is not None:
                item = pending.popleft()
                if item.future.set_running_or_notify_cancel():
                    self._send_batch(best, [item])
            return
        ready = [w for w in self._workers.values() if w.ready and len(w.inflight) < room]
        if not ready:
            return
        # One batch per worker per pass, least-loaded first, so a burst spreads out.
        while self._pending and ready:
            ready.sort(key=lambda w: len(w.inflight))
            for worker in ready:
                if not self._pending:
                    break
                if not worker.ready:
                    continue  # retired (recycling) earlier in this pass
                size = max(
                    1, min(self._max_batch, len(self._pending) // (4 * max(1, len(self._workers))))
                )
                if worker.budget is not None and size > worker.budget:
                    size = worker.budget  # max_tasks_per_worker: a batch never exceeds it
                batch: list[_Item] = []
                while self._pending and len(batch) < size:
                    item = self._pending.popleft()
                    if item.future.set_running_or_notify_cancel():
                        batch.append(item)
                if batch:
                    self._send_batch(worker, batch)
            ready = [w for w in ready if len(w.inflight) < room and w.ready]
            if not ready and self._pending and self._limits.recycles:
                # Workers retired in this pass: their successors may take what is left.
                ready = [w for w in self._workers.values() if w.ready and len(w.inflight) < room]

    def _send_to_process(self, worker: _Worker, batch: list[_Item]) -> None:
        from ._channel import pickling_for_process  # not loaded for the other backends

        with pickling_for_process():
            self._send(worker, batch)

    def _send(self, worker: _Worker, batch: list[_Item]) -> None:
        calls = [(item.fn, item.args, item.kwargs) for item in batch]
        mode = self._pickling
        tag = MARSHAL_TAG
        try:
            # Plain calls as marshal: a fresh worker answers them without importing pickle.
            blob = pack_calls(calls)
            if blob is None:
                tag = b""
                blob = pickle_pair()[0](calls) if mode is None else pickle_for(calls, mode)
        except Exception:
            good: list[_Item] = []
            for item in batch:
                try:
                    pickle_for((item.fn, item.args, item.kwargs), mode)
                except Exception as exc:
                    error = NotTransferable(
                        f"cannot send the call {_describe(item.fn)}(...) to a {self.backend} worker: "
                        f"{type(exc).__name__}: {exc}. {culprit(item.fn, mode)}"
                        f"{pickling_hint(mode)}"
                    )
                    self._failed += 1
                    if self._hooks.job_failed:
                        self._job_failed(item.fn, item.future, encode_exception(exc), None)
                    item.future.set_exception(error)
                else:
                    good.append(item)
            if not good:
                return
            batch = good
            tag = b""
            blob = pickle_for([(i.fn, i.args, i.kwargs) for i in batch], mode)
        batch_id = next(self._batch_ids)
        worker.inflight[batch_id] = batch
        hooks = self._hooks
        if hooks.batch_finished:
            self._sent[batch_id] = _perf_counter()
        if hooks.job_started:
            for item in batch:
                hooks.job_started(
                    JobEvent(self, _user_fn(item.fn, item.args), item.future, worker.handle.id)
                )
        try:  # noqa: SIM105 - on every call's path; try is cheaper than suppress()
            worker.handle.conn.send_bytes(calls_frame(batch_id, len(batch), blob, tag))
        except BrokenPipeError:
            pass  # the worker is gone: _on_closed fails this batch and replaces the worker
        if worker.budget is not None:  # the only per-batch cost of recycling
            self._crew.spend(worker, len(batch))

    def _jobs_in_flight(self) -> bool:
        """Whether any job is queued or running. Read without the lock by a reader that is
        done, to decide whether it keeps the inbox's role reserved (see ``Inbox.release``)."""
        if self._pending:
            return True
        return any(worker.inflight for worker in list(self._workers.values()))

    def _changed(self) -> None:
        """Workers came or went: hand out queued work, and finish if shutting down."""
        self._dispatch()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if not self._shutdown:
            return
        if self._jobs_in_flight():
            return
        self._crew.set.exit_all()
        if not self._workers and not self._all_exited.is_set():
            self._all_exited.set()
            # shutdown() may be reading the inbox for the workers' last messages; when the
            # last worker left without one (abandoned by a boot timeout, from a hub timer),
            # nothing else would wake it to see the event.
            self._inbox.wake_reader()

    # ------------------------------------------------------------------ Executor API
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        future: Future[T] = Future(self._inbox)
        self._submit(future, fn, args, kwargs)
        return future

    def _submit(
        self, future: Completion, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> None:
        """Queue ``fn(*args, **kwargs)``, completing ``future`` (the async front's way in)."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {fn!r}")
        with self._lock:
            if self._crew.broken is not None:
                raise self._crew.broken
            if self._shutdown:
                raise ExecutorShutdown("cannot submit: the executor is shut down")
            self._pending.append(_Item(future, fn, args, kwargs))
            self._submitted += 1
            if self._hooks.job_submitted:
                self._hooks.job_submitted(JobEvent(self, _user_fn(fn, args), future, None))
            # Before the write: the answer may come before this thread reaches result().
            self._inbox.reserve()
            self._dispatch()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every worker started by the constructor has booted.

        The constructor does not wait (jobs queue until a worker is ready); call this to
        have the workers warm before the first job, for example when a server starts.
        Raises the :class:`BootstrapError` (with the worker's traceback) or
        :class:`BackendUnavailable` of a worker that could not start, and ``TimeoutError``
        if ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        crew = self._crew

        def settled() -> bool:
            return crew.booting == 0 or crew.broken is not None

        self._inbox.serve_until(settled, deadline)  # read the workers' messages here if free
        with self._lock:
            while not settled():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{crew.booting} of {self._count} workers had not booted after {timeout}s"
                    )
                crew.boot_done.wait(remaining)
            if crew.broken is not None:
                raise crew.broken

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
        from ._mapping import map_results  # loaded by the first map

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
        return auto_chunksize(count, self._count, self._max_batch)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft().future.cancel()
            self._maybe_finish()
        if wait:
            self._wait_all_exited()
            self._close()
        else:
            threading.Thread(
                target=self._close_when_done, name="runtime-executor-closer", daemon=True
            ).start()

    def _wait_all_exited(self) -> None:
        # Read the workers' last messages here if nobody else does (and always when this
        # thread's event loop holds the reader role and is blocked in this call).
        self._inbox.serve_until(self._all_exited.is_set)
        self._all_exited.wait()

    def _close_when_done(self) -> None:
        self._all_exited.wait()
        self._close()

    def _close(self) -> None:
        self._crew.set.join(5.0)
        self._hub.close()
        self._ops.close()

    def _close_at_exit(self) -> None:
        if not self._all_exited.is_set():
            self.shutdown(wait=True)

    def _teardown_now(self) -> None:
        with self._lock:
            self._shutdown = True
            self._crew.set.exit_all()
        self._close()

    def request_stop(self, future: cf.Future[Any] | Completion | None = None) -> bool:
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

    def statistics(self) -> ExecutorStatistics:
        """A frozen snapshot of this executor: workers, jobs, counters."""
        from ._statistics import ExecutorStatistics

        crew = self._crew
        with self._lock:
            workers = list(self._workers.values())
            if crew.broken is not None:
                state = "broken"
            elif self._shutdown:
                state = "shutdown"
            else:
                state = "running"
            return ExecutorStatistics(
                backend=self.backend,
                workers_target=self._count,
                workers_alive=sum(1 for w in workers if w.ready),
                workers_booting=crew.set.count(State.BOOTING),
                workers_standby=crew.set.count(State.STANDBY),
                queued=len(self._pending),
                in_flight=sum(len(b) for w in workers for b in w.inflight.values()),
                batches_in_flight=sum(len(w.inflight) for w in workers),
                submitted=self._submitted,
                completed=self._completed,
                failed=self._failed,
                replaced=crew.replaced,
                recycled=dict(crew.recycled),
                state=state,
                broken=None if crew.broken is None else str(crew.broken),
            )

    @property
    def workers(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<runtime.Executor workers={self._count} backend={self.backend} shutdown={self._shutdown}>"


# ---------------------------------------------------------------------- package-internal doors
# For runtime.aio (the async front): the lean single-job path and the inbox its event loop
# reads. Module functions rather than methods, so Executor's public surface stays that of
# concurrent.futures.Executor.
def enqueue(
    executor: Executor, completion: Completion, fn: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    """Queue ``fn(*args, **kwargs)`` on ``executor``, completing ``completion`` (a Future-like)."""
    executor._submit(completion, fn, args, kwargs)


def inbox_of(executor: object) -> Inbox | None:
    """The completions inbox of a runtime ``Executor`` (None for any other executor)."""
    return executor._inbox if isinstance(executor, Executor) else None
