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

Recycling (``max_tasks_per_worker``, ``max_worker_memory``, ``max_worker_age``) must not
lose or repeat a job, nor dip throughput. What prevents each:

* **Lost or repeated jobs.** A worker is retired by sending it ``exit`` *behind* the
  batches it holds (one pipe, read in order): it runs them, writes their results, then
  ends. Nothing is taken back from it or resent elsewhere, and it gets no new batch
  once retired (``ready`` is false), so every job runs exactly once.
* **A throughput dip.** The successor is spawned *before* the worker retires, as a
  standby (booted, taking no work): when the worker nears its job budget (from its job
  rate and the measured boot time), twice the boot time before its age limit, or when
  it reports being over its memory limit (a soft limit: it keeps working until the
  standby is ready). At the hand-over the standby starts taking work in the same
  critical section in which the old worker stops, so the count of workers taking work
  never drops because of recycling, unless a budget runs out faster than a boot.
* **A wedged executor.** Deadlines (boot timeout, age, retry back-off) are timers on
  the hub thread (``Hub.call_later``), not threads of their own, and a successor or
  replacement that fails to boot is retried with back-off (0.1 s doubling to 30 s)
  while the others carry on. A worker whose bootstrap outlives ``boot_timeout`` is
  killed (process) or abandoned (subinterpreter, thread: they cannot be pre-empted).

Without limits the per-job path is unchanged: ``_send`` checks one attribute.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import itertools
import logging
import sys
import threading
import time
from _thread import RLock as _RLock
from threading import get_ident

