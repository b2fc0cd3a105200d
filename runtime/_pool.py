"""The supervised pool: N workers, each running one long-lived Task, kept alive.

All decisions are taken on one supervisor thread that reads events (worker
messages, worker exits, resize/stop requests) from a queue and sleeps on it
until the next event or the next deadline — a restart due, a bootstrap's time up,
a worker's age reached — never in a polling loop.

What the lifecycle rules here prevent:

* a bootstrap that hangs blocking ``start()`` for ever, or wedging a running pool:
  each booting worker has a deadline (``boot_timeout``); past it a process worker is
  killed and any other is abandoned (it cannot be pre-empted, see
  :meth:`~runtime.backends.WorkerHandle.abandon`), and the slot counts a failure and
  retries with the restart policy's backoff, while events keep being served;
* a crash loop eating memory: on Pythons whose interpreters leak on destroy, a slot's
  restarts get at most ``RestartPolicy.fresh_workers`` fresh interpreters, then reuse
  the bootstrapped one;
* workers accumulating state for ever: the lifecycle limits replace a worker at a task
  boundary, and a running task's aged worker gets its successor booted *before* the
  task is asked to stop.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import logging
import queue
import signal
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._capabilities import Capabilities, capabilities
from ._channel import pickling_for_process
from ._common import (
    bootstrap_name,
    close_at_exit,
    init_spec,
    next_worker_id,
    pack_bootstrap,
    pickled,
    resolve_backend,
    warn_if_gil_returned,
)
from ._early import guard_main_import
from ._errors import (
    BackendUnavailable,
    BootstrapError,
    ConfigurationError,
    PoolError,
)
from ._hub import Hub
from ._lifecycle import DEFAULT_BOOT_TIMEOUT, Limits
from ._pickling import dumps, mode_for
from ._policy import RestartPolicy, interpreters_leak, resolve_workers, split_by_weight
from ._signals import SignalAwareEvent
from ._task import TaskSpec
from ._wire import decode_exception
from .backends import WorkerHandle, create_worker, join_all
from .ops._pool_ops import PoolOps

if TYPE_CHECKING:
    from types import FrameType, TracebackType

__all__ = ["Pool", "PoolReport", "PoolStatistics"]

log = logging.getLogger("runtime")

#: Failures a pool keeps for its report (the most recent ones).
_FAILURES_KEPT = 1000


@dataclasses.dataclass(frozen=True)
class PoolReport:
    """What a pool did, returned by :meth:`Pool.run` and :meth:`Pool.stop`."""

    completed: int
    restarts: int
    gave_up: int
    replaced: int
    unfinished: int
    stopped: bool
    failures: tuple[str, ...] = ()  # the most recent 1,000, oldest first
    recycled: int = 0  # workers replaced by the lifecycle limits (not counted in completed)


@dataclasses.dataclass(frozen=True)
class PoolStatistics:
    """An immutable snapshot of a pool (``pool.statistics()``)."""

    backend: str
    target_workers: int
    workers_alive: int
    running: int
    booting: int
    waiting_restart: int
    completed: int
    restarts: int
    gave_up: int
    replaced: int
    by_kind: Mapping[str, int]
    state: str
    recycled: int = 0


class _SlotState(enum.Enum):
    BOOTING = "booting"
    RUNNING = "running"
    WAITING = "waiting"  # restart scheduled
    DONE = "done"
    GAVE_UP = "gave_up"


_TERMINAL = (_SlotState.DONE, _SlotState.GAVE_UP)


@dataclasses.dataclass(eq=False)
class _Kind:
    spec: TaskSpec
    blob: bytes
    weight: float
    label: str


@dataclasses.dataclass(eq=False)
class _Slot:
    id: int
    kind: _Kind
    state: _SlotState = _SlotState.BOOTING
    worker: WorkerHandle | None = None
    attempt: int = 0
    failures: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    restart_at: float = 0.0
    retiring: bool = False
    initial: bool = True
    booted_at: float = 0.0  # when the current worker started booting
    runs: int = 0  # task runs the current worker hosted
    over_memory: int | None = None  # what the current worker reported when over the limit
    fresh: int = 0  # fresh workers started for this slot's restarts
    standby: WorkerHandle | None = None  # booting/ready successor of an aged worker
    standby_at: float = 0.0
    standby_ready: bool = False
    recycling: bool = False  # the running task was asked to stop for its standby


def _normalize_tasks(tasks: Any) -> list[tuple[TaskSpec, float]]:
    if isinstance(tasks, Mapping):
        if not tasks:
            raise ConfigurationError("the task mapping is empty; give at least one task kind")
        return [(TaskSpec.from_value(k), w) for k, w in tasks.items()]
    return [(TaskSpec.from_value(tasks), 1)]


class Pool:
    """Keep ``workers`` workers busy running tasks, supervised.

    ``tasks`` is a :class:`Task` subclass, an instance (its constructor arguments
    travel to each worker), a ``"pkg.mod:Name"`` reference, or a mapping of those to
    weights (``{A: 3, B: 7}``) that splits the workers. ``workers`` is a count or a
    fraction of the usable CPUs. ``bootstrap`` (a callable or reference) runs once in
    every fresh worker; its return value is the task's ``self.context``.
    ``on_failure`` (a callable or reference) receives a :class:`runtime.Failure` for
    every task failure; ``metrics=False`` keeps this pool out of ``/metrics``.

    ``boot_timeout`` (seconds, ``None``: no limit) bounds each worker's bootstrap. An
    initial worker that is not ready in time makes :meth:`start` raise
    :class:`runtime.BootstrapError` (naming the worker, the bootstrap and the elapsed
    time) and the pool stops; a replacement that is not ready in time is logged, killed
    (process) or abandoned (subinterpreter, thread: they cannot be pre-empted and keep
    running until their bootstrap returns), counted as a failure of its slot and retried
    with the restart policy's backoff.

    Lifecycle limits replace a worker by a fresh one instead of reusing it when a task
    run ends (the task raised and is restarted): after ``max_tasks_per_worker`` runs,
    when it is older than ``max_worker_age`` seconds, or when it reported holding more
    than ``max_worker_memory`` bytes (``"512M"`` works too). They matter where a slot
    keeps its worker across restarts (``RestartPolicy(fresh_worker=False)``, or past the
    policy's ``fresh_workers`` budget). On Python < 3.14 each recycled subinterpreter
    costs the interpreter leak (about 3-4 MB). A task still *running* when its worker
    passes ``max_worker_age`` gets a successor booted first, is then asked to stop
    (``self.stopping``), and once it returns runs again on the successor, counted as
    ``recycled`` rather than ``completed``; a task that ignores ``stopping`` keeps
    running in its old worker (and the booted successor waits).
    """

    def __init__(
        self,
        tasks: Any,
        *,
        workers: int | float = 1,
        backend: str = "auto",
        bootstrap: Any = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float = 30.0,
        handle_signals: bool = True,
        on_failure: Any = None,
        metrics: bool = True,
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        _capabilities: Capabilities | None = None,
    ) -> None:
        guard_main_import("Pool")
        caps = _capabilities or capabilities()
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise ConfigurationError(f"restart must be a runtime.RestartPolicy, got {restart!r}")
        if not isinstance(stop_timeout, (int, float)) or stop_timeout < 0:
            raise ConfigurationError(f"stop_timeout must be a number >= 0, got {stop_timeout!r}")
        self._caps = caps
        self._cpu_count = caps.cpu_count
        self._workers_arg = workers
        target = resolve_workers(workers, caps.cpu_count)
        self.backend = resolve_backend(backend, caps)
        self.policy = restart or RestartPolicy()
        self.limits = Limits(max_tasks_per_worker, max_worker_memory, max_worker_age, boot_timeout)
        self._fresh_budget = self.policy.fresh_worker_budget(self.backend)
        self._budget_warned = False
        self.stop_timeout = float(stop_timeout)
        self.handle_signals = handle_signals
        # Task classes from an interactive __main__ (REPL, notebook) travel by value.
        self._pickling = mode_for(self.backend)
        kinds = []
        for spec, weight in _normalize_tasks(tasks):
            blob = pickled(
                spec, f"task {spec.label} with its constructor arguments", self._pickling
            )
            kinds.append(_Kind(spec, blob, weight, spec.label))
        self._kinds = kinds
        split_by_weight([(k, k.weight) for k in kinds], target)  # validates weights vs count
        self._target = target
        self._bootstrap = pack_bootstrap(bootstrap, self.backend)
        self._bootstrap_name = bootstrap_name(bootstrap)
        self._ops = PoolOps(self, on_failure, metrics)

        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._by_worker: dict[int, _Slot] = {}
        self._workers: dict[int, WorkerHandle] = {}
        self._spawned: list[WorkerHandle] = []  # every worker ever started, joined at shutdown
        self._slot_ids = 0
        self._counts = collections.Counter[str]()
        # The most recent failures, for the report: a pool in an endless crash loop must
        # not grow by one string per failure for as long as it lives.
        self._failures: collections.deque[str] = collections.deque(maxlen=_FAILURES_KEPT)
        self._state = "new"
        self._stopping = False
        self._stop_deadline: float | None = None
        self._hub: Hub | None = None
        self._thread: threading.Thread | None = None
        # The main thread waits on these in start()/run()/stop(): a SIGTERM taken by another thread still wakes it.
        self._started = SignalAwareEvent()
        self._finished = SignalAwareEvent()
        self._fatal: BaseException | None = None
        self._report: PoolReport | None = None

    # ------------------------------------------------------------------ public API
    def start(self) -> Pool:
        """Start every worker and wait until each has bootstrapped (raises BootstrapError if not)."""
        with self._lock:
            if self._state != "new":
                raise PoolError(
                    f"this pool was already started (state: {self._state}); create a new Pool"
                )
            self._state = "starting"
        self._hub = Hub(name="runtime-pool-hub")
        self._thread = threading.Thread(
            target=self._supervise, name="runtime-supervisor", daemon=True
        )
        self._ops.attach(self._thread, self._hub)
        self._thread.start()
        close_at_exit(self)
        self._started.wait()
        if self._fatal is not None:
            self._finished.wait()
            raise self._fatal
        return self

    def run(self) -> PoolReport:
        """Run until every task returned, or stop()/SIGTERM/SIGINT; returns a :class:`PoolReport`."""
        restore = self._install_signal_handlers()
        try:
            if self._state == "new":
                self.start()
            self._finished.wait()
        finally:
            restore()
        if self._fatal is not None:
            raise self._fatal
        assert self._report is not None
        return self._report

    def stop(self, timeout: float | None = None) -> PoolReport:
        """Ask tasks to finish (``self.stopping``), wait up to ``timeout``, report what did not."""
        if self._state == "new":
            raise PoolError("the pool was never started")
        self._events.put(("stop", self.stop_timeout if timeout is None else float(timeout)))
        self._finished.wait()
        assert self._report is not None
        return self._report

    def resize(self, workers: int | float) -> None:
        """Change the number of workers while running (split by the same weights)."""
        target = resolve_workers(workers, self._cpu_count)
        split_by_weight([(k, k.weight) for k in self._kinds], target)
        if self._state not in ("new", "running", "starting"):
            raise PoolError(f"cannot resize a pool that is {self._state}")
        self._events.put(("resize", target))

    def statistics(self) -> PoolStatistics:
        with self._lock:
            live = [s for s in self._slots.values() if s.state not in _TERMINAL]
            by_kind = collections.Counter(s.kind.label for s in live)
            return PoolStatistics(
                backend=self.backend,
                target_workers=self._target,
                workers_alive=len(self._workers),
                running=sum(s.state is _SlotState.RUNNING for s in live),
                booting=sum(s.state is _SlotState.BOOTING for s in live),
                waiting_restart=sum(s.state is _SlotState.WAITING for s in live),
                completed=self._counts["completed"],
                restarts=self._counts["restarts"],
                gave_up=self._counts["gave_up"],
                replaced=self._counts["replaced"],
                by_kind=dict(by_kind),
                state=self._state,
                recycled=self._counts["recycled"],
            )

    def _close_at_exit(self) -> None:
        if self._state != "new" and not self._finished.is_set():
            log.warning("runtime: the interpreter is exiting; stopping %r", self)
            self.stop()

    def __enter__(self) -> Pool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._finished.is_set():
            self.stop()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k.label}:{k.weight}" for k in self._kinds)
        return f"<runtime.Pool {kinds} workers={self._target} backend={self.backend} state={self._state}>"

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> Any:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self._stopping:
                log.warning("runtime: %s again; not waiting for running tasks any longer", name)
                self._events.put(("stop", 0.0))
            else:
                log.warning(
                    "runtime: %s received; stopping the pool (up to %.1fs)", name, self.stop_timeout
                )
                self._events.put(("stop", self.stop_timeout))

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, old)

        return restore

    # ------------------------------------------------------------------ supervisor
    def _new_slot(self, kind: _Kind, *, initial: bool) -> _Slot:
        self._slot_ids += 1
        slot = _Slot(self._slot_ids, kind, initial=initial)
        self._slots[slot.id] = slot
        self._spawn(slot)
        return slot

    def _spawn(self, slot: _Slot, *, standby: bool = False) -> None:
        """Start a worker for ``slot``: its own (state BOOTING), or a standby successor."""
        assert self._hub is not None
        worker = create_worker(
            self.backend,
            next_worker_id(),
            self._hub,
            lambda w, m: self._events.put(("msg", w, m)),
            lambda w: self._events.put(("closed", w)),
        )
        info = self._info(slot, worker)
        now = time.monotonic()
        if standby:
            slot.standby = worker
            slot.standby_at = now
            slot.standby_ready = False
        else:
            slot.worker = worker
            slot.state = _SlotState.BOOTING
            slot.booted_at = now
            slot.runs = 0
            slot.over_memory = None
        self._by_worker[worker.id] = slot
        self._workers[worker.id] = worker
        self._spawned.append(worker)
        try:
            worker.start(
                init_spec(
                    info,
                    self.backend,
                    self._bootstrap,
                    memory_limit=self.limits.max_worker_memory,
                )
            )
        except Exception as exc:
            self._by_worker.pop(worker.id, None)
            self._workers.pop(worker.id, None)
            if standby:
                slot.standby = None
            else:
                slot.worker = None
            raise BackendUnavailable(f"could not start a {self.backend} worker: {exc}") from exc

    def _info(self, slot: _Slot, worker: WorkerHandle) -> dict[str, Any]:
        return {
            "id": worker.id,
            "backend": self.backend,
            "attempt": slot.attempt + 1,
            "slot": slot.id,
            "kind": slot.kind.label,
            "pid": worker.pid or 0,
        }

    def _live_slots(self) -> list[_Slot]:
        return [s for s in self._slots.values() if s.state not in _TERMINAL]

    def _supervise(self) -> None:
        try:
            self._boot()
            if self._fatal is None:
                self._loop()
        except BaseException as exc:  # a bug here must not leave run() waiting forever
            log.exception("runtime: the pool supervisor failed")
            if self._fatal is None:
                self._fatal = PoolError(f"the pool supervisor failed: {exc!r}")
        finally:
            self._shutdown_workers()
            self._ops.close()
            self._started.set()
            self._finished.set()

    def _boot(self) -> None:
        with self._lock:
            counts = split_by_weight([(k, k.weight) for k in self._kinds], self._target)
            try:
                for kind, n in counts.items():
                    for _ in range(n):
                        self._new_slot(kind, initial=True)
            except Exception as exc:
                self._fatal = exc
                return
        # Wait for every initial worker to report ready (or for the first boot failure).
        while not self._fatal:
            booting = [
                s for s in self._slots.values() if s.state is _SlotState.BOOTING and s.initial
            ]
            if not booting:
                break
            deadlines = self._boot_deadlines(booting)
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            event = self._ops.supervisor.get_or_none(self._events, timeout)
            if event is not None:
                self._handle(event)
            with self._lock:
                self._check_boots(time.monotonic())
        with self._lock:
            if self._fatal is None and not self._stopping:
                self._state = "running"
        self._started.set()

    def _loop(self) -> None:
        while True:
            with self._lock:
                live = self._live_slots()
            if not live and not self._stopping:
                break
            if self._stopping and not live and not self._workers:
                break
            now = time.monotonic()
            deadlines = [s.restart_at for s in live if s.state is _SlotState.WAITING]
            deadlines += self._boot_deadlines(live)
            deadlines += self._age_deadlines(live)
            if self._stop_deadline is not None:
                deadlines.append(self._stop_deadline)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            event = self._ops.supervisor.get_or_none(self._events, timeout)
            if event is not None:
                self._handle(event)
            self._due(time.monotonic())
            with self._lock:
                self._check_boots(time.monotonic())
                self._check_ages(time.monotonic())
            if (
                self._stopping
                and self._stop_deadline is not None
                and time.monotonic() >= self._stop_deadline
            ):
                self._abandon()
                break

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        with self._lock:
            if kind == "msg":
                self._on_message(event[1], event[2])
            elif kind == "closed":
                self._on_closed(event[1])
            elif kind == "resize":
                self._on_resize(event[1])
            elif kind == "stop":
                self._on_stop(event[1])

    def _on_message(self, worker: WorkerHandle, msg: tuple[Any, ...]) -> None:
        slot = self._by_worker.get(worker.id)
        what = msg[0]
        if slot is None or worker.abandoned is not None:
            return
        if worker is slot.standby:
            self._on_standby_message(slot, worker, msg)
            return
        if worker is not slot.worker:
            return
        if what == "ready":
            worker.pid = msg[1]
            warn_if_gil_returned(msg[2], self._caps, self.backend)
            if self._stopping or slot.retiring:
                self._finish_slot(slot, _SlotState.DONE, counted=None)
                return
            slot.attempt += 1
            slot.runs += 1
            slot.state = _SlotState.RUNNING
            slot.initial = False
            worker.send(("task", self._task_blob(slot.kind), self._info_running(slot, worker)))
        elif what == "over_memory":
            slot.over_memory = int(msg[1])
        elif what == "boot_failed":
            exc_payload, refused = msg[1], msg[2]
            if slot.initial and self._state == "starting":
                cls = BackendUnavailable if refused else BootstrapError
                _, name, message, tb = exc_payload
                hint = (
                    f" (the {self.backend} backend cannot load an extension the bootstrap needs; "
                    "use backend='thread' or backend='process')"
                    if refused
                    else ""
                )
                self._fatal = cls(
                    f"the bootstrap failed in a fresh {self.backend} worker: {name}: {message}{hint}",
                    tb,
                )
                self._stopping = True
                return
            summary = f"bootstrap failed: {exc_payload[1]}: {exc_payload[2]}"
            self._on_failure(slot, summary, exc_payload[3])
            self._ops.task_failed(slot, worker, exc_payload, summary, self.backend)
        elif what == "task_done":
            if slot.recycling and slot.standby_ready and not (self._stopping or slot.retiring):
                self._recycle_running(slot)
                return
            self._finish_slot(slot, _SlotState.DONE, counted="completed")
            log.info(
                "runtime: task %s (slot %d) returned; its job is finished", slot.kind.label, slot.id
            )
        elif what == "task_failed":
            exc = decode_exception(msg[1])
            self._on_failure(slot, f"{type(exc).__name__}: {exc}", msg[1][3])
            self._ops.task_failed(slot, worker, msg[1], str(exc), self.backend)

    def _task_blob(self, kind: _Kind) -> bytes:
        if self.backend != "process":
            return kind.blob
        # Channels among the task's arguments travel to a child as duplicated descriptors.
        with pickling_for_process():
            return dumps(kind.spec, self._pickling)

    def _info_running(self, slot: _Slot, worker: WorkerHandle) -> dict[str, Any]:
        info = self._info(slot, worker)
        info["attempt"] = slot.attempt
        return info

    def _release_worker(self, slot: _Slot) -> None:
        self._let_go(slot.worker)
        slot.worker = None
        slot.recycling = False

    def _release_standby(self, slot: _Slot) -> None:
        self._let_go(slot.standby)
        slot.standby = None
        slot.standby_ready = False
        slot.recycling = False

    def _let_go(self, worker: WorkerHandle | None) -> None:
        """Detach ``worker`` from its slot and ask it to finish (after what it runs)."""
        if worker is not None:
            self._by_worker.pop(worker.id, None)
            worker.exit()

    def _adopt_standby(self, slot: _Slot) -> None:
        """The ready standby becomes the slot's (idle) worker; the old one is released."""
        standby = slot.standby
        assert standby is not None
        self._release_worker(slot)
        slot.worker = standby
        slot.standby = None
        slot.standby_ready = False
        slot.booted_at = slot.standby_at
        slot.runs = 0
        slot.over_memory = None

    def _finish_slot(self, slot: _Slot, state: _SlotState, counted: str | None) -> None:
        slot.state = state
        if counted:
            self._counts[counted] += 1
            self._ops.count(counted, slot.kind.label)
        self._release_worker(slot)
        self._release_standby(slot)

    def _count_recycled(self, slot: _Slot, reason: str) -> None:
        self._counts["recycled"] += 1
        self._ops.recycled(reason, slot.kind.label)

    def _recycle_reason(self, slot: _Slot, now: float) -> str | None:
        """Why the slot's worker must not host another run (lifecycle limits), or None."""
        limits = self.limits
        if limits.max_tasks_per_worker is not None and slot.runs >= limits.max_tasks_per_worker:
            return "tasks"
        if slot.over_memory is not None:
            return "memory"
        if limits.max_worker_age is not None and now - slot.booted_at >= limits.max_worker_age:
            return "age"
        return None

    def _wants_fresh_worker(self, slot: _Slot) -> bool:
        """RestartPolicy.fresh_worker, within the slot's budget of fresh workers."""
        if not self.policy.fresh_worker:
            return False
        budget = self._fresh_budget
        if budget is None or slot.fresh < budget:
            slot.fresh += 1
            return True
        if not self._budget_warned:
            self._budget_warned = True
            why = (
                "CPython before 3.14 leaks about 3-4 MB for every subinterpreter it creates "
                "and destroys"
                if interpreters_leak(self.backend)
                else "RestartPolicy.fresh_workers limits them"
            )
            log.warning(
                "runtime: slot %d (%s) used its %d fresh %s workers for restarts; from now on "
                "its restarts reuse the bootstrapped worker (module state left by a failed run "
                "stays), because %s. To change it: use Python 3.14+, backend='process', or "
                "RestartPolicy(fresh_workers=None) with a max_restarts limit",
                slot.id,
                slot.kind.label,
                budget,
                self.backend,
                why,
            )
        return False

    def _on_failure(
        self, slot: _Slot, summary: str, tb: str | None, *, worker_gone: bool = False
    ) -> None:
        label = f"{slot.kind.label} (slot {slot.id}, attempt {slot.attempt})"
        self._failures.append(f"{label}: {summary}")
        if tb:
            log.error("runtime: task %s failed: %s\n%s", label, summary, tb.rstrip())
        else:
            log.error("runtime: task %s failed: %s", label, summary)
        now = time.monotonic()
        if worker_gone or slot.state is _SlotState.BOOTING:
            self._release_worker(slot)
        slot.failures.append(now)
        while slot.failures and now - slot.failures[0] > self.policy.within:
            slot.failures.popleft()
        if self._stopping or slot.retiring:
            slot.state = _SlotState.DONE
            self._release_worker(slot)
            self._release_standby(slot)
            return
        limit = self.policy.max_restarts
        if limit is not None and len(slot.failures) > limit:
            log.error(
                "runtime: giving up on %s: %d failures within %.1fs exceed max_restarts=%d",
                label,
                len(slot.failures),
                self.policy.within,
                limit,
            )
            self._finish_slot(slot, _SlotState.GAVE_UP, counted="gave_up")
            return
        if slot.worker is not None:
            # The restart reuses the worker unless a lifecycle limit or the policy says not to.
            reason = self._recycle_reason(slot, now) if self.limits.recycles else None
            if reason is not None:
                log.info("runtime: recycling the worker of %s (%s) for its restart", label, reason)
                self._count_recycled(slot, reason)
                self._release_worker(slot)
            elif self._wants_fresh_worker(slot):
                self._release_worker(slot)
        if slot.worker is None and slot.standby is not None and slot.standby_ready:
            self._adopt_standby(slot)
        delay = self.policy.delay(len(slot.failures))
        slot.state = _SlotState.WAITING
        slot.restart_at = now + delay
        log.info("runtime: restarting %s in %.3fs", label, delay)

    def _on_closed(self, worker: WorkerHandle) -> None:
        self._workers.pop(worker.id, None)
        self._spawned = [h for h in self._spawned if not h.join(0)]
        slot = self._by_worker.pop(worker.id, None)
        if slot is not None and worker is slot.standby:
            log.warning(
                "runtime: the successor booted for slot %d failed: %s; trying again later",
                slot.id,
                worker.describe_exit(),
            )
            slot.standby = None
            slot.standby_ready = False
            slot.recycling = False
            slot.booted_at = time.monotonic()  # the next try after another max_worker_age
            return
        if slot is None or slot.worker is not worker:
            return
        slot.worker = None
        if slot.state in (_SlotState.RUNNING, _SlotState.BOOTING):
            if slot.initial and self._state == "starting":
                self._fatal = BootstrapError(
                    f"a fresh {self.backend} worker died while bootstrapping: {worker.describe_exit()}"
                )
                self._stopping = True
                return
            self._counts["replaced"] += 1
            self._ops.count("replaced", slot.kind.label)
            log.warning("runtime: %s; replacing it", worker.describe_exit())
            self._on_failure(slot, worker.describe_exit(), None, worker_gone=True)
            self._ops.task_failed(slot, worker, None, worker.describe_exit(), self.backend)

    def _due(self, now: float) -> None:
        with self._lock:
            for slot in self._live_slots():
                if (
                    slot.state is _SlotState.WAITING
                    and now >= slot.restart_at
                    and not self._stopping
                ):
                    self._counts["restarts"] += 1
                    self._ops.count("restarts", slot.kind.label)
                    if slot.worker is None:
                        try:
                            self._spawn(slot)
                        except Exception as exc:
                            log.error("runtime: could not start a replacement worker: %s", exc)
                            slot.restart_at = now + self.policy.delay(len(slot.failures) + 1)
                    else:
                        slot.attempt += 1
                        slot.runs += 1
                        slot.state = _SlotState.RUNNING
                        slot.worker.send(
                            (
                                "task",
                                self._task_blob(slot.kind),
                                self._info_running(slot, slot.worker),
                            )
                        )

    def _on_resize(self, target: int) -> None:
        self._target = target
        if self._stopping:
            return
        wanted = split_by_weight([(k, k.weight) for k in self._kinds], target)
        for kind, n in wanted.items():
            live = [s for s in self._live_slots() if s.kind is kind and not s.retiring]
            if len(live) < n:
                for _ in range(n - len(live)):
                    self._new_slot(kind, initial=False)
            elif len(live) > n:
                # Retire the least useful first: waiting, then booting, then running.
                order = {_SlotState.WAITING: 0, _SlotState.BOOTING: 1, _SlotState.RUNNING: 2}
                for slot in sorted(live, key=lambda s: order.get(s.state, 3))[: len(live) - n]:
                    slot.retiring = True
                    if slot.state is _SlotState.WAITING:
                        slot.state = _SlotState.DONE
                    elif slot.worker is not None and slot.state is _SlotState.RUNNING:
                        slot.worker.request_stop()
        log.info("runtime: pool resized to %d workers", target)

    def _on_stop(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._stopping:
            if self._stop_deadline is None or deadline < self._stop_deadline:
                self._stop_deadline = deadline
            return
        self._stopping = True
        self._state = "stopping"
        self._stop_deadline = deadline
        for slot in self._live_slots():
            self._release_standby(slot)
            if slot.state is _SlotState.WAITING:
                slot.state = _SlotState.DONE
            elif slot.worker is not None:
                slot.worker.request_stop()
                if slot.state is _SlotState.BOOTING:
                    self._finish_slot(slot, _SlotState.DONE, counted=None)

    def _abandon(self) -> None:
        with self._lock:
            for slot in self._live_slots():
                self._counts["unfinished"] += 1
                worker = slot.worker
                label = f"{slot.kind.label} (slot {slot.id})"
                if worker is not None and not worker.kill():
                    self._drop_worker(
                        worker,
                        f"task {label} did not stop in time (check self.stopping in long loops)",
                    )
                else:
                    log.warning("runtime: task %s did not stop in time and was killed", label)
                slot.state = _SlotState.DONE
                slot.worker = None

    def _shutdown_workers(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            if self._state != "new":
                self._state = "stopped"
            self._report = PoolReport(
                completed=self._counts["completed"],
                restarts=self._counts["restarts"],
                gave_up=self._counts["gave_up"],
                replaced=self._counts["replaced"],
                unfinished=self._counts["unfinished"],
                stopped=self._stopping,
                failures=tuple(self._failures),
                recycled=self._counts["recycled"],
            )
        for worker in workers:
            worker.exit()
        # Join every worker this pool ever started, not only the ones still connected: a
        # worker whose pipe closed may still be tearing down its interpreter or process.
        # Abandoned ones are not waited for: they may never end (see WorkerHandle.abandon).
        stragglers = join_all([w for w in self._spawned if w.abandoned is None], 5.0)
        if self._hub is not None:
            self._hub.close()
        stragglers = join_all(stragglers, 1.0)
        for worker in stragglers:
            worker.abandon("it did not end when the pool stopped")
        self._spawned = []

    # ------------------------------------------------------------------ lifecycle deadlines
    def _boot_deadlines(self, slots: list[_Slot]) -> list[float]:
        timeout = self.limits.boot_timeout
        if timeout is None:
            return []
        out = [
            s.booted_at + timeout
            for s in slots
            if s.state is _SlotState.BOOTING and s.worker is not None
        ]
        out += [
            s.standby_at + timeout for s in slots if s.standby is not None and not s.standby_ready
        ]
        return out

    def _age_deadlines(self, slots: list[_Slot]) -> list[float]:
        age = self.limits.max_worker_age
        if age is None or self._stopping:
            return []
        return [
            s.booted_at + age
            for s in slots
            if s.state is _SlotState.RUNNING and s.standby is None and not s.retiring
        ]

    def _drop_worker(self, worker: WorkerHandle, reason: str) -> None:
        """Detach a worker from its slot for good: a process is killed, others abandoned."""
        self._by_worker.pop(worker.id, None)
        if self.backend == "process":
            log.warning("runtime: killing process worker %d: %s", worker.id, reason)
            worker.kill()  # its exit comes back as a "closed" event; it is reaped at shutdown
            return
        self._workers.pop(worker.id, None)
        self._spawned = [h for h in self._spawned if h is not worker]
        worker.abandon(reason)

    def _check_boots(self, now: float) -> None:
        """Give up on bootstraps that ran past ``boot_timeout`` (supervisor thread, lock held)."""
        timeout = self.limits.boot_timeout
        if timeout is None or self._fatal is not None:
            return
        for slot in self._live_slots():
            worker = slot.worker
            if (
                slot.state is _SlotState.BOOTING
                and worker is not None
                and now - slot.booted_at >= timeout
            ):
                elapsed = now - slot.booted_at
                what = (
                    f"worker {worker.id} (slot {slot.id}, task {slot.kind.label}, "
                    f"{self.backend} backend) did not finish the bootstrap "
                    f"{self._bootstrap_name} within boot_timeout={timeout:g}s "
                    f"({elapsed:.1f}s elapsed)"
                )
                fate = "killed" if self.backend == "process" else "abandoned"
                self._drop_worker(worker, f"its bootstrap ran past boot_timeout={timeout:g}s")
                slot.worker = None
                if slot.initial and self._state == "starting":
                    self._fatal = BootstrapError(
                        f"{what}; it was {fate}. Make the bootstrap faster, raise "
                        "boot_timeout (None: no limit), or find what it waits for"
                    )
                    self._stopping = True
                    # The pool stops: the other bootstraps still running are given up too
                    # (no stop request can reach code that has not reported ready).
                    for other in self._live_slots():
                        if other.state is _SlotState.BOOTING and other.worker is not None:
                            self._drop_worker(other.worker, "the pool's start-up failed")
                            other.worker = None
                            other.state = _SlotState.DONE
                    return
                log.error("runtime: %s; it was %s and will be retried", what, fate)
                summary = f"bootstrap timed out after {elapsed:.1f}s"
                self._on_failure(slot, summary, None, worker_gone=True)
                self._ops.task_failed(
                    slot, worker, None, summary, self.backend, exc_type="runtime.BootstrapError"
                )
            standby = slot.standby
            if standby is not None and not slot.standby_ready and now - slot.standby_at >= timeout:
                log.error(
                    "runtime: the successor worker %d booted for slot %d did not finish the "
                    "bootstrap %s within boot_timeout=%gs; trying again later",
                    standby.id,
                    slot.id,
                    self._bootstrap_name,
                    timeout,
                )
                slot.standby = None
                slot.recycling = False
                self._drop_worker(standby, f"its bootstrap ran past boot_timeout={timeout:g}s")
                slot.booted_at = now  # the next try after another max_worker_age

    def _check_ages(self, now: float) -> None:
        """Boot a successor for each running task whose worker passed ``max_worker_age``."""
        age = self.limits.max_worker_age
        if age is None or self._stopping:
            return
        for slot in self._live_slots():
            if (
                slot.state is _SlotState.RUNNING
                and slot.worker is not None
                and slot.standby is None
                and not slot.retiring
                and now - slot.booted_at >= age
            ):
                log.info(
                    "runtime: the worker of slot %d (%s) passed max_worker_age=%gs; booting its "
                    "successor before asking the task to stop",
                    slot.id,
                    slot.kind.label,
                    age,
                )
                try:
                    self._spawn(slot, standby=True)
                except Exception as exc:
                    log.error("runtime: could not start a successor worker: %s", exc)
                    slot.booted_at = now

    def _on_standby_message(self, slot: _Slot, worker: WorkerHandle, msg: tuple[Any, ...]) -> None:
        what = msg[0]
        if what == "ready":
            worker.pid = msg[1]
            slot.standby_ready = True
            if self._stopping or slot.retiring:
                self._release_standby(slot)
            elif slot.state is _SlotState.RUNNING and slot.worker is not None:
                slot.recycling = True
                slot.worker.request_stop()
            elif slot.state is _SlotState.WAITING:
                self._count_recycled(slot, "age")
                self._adopt_standby(slot)
            else:
                self._release_standby(slot)
        elif what == "boot_failed":
            log.warning(
                "runtime: the successor booted for slot %d failed its bootstrap: %s: %s; "
                "trying again later",
                slot.id,
                msg[1][1],
                msg[1][2],
            )
            self._release_standby(slot)
            slot.booted_at = time.monotonic()

    def _recycle_running(self, slot: _Slot) -> None:
        """The task stopped for its aged worker's successor: run it again there."""
        label = f"{slot.kind.label} (slot {slot.id})"
        log.info("runtime: task %s stopped for recycling; starting it on its new worker", label)
        self._count_recycled(slot, "age")
        self._adopt_standby(slot)
        worker = slot.worker
        assert worker is not None
        slot.attempt += 1
        slot.runs += 1
        slot.state = _SlotState.RUNNING
        worker.send(("task", self._task_blob(slot.kind), self._info_running(slot, worker)))
