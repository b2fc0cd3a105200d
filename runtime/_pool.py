"""The supervised pool: N workers, each running one long-lived Task, kept alive.

All decisions are taken on one supervisor thread that handles events from one queue:
worker messages, worker exits, resize and stop requests, and the deadlines (a restart
due, a bootstrap's time up, a worker's age reached, the stop timeout), which are hub
timers that *post* an event. The loop only ever waits on its queue: nothing polls.

The workers' lifecycle (spawn, boot deadline, kill-or-abandon, the successor hand-over)
is a :class:`~runtime._workerset.WorkerSet`'s; the pool keeps its slots (one per worker,
bound to a task kind, ``runtime._slots``) and takes the restart decision, a value
computed by :func:`runtime._policy.decide` that it acts on and hands to observers.

What the lifecycle rules here prevent:

* a bootstrap that hangs blocking ``start()`` for ever, or wedging a running pool:
  each booting worker has a deadline (``boot_timeout``); past it a process worker is
  killed and any other is abandoned, and the slot counts a failure and retries with
  the restart policy's backoff, while events keep being served;
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
import logging
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from ._capabilities import Capabilities, capabilities
from ._channel import pickling_for_process
from ._common import (
    bootstrap_name,
    close_at_exit,
    pack_bootstrap,
    pickled,
    resolve_backend,
    warn_if_gil_returned,
)
from ._early import guard_main_import
from ._errors import BackendUnavailable, BootstrapError, ConfigurationError, PoolError
from ._events import Hooks, Observer, TaskEvent, TaskFailure, WorkerEvent
from ._heartbeat import Heartbeat
from ._hub import Hub
from ._lifecycle import DEFAULT_BOOT_TIMEOUT, Limits
from ._pickling import dumps, mode_for
from ._policy import (
    Decision,
    RestartPolicy,
    decide,
    interpreters_leak,
    resolve_workers,
    split_by_weight,
)
from ._signals import SignalAwareEvent
from ._slots import TERMINAL, Kind, Slot, SlotState, normalize_tasks, restart_backoff, retire_order
from ._task import WorkerInfo
from ._wire import decode_exception
from ._workerset import Member, WorkerSet
from .backends import join_all
from .ops._pool_ops import PoolOps

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import FrameType, TracebackType

__all__ = ["Pool", "PoolReport", "PoolStatistics"]

log = logging.getLogger("runtime")

#: Failures a pool keeps for its report (the most recent ones).
_FAILURES_KEPT = 1000
_LIFECYCLE = ("ready", "boot_failed", "over_memory")


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
    completed_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    restarts_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    gave_up_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    replaced_by_kind: Mapping[str, int] = dataclasses.field(default_factory=dict)
    recycled_by_reason: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Per task kind: the longest wait left before a restart (0.0 when none waits).
    restart_backoff: Mapping[str, float] = dataclasses.field(default_factory=dict)


class Pool:
    """Keep ``workers`` workers busy running tasks, supervised.

    ``tasks`` is a :class:`Task` subclass, an instance (its constructor arguments
    travel to each worker), a ``"pkg.mod:Name"`` reference, or a mapping of those to
    weights (``{A: 3, B: 7}``) that splits the workers. ``workers`` is a count or a
    fraction of the usable CPUs. ``bootstrap`` (a callable or reference) runs once in
    every fresh worker; its return value is the task's ``self.context``.
    ``on_failure`` (a callable or reference) receives a :class:`runtime.Failure` for
    every task failure; ``metrics=False`` keeps this pool out of ``/metrics``;
    ``observers`` (a list of :class:`runtime.Observer`) hear this pool's events.

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
        observers: Iterable[Observer] = (),
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
        self._hooks = Hooks(observers)
        self._caps = caps
        self._cpu_count = caps.cpu_count
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
        for spec, weight in normalize_tasks(tasks):
            blob = pickled(
                spec, f"task {spec.label} with its constructor arguments", self._pickling
            )
            kinds.append(Kind(spec, blob, weight, spec.label))
        self._kinds = kinds
        split_by_weight([(k, k.weight) for k in kinds], target)  # validates weights vs count
        self._target = target
        self._bootstrap = pack_bootstrap(bootstrap, self.backend)
        self._bootstrap_name = bootstrap_name(bootstrap)
        self._ops = PoolOps(self, on_failure, metrics)

        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots: dict[int, Slot] = {}
        self._slot_ids = 0
        self._counts = collections.Counter[str]()
        self._by_kind = collections.Counter[tuple[str, str]]()  # (counter, task kind)
        self._recycled_by = collections.Counter[str]()
        # The most recent failures, for the report: a pool in an endless crash loop must
        # not grow by one string per failure for as long as it lives.
        self._failures: collections.deque[str] = collections.deque(maxlen=_FAILURES_KEPT)
        self._state = "new"
        self._stopping = False
        self._stop_deadline: float | None = None
        self._deadline_passed = False
        self._set: WorkerSet | None = None
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
        events = self._events
        hub = Hub(name="runtime-pool-hub")
        self._set = WorkerSet(
            self,
            backend=self.backend,
            hub=hub,
            info=self._info,
            bootstrap=self._bootstrap,
            boot_timeout=self.limits.boot_timeout,
            memory_limit=self.limits.max_worker_memory,
            on_message=lambda w, m: events.put(("msg", w, m)),
            on_closed=lambda w: events.put(("closed", w)),
            post=lambda call: events.put(("call", call)),
        )
        self._thread = threading.Thread(
            target=self._supervise, name="runtime-supervisor", daemon=True
        )
        self._heartbeat = Heartbeat("supervisor", self._thread)
        self._ops.attach(self._hooks, [self._heartbeat, hub.heartbeat])
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
        """A frozen snapshot of this pool: slots, workers, counters (by task kind too)."""
        with self._lock:
            live = [s for s in self._slots.values() if s.state not in TERMINAL]
            counts = self._counts

            def by_kind(what: str) -> dict[str, int]:
                return {k: n for (w, k), n in self._by_kind.items() if w == what}

            return PoolStatistics(
                backend=self.backend,
                target_workers=self._target,
                workers_alive=0 if self._set is None else len(self._set.members),
                running=sum(s.state is SlotState.RUNNING for s in live),
                booting=sum(s.state is SlotState.BOOTING for s in live),
                waiting_restart=sum(s.state is SlotState.WAITING for s in live),
                completed=counts["completed"],
                restarts=counts["restarts"],
                gave_up=counts["gave_up"],
                replaced=counts["replaced"],
                by_kind=dict(collections.Counter(s.kind.label for s in live)),
                state=self._state,
                recycled=counts["recycled"],
                completed_by_kind=by_kind("completed"),
                restarts_by_kind=by_kind("restarts"),
                gave_up_by_kind=by_kind("gave_up"),
                replaced_by_kind=by_kind("replaced"),
                recycled_by_reason=dict(self._recycled_by),
                restart_backoff=restart_backoff(live, self._kinds, time.monotonic()),
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

    # ------------------------------------------------------------------ supervisor loop
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
            self._heartbeat.close()
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
            with self._lock:
                booting = any(
                    s.state is SlotState.BOOTING and s.initial for s in self._slots.values()
                )
            if not booting:
                break
            self._handle(self._heartbeat.get(self._events))
        with self._lock:
            if self._fatal is None and not self._stopping:
                self._state = "running"
        self._started.set()

    def _loop(self) -> None:
        while True:
            with self._lock:
                live = any(s.state not in TERMINAL for s in self._slots.values())
                members = bool(self._workers().members)
            if not live and (not self._stopping or not members):
                break
            if self._deadline_passed:
                self._abandon()
                break
            self._handle(self._heartbeat.get(self._events))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        with self._lock:
            if kind == "msg":
                self._on_message(event[1], event[2])
            elif kind == "closed":
                self._on_closed(event[1])
            elif kind == "call":  # a deadline (WorkerSet.call_later)
                event[1]()
            elif kind == "resize":
                self._on_resize(event[1])
            elif kind == "stop":
                self._on_stop(event[1])
            elif kind == "deadline":
                deadline = self._stop_deadline
                self._deadline_passed = deadline is not None and time.monotonic() >= deadline

    def _workers(self) -> WorkerSet:
        assert self._set is not None
        return self._set

    # ------------------------------------------------------------------ slots and workers
    # Everything below runs on the supervisor thread with the lock held.
    def _new_slot(self, kind: Kind, *, initial: bool) -> Slot:
        self._slot_ids += 1
        slot = Slot(self._slot_ids, kind, initial=initial)
        self._slots[slot.id] = slot
        self._spawn(slot)
        return slot

    def _spawn(self, slot: Slot, *, standby: bool = False) -> None:
        """Start a worker for ``slot``: its own (state BOOTING), or a standby successor."""
        workers = self._workers()
        member = workers.spawn(tag=slot, predecessor=slot.worker if standby else None)
        if standby:
            slot.standby = member
        else:
            slot.new_worker(member, member.started)
            slot.state = SlotState.BOOTING
            self._arm_age(slot)
        self._worker_event("worker_started", member, "standby" if standby else "spawn")

    def _info(self, member: Member) -> dict[str, Any]:
        slot: Slot = member.tag
        return {
            "id": member.handle.id,
            "backend": self.backend,
            "attempt": slot.attempt + 1,
            "slot": slot.id,
            "kind": slot.kind.label,
            "pid": member.handle.pid or 0,
        }

    def _worker_event(
        self, hook: str, member: Member, reason: str, error: BaseException | str | None = None
    ) -> None:
        dispatch = getattr(self._hooks, hook)
        if dispatch:
            handle = member.handle
            dispatch(WorkerEvent("pool", self, handle.id, self.backend, handle.pid, reason, error))

    def _count(self, what: str, slot: Slot) -> None:
        self._counts[what] += 1
        self._by_kind[(what, slot.kind.label)] += 1

    def _count_recycled(self, slot: Slot, reason: str) -> None:
        self._counts["recycled"] += 1
        self._recycled_by[reason] += 1

    def _run_task(self, slot: Slot) -> None:
        """Send the slot's task to its (booted, idle) worker."""
        worker = slot.worker
        assert worker is not None
        slot.attempt += 1
        slot.runs += 1
        slot.state = SlotState.RUNNING
        slot.initial = False
        info = self._info(worker)
        info["attempt"] = slot.attempt
        worker.handle.send(("task", self._task_blob(slot.kind), info))
        self._check_age(slot)

    def _task_blob(self, kind: Kind) -> bytes:
        if self.backend != "process":
            return kind.blob
        # Channels among the task's arguments travel to a child as duplicated descriptors.
        with pickling_for_process():
            return dumps(kind.spec, self._pickling)

    def _release_worker(self, slot: Slot) -> None:
        """Detach the slot's worker and ask it to finish (after what it runs)."""
        if slot.worker is not None:
            self._workers().retire(slot.worker)
        slot.worker = None
        slot.recycling = False
        if slot.age_timer is not None:
            slot.age_timer.cancel()
            slot.age_timer = None

    def _release_standby(self, slot: Slot) -> None:
        if slot.standby is not None:
            self._workers().retire(slot.standby)
        slot.standby = None
        slot.recycling = False

    def _adopt_standby(self, slot: Slot, reason: str = "age") -> None:
        """The ready standby becomes the slot's (idle) worker; the old one retires."""
        standby = slot.standby
        assert standby is not None
        workers = self._workers()
        old = slot.worker
        if old is not None and workers.live(old):
            workers.hand_over(old)  # retires ``old``, activates the standby
            self._worker_event("worker_retired", old, reason)
        else:
            standby.predecessor = None
            workers.activate(standby)
        self._release_worker(slot)
        slot.standby = None
        slot.new_worker(standby, standby.started)
        self._arm_age(slot)

    def _finish_slot(self, slot: Slot, state: SlotState, counted: str | None) -> None:
        slot.state = state
        if counted:
            self._count(counted, slot)
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        self._release_worker(slot)
        self._release_standby(slot)

    def _drop(self, member: Member, reason: str) -> bool:
        """Give up on ``member`` for good: killed (process, True) or abandoned."""
        killed = self._workers().kill_or_abandon(member, reason)
        if killed:
            log.warning("runtime: killed process worker %d: %s", member.handle.id, reason)
        self._worker_event("worker_stopped", member, "killed" if killed else "abandoned", reason)
        return killed

    # ------------------------------------------------------------------ WorkerSet callbacks
    def worker_ready(self, member: Member) -> None:
        slot: Slot = member.tag
        self._worker_event("worker_ready", member, "spawn")
        if member is slot.standby:
            self._standby_ready(slot)
        elif member is slot.worker:
            if self._stopping or slot.retiring:
                self._finish_slot(slot, SlotState.DONE, counted=None)
            else:
                self._run_task(slot)

    def worker_boot_failed(self, member: Member, payload: Any, refused: bool) -> None:
        slot: Slot = member.tag
        self._worker_event("worker_failed", member, "boot_failed", f"{payload[1]}: {payload[2]}")
        if member is slot.standby:
            log.warning(
                "runtime: the successor booted for slot %d failed its bootstrap: %s: %s; "
                "trying again later",
                slot.id,
                payload[1],
                payload[2],
            )
            self._release_standby(slot)
            self._standby_failed(slot)
            return
        if member is not slot.worker:
            return
        if slot.initial and self._state == "starting":
            cls = BackendUnavailable if refused else BootstrapError
            _, name, message, tb = payload
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
        summary = f"bootstrap failed: {payload[1]}: {payload[2]}"
        self._task_failed(slot, summary, payload[3], payload=payload)

    def worker_boot_timed_out(self, member: Member, elapsed: float, killed: bool) -> None:
        slot: Slot = member.tag
        timeout = self.limits.boot_timeout
        self._worker_event("worker_failed", member, "boot_timeout", f"{elapsed:.1f}s")
        if member is slot.standby:
            log.error(
                "runtime: the successor worker %d booted for slot %d did not finish the "
                "bootstrap %s within boot_timeout=%gs; trying again later",
                member.handle.id,
                slot.id,
                self._bootstrap_name,
                timeout,
            )
            slot.standby = None
            slot.recycling = False
            self._standby_failed(slot)
            return
        if member is not slot.worker:
            return
        what = (
            f"worker {member.handle.id} (slot {slot.id}, task {slot.kind.label}, "
            f"{self.backend} backend) did not finish the bootstrap "
            f"{self._bootstrap_name} within boot_timeout={timeout:g}s "
            f"({elapsed:.1f}s elapsed)"
        )
        fate = "killed" if killed else "abandoned"
        slot.worker = None
        if slot.initial and self._state == "starting":
            self._fatal = BootstrapError(
                f"{what}; it was {fate}. Make the bootstrap faster, raise "
                "boot_timeout (None: no limit), or find what it waits for"
            )
            self._stopping = True
            # The pool stops: the other bootstraps still running are given up too
            # (no stop request can reach code that has not reported ready).
            for other in self._slots.values():
                if other.state is SlotState.BOOTING and other.worker is not None:
                    self._drop(other.worker, "the pool's start-up failed")
                    other.worker = None
                    other.state = SlotState.DONE
            return
        log.error("runtime: %s; it was %s and will be retried", what, fate)
        self._task_failed(
            slot,
            f"bootstrap timed out after {elapsed:.1f}s",
            None,
            exc_type="runtime.BootstrapError",
            failed=member,
        )

    def worker_over_memory(self, member: Member, nbytes: int) -> None:
        slot: Slot = member.tag
        if member is slot.worker:
            slot.over_memory = nbytes

    # ------------------------------------------------------------------ worker messages
    def _on_message(self, handle: Any, msg: tuple[Any, ...]) -> None:
        workers = self._workers()
        member = workers.members.get(handle.id)
        if member is None or handle.abandoned is not None:
            return
        what = msg[0]
        if what in _LIFECYCLE:
            if what == "ready" and member is member.tag.worker:
                warn_if_gil_returned(msg[2], self._caps, self.backend)
            workers.message(handle, msg)
            return
        slot: Slot = member.tag
        if member is not slot.worker:
            return
        if what == "task_done":
            if (
                slot.recycling
                and self._standby_booted(slot)
                and not (self._stopping or slot.retiring)
            ):
                self._recycle_running(slot)
                return
            self._finish_slot(slot, SlotState.DONE, counted="completed")
            if self._hooks.task_finished:
                self._hooks.task_finished(
                    TaskEvent(self, slot.kind.label, slot.id, slot.attempt, handle.id)
                )
            log.info(
                "runtime: task %s (slot %d) returned; its job is finished", slot.kind.label, slot.id
            )
        elif what == "task_failed":
            exc = decode_exception(msg[1])
            self._task_failed(slot, f"{type(exc).__name__}: {exc}", msg[1][3], payload=msg[1])

    def _on_closed(self, handle: Any) -> None:
        member = self._workers().closed(handle)
        if member is None:
            return
        slot: Slot = member.tag
        self._worker_event("worker_stopped", member, "exit", handle.describe_exit())
        if member is slot.standby:
            log.warning(
                "runtime: the successor booted for slot %d failed: %s; trying again later",
                slot.id,
                handle.describe_exit(),
            )
            slot.standby = None
            slot.recycling = False
            self._standby_failed(slot)
            return
        if member is not slot.worker:
            return
        slot.worker = None
        if slot.state in (SlotState.RUNNING, SlotState.BOOTING):
            if slot.initial and self._state == "starting":
                self._fatal = BootstrapError(
                    f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
                )
                self._stopping = True
                return
            self._count("replaced", slot)
            log.warning("runtime: %s; replacing it", handle.describe_exit())
            self._worker_event("worker_replaced", member, "died", handle.describe_exit())
            self._task_failed(slot, handle.describe_exit(), None, worker_gone=True, failed=member)

    # ------------------------------------------------------------------ failures and restarts
    def _task_failed(
        self,
        slot: Slot,
        summary: str,
        tb: str | None,
        *,
        payload: Any = None,
        exc_type: str = "runtime.WorkerCrashed",
        worker_gone: bool = False,
        failed: Member | None = None,
    ) -> None:
        """Record a failure of ``slot``'s task, decide what happens next, act, report."""
        label = slot.label()
        self._failures.append(f"{label}: {summary}")
        if tb:
            log.error("runtime: task %s failed: %s\n%s", label, summary, tb.rstrip())
        else:
            log.error("runtime: task %s failed: %s", label, summary)
        failed = failed or slot.worker
        now = time.monotonic()
        if worker_gone or slot.state is SlotState.BOOTING:
            self._release_worker(slot)
        failures = slot.record_failure(now, self.policy.within)
        budget = self._fresh_budget
        decision = decide(
            self.policy,
            failures,
            stopping=self._stopping or slot.retiring,
            worker_alive=slot.worker is not None,
            recycle_reason=slot.recycle_reason(self.limits, now) if slot.worker else None,
            fresh_allowed=budget is None or slot.fresh < budget,
        )
        self._apply(slot, decision, label, now)
        if self._hooks.task_failed:
            if payload is not None:
                name: str = payload[1]
                exc_type = name[9:] if name.startswith("builtins.") else name
                message, tb = payload[2], payload[3]
            else:
                message, tb = summary, ""
            info = None
            if failed is not None:
                handle = failed.handle
                info = WorkerInfo(
                    id=handle.id,
                    backend=self.backend,
                    attempt=slot.attempt,
                    slot=slot.id,
                    kind=slot.kind.label,
                    pid=handle.pid,
                )
            self._hooks.task_failed(
                TaskFailure(
                    self,
                    slot.kind.label,
                    slot.id,
                    slot.attempt,
                    info,
                    exc_type,
                    message,
                    tb or "",
                    decision,
                )
            )

    def _apply(self, slot: Slot, decision: Decision, label: str, now: float) -> None:
        if decision.action == "stop":
            self._finish_slot(slot, SlotState.DONE, counted=None)
            return
        if decision.action == "give_up":
            log.error(
                "runtime: giving up on %s: %d failures within %.1fs exceed max_restarts=%s",
                label,
                len(slot.failures),
                self.policy.within,
                self.policy.max_restarts,
            )
            self._finish_slot(slot, SlotState.GAVE_UP, counted="gave_up")
            return
        if slot.worker is not None:
            reason = decision.recycle_reason
            if reason is not None:
                log.info("runtime: recycling the worker of %s (%s) for its restart", label, reason)
                self._count_recycled(slot, reason)
                self._worker_event("worker_retired", slot.worker, reason)
                self._release_worker(slot)
            elif decision.fresh_worker:
                slot.fresh += 1
                self._release_worker(slot)
            elif self.policy.fresh_worker:
                self._warn_budget(slot)
        if slot.worker is None and self._standby_booted(slot):
            self._adopt_standby(slot)
        slot.state = SlotState.WAITING
        slot.restart_at = now + decision.delay
        slot.timer = self._workers().call_later(decision.delay, self._restart_due, slot)
        log.info("runtime: restarting %s in %.3fs", label, decision.delay)

    def _warn_budget(self, slot: Slot) -> None:
        if self._budget_warned:
            return
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
            self._fresh_budget,
            self.backend,
            why,
        )

    def _restart_due(self, slot: Slot) -> None:
        """Timer: the slot's back-off is over."""
        slot.timer = None
        if slot.state is not SlotState.WAITING or self._stopping:
            return
        self._count("restarts", slot)
        if slot.worker is not None:
            self._run_task(slot)
            return
        try:
            self._spawn(slot)
        except Exception as exc:
            log.error("runtime: could not start a replacement worker: %s", exc)
            delay = self.policy.delay(len(slot.failures) + 1)
            slot.restart_at = time.monotonic() + delay
            slot.timer = self._workers().call_later(delay, self._restart_due, slot)

    # ------------------------------------------------------------------ aged workers
    def _arm_age(self, slot: Slot) -> None:
        """Time the slot's worker's age (``max_worker_age``) from ``slot.age_from``."""
        age = self.limits.max_worker_age
        if age is None:
            return
        if slot.age_timer is not None:
            slot.age_timer.cancel()
        delay = max(0.0, slot.age_from + age - time.monotonic())
        slot.age_timer = self._workers().call_later(delay, self._age_due, slot)

    def _age_due(self, slot: Slot) -> None:
        slot.age_timer = None
        self._check_age(slot)

    def _check_age(self, slot: Slot) -> None:
        """Boot a successor for a running task whose worker passed ``max_worker_age``."""
        age = self.limits.max_worker_age
        now = time.monotonic()
        if (
            age is None
            or self._stopping
            or slot.state is not SlotState.RUNNING
            or slot.worker is None
            or slot.standby is not None
            or slot.retiring
            or now - slot.age_from < age
        ):
            return
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
            self._standby_failed(slot)

    def _standby_failed(self, slot: Slot) -> None:
        """The successor could not take over: try again after another ``max_worker_age``."""
        slot.age_from = time.monotonic()
        self._arm_age(slot)

    def _standby_booted(self, slot: Slot) -> bool:
        return slot.standby is not None and slot.standby.booted

    def _standby_ready(self, slot: Slot) -> None:
        if self._stopping or slot.retiring:
            self._release_standby(slot)
        elif slot.state is SlotState.RUNNING and slot.worker is not None:
            slot.recycling = True
            slot.worker.handle.request_stop()
        elif slot.state is SlotState.WAITING:
            self._count_recycled(slot, "age")
            self._adopt_standby(slot)
        else:
            self._release_standby(slot)

    def _recycle_running(self, slot: Slot) -> None:
        """The task stopped for its aged worker's successor: run it again there."""
        log.info(
            "runtime: task %s stopped for recycling; starting it on its new worker",
            slot.label(attempt=False),
        )
        self._count_recycled(slot, "age")
        self._adopt_standby(slot)
        self._run_task(slot)

    # ------------------------------------------------------------------ resize and stop
    def _on_resize(self, target: int) -> None:
        self._target = target
        if self._stopping:
            return
        wanted = split_by_weight([(k, k.weight) for k in self._kinds], target)
        for kind, n in wanted.items():
            live = [s for s in self._slots.values() if s.live and s.kind is kind and not s.retiring]
            if len(live) < n:
                for _ in range(n - len(live)):
                    self._new_slot(kind, initial=False)
            for slot in retire_order(live, len(live) - n) if len(live) > n else ():
                slot.retiring = True
                if slot.state is SlotState.WAITING:
                    self._finish_slot(slot, SlotState.DONE, counted=None)
                elif slot.worker is not None and slot.state is SlotState.RUNNING:
                    slot.worker.handle.request_stop()
        log.info("runtime: pool resized to %d workers", target)

    def _on_stop(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._stopping and self._stop_deadline is not None and deadline >= self._stop_deadline:
            return
        self._stop_deadline = deadline
        self._workers().hub.call_later(max(0.0, timeout), lambda: self._events.put(("deadline",)))
        if self._stopping:
            return
        self._stopping = True
        self._state = "stopping"
        for slot in self._slots.values():
            if not slot.live:
                continue
            self._release_standby(slot)
            if slot.state is SlotState.WAITING:
                self._finish_slot(slot, SlotState.DONE, counted=None)
            elif slot.worker is not None:
                slot.worker.handle.request_stop()
                if slot.state is SlotState.BOOTING:
                    self._finish_slot(slot, SlotState.DONE, counted=None)

    def _abandon(self) -> None:
        with self._lock:
            for slot in self._slots.values():
                if not slot.live:
                    continue
                self._counts["unfinished"] += 1
                if slot.worker is not None:
                    self._drop(
                        slot.worker,
                        f"task {slot.label(attempt=False)} did not stop in time "
                        "(check self.stopping in long loops)",
                    )
                slot.state = SlotState.DONE
                slot.worker = None

    def _shutdown_workers(self) -> None:
        workers = self._workers()
        with self._lock:
            members = list(workers.members.values())
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
        for member in members:
            member.handle.exit()
        # Join every worker this pool ever started, not only the ones still connected: a
        # worker whose pipe closed may still be tearing down its interpreter or process.
        # Abandoned ones are not waited for: they may never end (see WorkerHandle.abandon).
        stragglers = workers.join(5.0)
        workers.hub.close()
        for handle in join_all(stragglers, 1.0):
            handle.abandon("it did not end when the pool stopped")
        workers.spawned = []
        with self._lock:  # the supervisor no longer reads their "closed" events
            for member in list(workers.members.values()):
                self._worker_event("worker_stopped", member, "exit")
            workers.members.clear()