from ._early import (
    AUTO_SUBINTERPRETERS,
    DEFAULT_BOOT_TIMEOUT,
    _config_error,
    fast_switching,
    guard_main_import,
    interpreters_leak,
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
        init_spec,
        next_worker_id,
        pack_bootstrap,
        resolve_backend,
        warn_if_gil_returned,
    )
    from ._early import EarlyInterpreter
    from ._errors import (
        BackendUnavailable,
        BootstrapError,
        ExecutorShutdown,
        NotTransferable,
        WorkerCrashed,
    )
    from ._hub import Hub
    from ._inbox import Inbox
    from ._lifecycle import Limits
    from ._pickling import culprit, mode_for
    from ._pickling import dumps as pickle_for
    from ._pickling import hint as pickling_hint
    from ._wire import DONE as _DONE
    from ._wire import (
        MARSHAL_TAG,
        calls_frame,
        decode_exception,
        encode_exception,
        pack_calls,
    )
    from ._wire import _pickle as pickle_pair
    from .backends import WorkerHandle, create_worker, join_all
    from .ops._executor_ops import ExecutorOps

    T = TypeVar("T")

    class Completion(Protocol):
        """What the executor needs of a job's future: ``concurrent.futures.Future``'s protocol.

        ``submit`` returns a real Future; the async front awaits single jobs through a leaner
        ``runtime._loop_reader.Call``.
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
    global bootstrap_name, close_at_exit
    global init_spec, next_worker_id, pack_bootstrap, resolve_backend, warn_if_gil_returned
    global Hub, Inbox, Limits, culprit, mode_for, pickle_for, pickling_hint
    global WorkerHandle, create_worker, join_all, ExecutorOps, _loaded
    global BackendUnavailable, BootstrapError, ExecutorShutdown
    global NotTransferable, WorkerCrashed
    global _DONE, MARSHAL_TAG, calls_frame, decode_exception, encode_exception, pack_calls
    global pickle_pair
    from ._common import (
        bootstrap_name,
        close_at_exit,
        init_spec,
        next_worker_id,
        pack_bootstrap,
        resolve_backend,
        warn_if_gil_returned,
    )
    from ._errors import (
        BackendUnavailable,
        BootstrapError,
        ExecutorShutdown,
        NotTransferable,
        WorkerCrashed,
    )
    from ._hub import Hub
    from ._inbox import Inbox
    from ._lifecycle import Limits
    from ._pickling import culprit, mode_for
    from ._pickling import dumps as pickle_for
    from ._pickling import hint as pickling_hint
    from ._wire import DONE as _DONE
    from ._wire import (
        MARSHAL_TAG,
        calls_frame,
        decode_exception,
        encode_exception,
        pack_calls,
    )
    from ._wire import _pickle as pickle_pair  # (dumps, loads), imported on first use
    from .backends import WorkerHandle, create_worker, join_all
    from .ops._executor_ops import ExecutorOps

    _loaded = True


__all__ = ["Executor"]

log = logging.getLogger("runtime")

_MAX_INFLIGHT = 2  # batches queued per worker: one running, one ready to go
#: Back-off before respawning a worker whose boot failed or timed out (doubles up to the cap).
_RETRY_FIRST = 0.1
_RETRY_CAP = 30.0
#: A first guess at a worker's boot time, until this executor has measured one.
_BOOT_GUESS = {"process": 0.25, "subinterpreter": 0.05, "thread": 0.01}
#: Reading a finished future's fields without its lock is safe under the GIL; a
#: free-threaded build takes the stdlib's locked path.
#: (The GIL, once disabled at start-up, may come back; it never goes away again.)
_PLAIN_READS = getattr(sys, "_is_gil_enabled", lambda: True)()
_CONDITION_BUILT = threading.Lock()


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


class _Worker:
    __slots__ = (
        "booted",
        "booting",
        "budget",
        "handle",
        "handover",
        "inflight",
        "initial",
        "predecessor",
        "ready",
        "reason",
        "retiring",
        "since",
        "spent",
        "standby",
        "started",
        "successor",
        "timer",
    )

    def __init__(self, handle: WorkerHandle, initial: bool, budget: int | None) -> None:
        self.handle = handle
        self.ready = False  # booted and taking work (dispatch looks at this only)
        self.booted = False  # its bootstrap reported ready
        self.initial = initial  # started by the constructor: its boot failure breaks the executor
        self.booting = initial  # counted in Executor._booting until it booted or failed
        self.inflight: dict[int, list[_Item]] = {}
        # Recycling (see the module's doc); untouched when the executor has no limits.
        self.budget = budget  # jobs it may still take (max_tasks_per_worker), None: no limit
        self.spent = 0  # jobs it took
        self.started = time.monotonic()
        self.since = 0.0  # when it began taking work
        self.standby = False  # booted (or booting) to take over from `predecessor`
        self.predecessor: _Worker | None = None
        self.successor: _Worker | None = None
        self.retiring = False  # takes no new work; exits after what it holds
        self.handover = False  # hand over to the successor as soon as it is ready
        self.reason = ""  # why it is recycled: tasks | memory | age
        self.timer: Any = None  # its pending hub timer (boot deadline, then age)


class _Future(cf.Future["T"]):  # a string: a PEP 695 class would import typing
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
        inbox = self._inbox
        if self is inbox._watched and inbox._holder != get_ident():  # inbox.completed(), inlined
            inbox._poke()

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


_recycling_warned = False


def _warn_recycling_leaks(backend: str) -> None:
    """Once per process: recycling subinterpreters costs memory on CPython < 3.14."""
    global _recycling_warned
    if _recycling_warned:
        return
    _recycling_warned = True
    log.warning(
        "runtime: recycling %s workers (max_tasks_per_worker, max_worker_memory, max_worker_age) "
        "on CPython %d.%d: every interpreter created and destroyed there keeps about 3 MB of the "
        "process's memory (CPython #110411, fixed in 3.14), so recycle seldom, or use "
        "backend='process' or Python 3.14+",
        backend,
        *sys.version_info[:2],
    )


def _describe(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


def _fail(items: list[_Item], error: BaseException) -> None:
    """Fail the running jobs ``items`` that are not done yet with ``error``."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


class Executor(cf.Executor):
    """Run callables on ``workers`` subinterpreters, threads or processes.

    ``workers`` is a count or a fraction of the usable CPUs (default: all of them).
    ``bootstrap`` runs once in every worker before any job; callables reach its
    return value through :func:`runtime.current_context`. ``on_failure`` (a callable or
    reference) receives a :class:`runtime.Failure` for every job that fails;
    ``metrics=False`` keeps this executor out of ``/metrics``.

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
        self._bootstrap = pack_bootstrap(bootstrap, self.backend)
        self._boot_name = bootstrap_name(bootstrap)
        if self._limits.recycles and interpreters_leak(self.backend):
            _warn_recycling_leaks(self.backend)
        self._boot_seconds = _BOOT_GUESS.get(self.backend, 0.1)  # measured from now on
        self._retry_delay = _RETRY_FIRST
        self._ops = ExecutorOps(self, on_failure, metrics)
        self._max_batch = max_batch
        self._lock = threading.RLock()
        self._pending: collections.deque[_Item] = collections.deque()
        # batch id -> (worker id, jobs) whose results arrived and whose futures are being set
        self._completing: dict[int, tuple[int, list[_Item]]] = {}
        self._workers: dict[int, _Worker] = {}
        self._spawned: list[WorkerHandle] = []  # every worker ever started, joined at shutdown
        self._batch_ids = itertools.count(1)
        self._shutdown = False
        self._broken: BaseException | None = None
        self._booting = 0  # initial workers that have neither booted nor failed
        self._boot_done = threading.Condition(self._lock)
        self._all_exited = threading.Event()
        self._hub = Hub(name="runtime-executor-hub")
        self._inbox = Inbox(self._hub)
        self._inbox.others_in_flight = self._jobs_in_flight
        if self.backend != "subinterpreter":
            for interp in early:
                interp.discard()
            early.clear()
        try:
            with self._lock:
                for _ in range(self._count):
                    self._spawn(initial=True, early=early.pop() if early else None)
        except BaseException:
            self._teardown_now()
            raise
        self._ops.attach(self._hub)
        close_at_exit(self)

    # ------------------------------------------------------------------ start-up
    def _spawn(
        self,
        *,
        initial: bool = False,
        predecessor: _Worker | None = None,
        early: EarlyInterpreter | None = None,
    ) -> _Worker:
        """Start a worker (lock held). With ``predecessor``: as its standby successor.

        ``early``: an interpreter the constructor started creating for it.
        """
        handle = create_worker(
            self.backend,
            next_worker_id(),
            self._hub,
            self._on_message,
            self._on_closed,
            reader=self._inbox,
        )
        handle.early = early
        limits = self._limits
        worker = _Worker(handle, initial, limits.max_tasks_per_worker)
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
        spec = init_spec(info, self.backend, self._bootstrap, memory_limit=limits.max_worker_memory)
        try:
            handle.start(spec)
        except Exception as exc:
            if handle.early is not None:  # never launched: nobody else ends its thread
                handle.early.discard()
                handle.early = None
            self._workers.pop(handle.id, None)
            raise BackendUnavailable(f"could not start a {self.backend} worker: {exc}") from exc
        if initial:
            self._booting += 1
        if predecessor is not None:
            worker.standby = True
            worker.predecessor = predecessor
            predecessor.successor = worker
        if limits.boot_timeout is not None:
            worker.timer = self._hub.call_later(
                limits.boot_timeout, functools.partial(self._boot_timed_out, worker)
            )
        return worker

    # ------------------------------------------------------------------ worker messages
    # Handlers run on whichever thread reads the inbox. Each must be idempotent: a reader
    # interrupted by a signal handler leaves the message for the next reader to handle again.
    def _on_message(self, handle: WorkerHandle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "results":
            self._complete_batch(handle, msg[1], msg[2])
        elif kind == "results_failed":
            self._complete_batch(handle, msg[1], None, msg[2])
        elif kind == "ready":
            warn_if_gil_returned(msg[2], self._caps, self.backend)
            with self._lock:
                handle.pid = msg[1]
                worker = self._workers.get(handle.id)
                if worker is not None and not worker.booted:
                    self._on_ready(worker)
                    self._booted(worker)
                self._dispatch()
                self._maybe_finish()  # shut down before it booted: it may leave now
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
                worker = self._workers.pop(handle.id, None)
                if worker is None:
                    return  # handled already
                self._booted(worker)
                self._cancel_timer(worker)
                if self._broken is None and (not self._workers or worker.initial):
                    self._broken = error
                    self._fail_pending(error)
                else:  # a replacement failed to boot; the others carry on
                    log.error("runtime: a replacement worker could not start: %s", error)
                    self._retry(worker)
                self._maybe_finish()
        elif kind == "over_memory":
            with self._lock:
                worker = self._workers.get(handle.id)
                if worker is not None and not worker.retiring and not worker.reason:
                    log.info(
                        "runtime: %s worker %s holds %s bytes (max_worker_memory=%s); recycling it",
                        self.backend,
                        handle.id,
                        msg[1],
                        self._limits.max_worker_memory,
                    )
                    self._recycle(worker, "memory")
                    self._dispatch()

    # ------------------------------------------------------------------ lifecycle
    # Everything below runs with the lock held (timers take it themselves).
    def _on_ready(self, worker: _Worker) -> None:
        """``worker`` reported ready: it takes work, or waits as a standby."""
        now = time.monotonic()
        worker.booted = True
        self._cancel_timer(worker)
        # A running average of boot times: it decides how early successors are spawned.
        self._boot_seconds += (now - worker.started - self._boot_seconds) / 4
        self._retry_delay = _RETRY_FIRST
        age = self._limits.max_worker_age
        if age is not None and not self._shutdown:
            lead = min(2 * self._boot_seconds, age / 2)
            worker.timer = self._hub.call_later(
                worker.started + age - lead - now, functools.partial(self._age_near, worker)
            )
        predecessor = worker.predecessor
        if (
            worker.standby
            and predecessor is not None
            and self._live(predecessor)
            and not predecessor.retiring
        ):
            if predecessor.handover:
                self._hand_over(predecessor)
            return  # a standby until its predecessor stops taking work
        worker.standby = False
        worker.predecessor = None
        self._take_work(worker)

    def _take_work(self, worker: _Worker) -> None:
        worker.ready = True
        worker.since = time.monotonic()

    def _cancel_timer(self, worker: _Worker) -> None:
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None

    def _live(self, worker: _Worker) -> bool:
        return self._workers.get(worker.handle.id) is worker

    def _spend(self, worker: _Worker, jobs: int) -> None:
        """``worker`` took ``jobs`` more jobs (max_tasks_per_worker is set)."""
        worker.budget -= jobs  # type: ignore[operator]
        worker.spent += jobs
        budget: int = worker.budget  # type: ignore[assignment]
        if budget <= 0:
            self._recycle(worker, "tasks")
            return
        if worker.successor is not None or self._shutdown:
            return
        # Spawn the successor when the jobs left would last about two boot times at the
        # rate this worker takes them (measured since it began; at least 50 ms of it).
        elapsed = max(time.monotonic() - worker.since, 0.05)
        if budget <= worker.spent / elapsed * 2 * self._boot_seconds + 1:
            self._spawn_successor(worker)

    def _spawn_successor(self, worker: _Worker) -> _Worker | None:
        try:
            return self._spawn(predecessor=worker)
        except Exception as exc:
            log.error(
                "runtime: could not start a successor for worker %s: %s", worker.handle.id, exc
            )
            return None

    def _age_near(self, worker: _Worker) -> None:
        """Hub timer: ``worker`` nears max_worker_age: spawn its successor now."""
        with self._lock:
            if not self._live(worker) or worker.retiring or self._shutdown:
                return
            if worker.standby:  # aged while waiting to take over: look again later
                worker.timer = self._hub.call_later(
                    2 * self._boot_seconds, functools.partial(self._age_near, worker)
                )
                return
            if worker.successor is None:
                self._spawn_successor(worker)
            age: float = self._limits.max_worker_age  # type: ignore[assignment]
            worker.timer = self._hub.call_later(
                worker.started + age - time.monotonic(),
                functools.partial(self._age_reached, worker),
            )

    def _age_reached(self, worker: _Worker) -> None:
        with self._lock:
            worker.timer = None
            if self._live(worker) and not worker.retiring:
                self._recycle(worker, "age")
                self._dispatch()

    def _recycle(self, worker: _Worker, reason: str) -> None:
        """Replace ``worker``: at once if its standby is ready (or its budget is spent),
        else as soon as the standby reports ready (it keeps working until then)."""
        if worker.retiring:
            return
        worker.reason = worker.reason or reason
        if self._shutdown and not self._pending and reason != "tasks":
            return  # the executor is ending anyway
        successor = worker.successor
        if successor is None:
            successor = self._spawn_successor(worker)
        if reason == "tasks" or successor is None or successor.booted:
            self._hand_over(worker)
        else:
            worker.handover = True

    def _hand_over(self, worker: _Worker) -> None:
        """``worker`` stops taking work, its successor starts, in one critical section."""
        worker.ready = False
        worker.retiring = True
        worker.handover = False
        self._cancel_timer(worker)
        successor = worker.successor
        worker.successor = None
        if successor is not None:
            successor.standby = False
            successor.predecessor = None
            if successor.booted:
                self._take_work(successor)
        else:  # its successor could not start: a plain replacement, retried with back-off
            self._retry(None)
        worker.handle.exit()  # behind the batches it holds: it runs them, then ends
        self._ops.worker_recycled(worker.reason)
        log.info(
            "runtime: recycling %s worker %s (%s: %s jobs, %.1fs old)",
            self.backend,
            worker.handle.id,
            worker.reason,
            worker.spent,
            time.monotonic() - worker.started,
        )

    def _retry(self, failed: _Worker | None) -> None:
        """Start a worker in place of ``failed`` (a replacement or successor that did not
        boot) after the back-off; a successor's retry is again its predecessor's standby."""
        predecessor = failed.predecessor if failed is not None else None
        if predecessor is not None and predecessor.successor is failed:
            predecessor.successor = None
        delay = self._retry_delay
        self._retry_delay = min(_RETRY_CAP, delay * 2)
        log.info("runtime: starting another %s worker in %.1fs", self.backend, delay)
        self._hub.call_later(delay, functools.partial(self._respawn, predecessor))

    def _respawn(self, predecessor: _Worker | None) -> None:
        with self._lock:
            if self._broken is not None or (self._shutdown and not self._pending):
                return
            if predecessor is not None and self._live(predecessor) and not predecessor.retiring:
                if predecessor.successor is None:
                    self._spawn_successor(predecessor)
                    if predecessor.successor is None:
                        self._retry(None)
                return
            self._spawn_or_retry()

    def _spawn_or_retry(self) -> None:
        """Start a plain replacement worker now, or after the back-off if that fails."""
        try:
            self._spawn()
        except Exception as exc:
            log.error("runtime: could not replace a worker: %s", exc)
            self._retry(None)

    def _boot_timed_out(self, worker: _Worker) -> None:
        """Hub timer: ``worker``'s bootstrap outlived boot_timeout."""
        handle = worker.handle
        with self._lock:
            if not self._live(worker) or worker.booted:
                return
            worker.timer = None
            del self._workers[handle.id]
            elapsed = time.monotonic() - worker.started
            error = BootstrapError(
                f"{self.backend} worker {handle.id} did not finish its bootstrap "
                f"{self._boot_name} within boot_timeout={self._limits.boot_timeout}s "
                f"(elapsed {elapsed:.2f}s); "
                + (
                    "it was killed"
                    if self.backend == "process"
                    else f"a {self.backend} worker cannot be killed, so it was abandoned"
                )
            )
            # Killed or abandoned before anyone learns of the timeout: a caller woken by it
            # finds the worker gone (abandoned ones are not joined: they may never end).
            if not (self.backend == "process" and handle.kill()):
                handle.abandon(str(error))
                self._spawned = [h for h in self._spawned if h is not handle]
            self._booted(worker)
            if self._broken is None and worker.initial:
                self._broken = error
                self._fail_pending(error)
            elif self._broken is None:
                log.error("runtime: %s; retrying", error)
                self._retry(worker)
            self._maybe_finish()
            # A caller reading the inbox in wait_ready()/result() re-checks what it waits for
            # (after _maybe_finish: shutdown()'s reader waits for the event it may set).
            self._inbox.wake_reader()

    def _booted(self, worker: _Worker) -> None:
        """``worker`` is past its boot (ready, failed or gone). Called with the lock held."""
        if worker.booting:
            worker.booting = False
            self._booting -= 1
            self._boot_done.notify_all()

    def _complete_batch(
        self,
        handle: WorkerHandle,
        batch_id: int,
        results: list[tuple[bool, Any]] | None,
        failure: str | None = None,
    ) -> None:
        """Complete one finished batch's futures: every batch that ends well passes here.

        ``results`` holds ``(ok, value)`` per job; None (with ``failure``) when they could
        not be rebuilt in this process. The ops hooks (metrics, ``on_failure``) see every
        batch here, whoever read it.

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
                if self._pending:
                    self._dispatch()
        items = entry[1]
        if results is None:
            error = NotTransferable(
                f"the results of {len(items)} job(s) (first: {_describe(items[0].fn)}) could "
                f"not be rebuilt in the caller: {failure}"
            )
            _fail(items, error)
            self._ops.batch_done(
                batch_id, items, [(False, encode_exception(error))] * len(items), handle
            )
        else:
            for item, (ok, value) in zip(items, results, strict=True):
                future = item.future
                if future._state == "FINISHED":  # handled before an interruption
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(decode_exception(value))
            self._ops.batch_done(batch_id, items, results, handle)
        with self._lock:
            del self._completing[batch_id]
            if self._shutdown:
                self._maybe_finish()

    def _on_closed(self, handle: WorkerHandle) -> None:
        with self._lock:
            self._spawned = [h for h in self._spawned if h is handle or not h.join(0)]
            worker = self._workers.pop(handle.id, None)
            if worker is None:
                self._maybe_finish()
                return
            lost = [item for items in worker.inflight.values() for item in items]
            # Batches whose completion an interrupted reader left half done (see above).
            for batch_id, (owner, items) in list(self._completing.items()):
                if owner == handle.id:
                    del self._completing[batch_id]
                    lost += items
            was_ready = worker.booted
            was_initial = worker.initial
            if not was_ready:
                self._booted(worker)
            self._cancel_timer(worker)
        if lost:
            error = WorkerCrashed(
                f"{handle.describe_exit()} while running {len(lost)} job(s) "
                f"(first: {_describe(lost[0].fn)}); those jobs failed, the worker was replaced"
            )
            _fail(lost, error)
            self._ops.worker_lost(handle, worker.inflight, error)
        with self._lock:
            if not self._shutdown and self._broken is None:
                if worker.retiring:
                    pass  # recycled: its successor has taken its place
                elif was_ready:
                    log.warning("runtime: %s; replacing it", handle.describe_exit())
                    self._ops.worker_replaced()
                    self._replace(worker)
                elif was_initial or not self._workers:
                    self._broken = BootstrapError(
                        f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
                    )
                else:  # a replacement died while booting; the others carry on
                    log.error(
                        "runtime: a replacement worker died while bootstrapping: %s",
                        handle.describe_exit(),
                    )
                    self._retry(worker)
            if not self._workers and self._broken is not None:
                self._fail_pending(self._broken)
            self._dispatch()
            self._maybe_finish()

    def _replace(self, worker: _Worker) -> None:
        """A booted ``worker`` died (lock held): its standby, or a fresh worker, takes its place."""
        successor = worker.successor
        predecessor = worker.predecessor
        if successor is not None:  # its standby takes over now
            worker.successor = None
            successor.standby = False
            successor.predecessor = None
            if successor.booted:
                self._take_work(successor)
            return
        if worker.standby and predecessor is not None and self._live(predecessor):
            predecessor.successor = None  # a standby died: its predecessor gets another
            if predecessor.retiring:
                predecessor = None
            elif self._spawn_successor(predecessor) is not None:
                return
        self._spawn_or_retry()

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
        room = 1 if self._booting else _MAX_INFLIGHT
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
            tag = b""
            blob = pickle_for([(i.fn, i.args, i.kwargs) for i in batch], mode)
        batch_id = next(self._batch_ids)
        worker.inflight[batch_id] = batch
        self._ops.batch_sent(batch_id)
        try:  # noqa: SIM105 - on every call's path; try is cheaper than suppress()
            worker.handle.conn.send_bytes(calls_frame(batch_id, len(batch), blob, tag))
        except BrokenPipeError:
            pass  # the worker is gone: _on_closed fails this batch and replaces the worker
        if worker.budget is not None:  # the only per-batch cost of recycling
            self._spend(worker, len(batch))

    def _jobs_in_flight(self) -> bool:
        """Whether any job is queued or running. Read without the lock by a reader that is
        done, to decide whether it keeps the inbox's role reserved (see ``Inbox.release``)."""
        if self._pending:
            return True
        return any(worker.inflight for worker in list(self._workers.values()))

    def _maybe_finish(self) -> None:
        if not self._shutdown:
            return
        if self._jobs_in_flight():
            return
        for worker in list(self._workers.values()):
            worker.handle.exit()
        if not self._workers and not self._all_exited.is_set():
            self._all_exited.set()
            # shutdown() may be reading the inbox for the workers' last messages; when the
            # last worker left without one (abandoned by a boot timeout, from a hub timer),
            # nothing else would wake it to see the event.
            self._inbox.wake_reader()

    # ------------------------------------------------------------------ Executor API
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        future: _Future[T] = _Future(self._inbox)
        self._submit(future, fn, args, kwargs)
        return future

    def _submit(
        self, future: Completion, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> None:
        """Queue ``fn(*args, **kwargs)``, completing ``future`` (the async front's way in)."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {fn!r}")
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._shutdown:
                raise ExecutorShutdown("cannot submit: the executor is shut down")
            self._pending.append(_Item(future, fn, args, kwargs))
            self._ops.submitted += 1
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

        def settled() -> bool:
            return self._booting == 0 or self._broken is not None

        self._inbox.serve_until(settled, deadline)  # read the workers' messages here if free
        with self._lock:
            while not settled():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{self._booting} of {self._count} workers had not booted after {timeout}s"
                    )
                self._boot_done.wait(remaining)
            if self._broken is not None:
                raise self._broken

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
            self._wait_all_exited()
            join_all(self._spawned, 5.0)
            self._hub.close()
            self._ops.close()
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
