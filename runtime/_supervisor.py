"""A pool's supervisor: the one thread that takes every decision for a :class:`~runtime.Pool`.

It handles events from one queue: worker messages, worker exits, resize and stop
requests, and the deadlines (a restart due, a bootstrap's time up, a worker's age
reached, the stop timeout), which are hub timers that *post* an event
(``WorkerSet.call_later`` with ``post=``). The loop only ever waits on its queue:
nothing polls, and no decision is taken on any other thread.

The workers' lifecycle (spawn, boot deadline, kill-or-abandon, the successor hand-over)
is the :class:`~runtime._workerset.WorkerSet`'s; this class is its owner. It keeps the
slots (one per worker, bound to a task kind, ``runtime._slots``) and acts on the restart
decision, a value computed by :func:`runtime._policy.decide` and handed to observers.

What the lifecycle rules here prevent:

* a bootstrap that hangs blocking ``start()`` for ever, or wedging a running pool:
  past ``boot_timeout`` a process worker is killed and any other is abandoned, and the
  slot counts a failure and retries with the restart policy's backoff, while events
  keep being served;
* a crash loop eating memory: on Pythons whose interpreters leak on destroy, a slot's
  restarts get at most ``RestartPolicy.fresh_workers`` fresh interpreters, then reuse
  the bootstrapped one;
* workers accumulating state for ever: the lifecycle limits replace a worker at a task
  boundary, and a running task's aged worker gets its successor booted *before* the
  task is asked to stop.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from ._common import close_at_exit
from ._errors import PoolError
from ._events import TaskEvent, TaskFailure
from ._heartbeat import Heartbeat
from ._hub import Hub
from ._policy import Decision, decide, interpreters_leak, split_by_weight
from ._pool_workers import PoolWorkers
from ._signals import SignalAwareEvent
from ._slots import TERMINAL, Kind, Slot, SlotState, restart_backoff, retire_order
from ._statistics import PoolReport, PoolStatistics
from ._task import WorkerInfo
from ._wire import exception_name
from .backends import join_all

if TYPE_CHECKING:
    from ._capabilities import Capabilities
    from ._events import Hooks
    from ._lifecycle import Limits
    from ._policy import RestartPolicy
    from ._workerset import Member
    from .ops._pool_ops import PoolOps

__all__ = ["Supervisor"]

log = logging.getLogger("runtime")

#: Failures a pool keeps for its report (the most recent ones).
_FAILURES_KEPT = 1000


class Supervisor:
    """Everything a pool changes, and the thread that changes it (see the module's doc).

    The :class:`~runtime.Pool` reads ``state``, ``stopping``, ``fatal`` and ``report``,
    waits on ``started`` and ``finished``, and talks to the thread through :meth:`post`.
    """

    def __init__(
        self,
        pool: Any,
        *,
        backend: str,
        caps: Capabilities,
        policy: RestartPolicy,
        limits: Limits,
        kinds: list[Kind],
        target: int,
        bootstrap: Any,
        bootstrap_name: str,
        pickling: Any,
        hooks: Hooks,
        ops: PoolOps,
    ) -> None:
        self._pool = pool  # the component observers are told about
        self.backend = backend
        self.policy = policy
        self.limits = limits
        self.kinds = kinds
        self.target = target
        self._worker_config = {
            "backend": backend,
            "caps": caps,
            "limits": limits,
            "bootstrap": bootstrap,
            "bootstrap_name": bootstrap_name,
            "pickling": pickling,
            "hooks": hooks,
        }
        self._hooks = hooks
        self._ops = ops
        self._fresh_budget = policy.fresh_worker_budget(backend)
        self._budget_warned = False
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
        self.state = "new"
        self.stopping = False
        self._stop_deadline: float | None = None
        self._deadline_passed = False
        self._crew: PoolWorkers | None = None
        # The main thread waits on these in start()/run()/stop(): a SIGTERM taken by another thread still wakes it.
        self.started = SignalAwareEvent()
        self.finished = SignalAwareEvent()
        self.fatal: BaseException | None = None
        self.report: PoolReport | None = None

    def post(self, event: tuple[Any, ...]) -> None:
        """Hand an event to the supervisor thread (any thread may call it)."""
        self._events.put(event)

    def start(self) -> None:
        """Start the supervisor thread and wait until every first worker booted (or one failed)."""
        with self._lock:
            if self.state != "new":
                raise PoolError(
                    f"this pool was already started (state: {self.state}); create a new Pool"
                )
            self.state = "starting"
        events = self._events
        hub = Hub(name="runtime-pool-hub")
        self._crew = PoolWorkers(
            self, pool=self._pool, hub=hub, events=events, **self._worker_config
        )
        thread = threading.Thread(target=self._supervise, name="runtime-supervisor", daemon=True)
        self._heartbeat = Heartbeat("supervisor", thread)
        self._ops.attach(self._hooks, [self._heartbeat, hub.heartbeat])
        thread.start()
        close_at_exit(self._pool)
        self.started.wait()

    def statistics(self) -> PoolStatistics:
        with self._lock:
            live = [s for s in self._slots.values() if s.state not in TERMINAL]
            counts = self._counts

            def by_kind(what: str) -> dict[str, int]:
                return {k: n for (w, k), n in self._by_kind.items() if w == what}

            return PoolStatistics(
                backend=self.backend,
                target_workers=self.target,
                workers_alive=0 if self._crew is None else len(self._crew.set.members),
                running=sum(s.state is SlotState.RUNNING for s in live),
                booting=sum(s.state is SlotState.BOOTING for s in live),
                waiting_restart=sum(s.state is SlotState.WAITING for s in live),
                completed=counts["completed"],
                restarts=counts["restarts"],
                gave_up=counts["gave_up"],
                replaced=counts["replaced"],
                by_kind=dict(collections.Counter(s.kind.label for s in live)),
                state=self.state,
                recycled=counts["recycled"],
                completed_by_kind=by_kind("completed"),
                restarts_by_kind=by_kind("restarts"),
                gave_up_by_kind=by_kind("gave_up"),
                replaced_by_kind=by_kind("replaced"),
                recycled_by_reason=dict(self._recycled_by),
                restart_backoff=restart_backoff(live, self.kinds, time.monotonic()),
            )

    # ------------------------------------------------------------------ supervisor loop
    def _supervise(self) -> None:
        try:
            self._boot()
            if self.fatal is None:
                self._loop()
        except BaseException as exc:  # a bug here must not leave run() waiting forever
            log.exception("runtime: the pool supervisor failed")
            if self.fatal is None:
                self.fatal = PoolError(f"the pool supervisor failed: {exc!r}")
        finally:
            self._shutdown_workers()
            self._ops.close()
            self._heartbeat.close()
            self.started.set()
            self.finished.set()

    def _boot(self) -> None:
        with self._lock:
            counts = split_by_weight([(k, k.weight) for k in self.kinds], self.target)
            try:
                for kind, n in counts.items():
                    for _ in range(n):
                        self._new_slot(kind, initial=True)
            except Exception as exc:
                self.fatal = exc
                return
        # Wait for every initial worker to report ready (or for the first boot failure).
        while not self.fatal:
            with self._lock:
                booting = any(
                    s.state is SlotState.BOOTING and s.initial for s in self._slots.values()
                )
            if not booting:
                break
            self._handle(self._heartbeat.get(self._events))
        with self._lock:
            if self.fatal is None and not self.stopping:
                self.state = "running"
        self.started.set()

    def _loop(self) -> None:
        while True:
            with self._lock:
                live = any(s.state not in TERMINAL for s in self._slots.values())
                members = bool(self._workers.set.members)
            if not live and (not self.stopping or not members):
                break
            if self._deadline_passed:
                self._abandon()
                break
            self._handle(self._heartbeat.get(self._events))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        with self._lock:
            if kind == "msg":
                self._workers.message(event[1], event[2])
            elif kind == "closed":
                self._workers.closed(event[1])
            elif kind == "call":  # a deadline (WorkerSet.call_later)
                event[1]()
            elif kind == "resize":
                self._on_resize(event[1])
            elif kind == "stop":
                self._on_stop(event[1])
            elif kind == "deadline":
                # The timer of the current stop deadline, or of a later one (a second stop
                # only brings it forward, and the earlier timer fires first): it has passed.
                self._deadline_passed = self._stop_deadline is not None

    @property
    def _workers(self) -> PoolWorkers:
        assert self._crew is not None, "the pool was not started"
        return self._crew

    # ------------------------------------------------------------------ for PoolWorkers
    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    def start_failed(self, error: BaseException) -> None:
        """A first worker could not start: the pool stops and ``start()`` raises ``error``."""
        self.fatal = error
        self.stopping = True

    def task_done(self, slot: Slot, worker_id: int) -> None:
        """The slot's task returned: its job is finished."""
        self.finish_slot(slot, SlotState.DONE, counted="completed")
        if self._hooks.task_finished:
            self._hooks.task_finished(
                TaskEvent(self._pool, slot.kind.label, slot.id, slot.attempt, worker_id)
            )
        log.info(
            "runtime: task %s (slot %d) returned; its job is finished", slot.kind.label, slot.id
        )

    # ------------------------------------------------------------------ slots and workers
    # Everything below runs on the supervisor thread with the lock held.
    def _new_slot(self, kind: Kind, *, initial: bool) -> Slot:
        self._slot_ids += 1
        slot = Slot(self._slot_ids, kind, initial=initial)
        self._slots[slot.id] = slot
        self._workers.spawn(slot)
        return slot

    def count(self, what: str, slot: Slot) -> None:
        self._counts[what] += 1
        self._by_kind[(what, slot.kind.label)] += 1

    def count_recycled(self, slot: Slot, reason: str) -> None:
        self._counts["recycled"] += 1
        self._recycled_by[reason] += 1

    def finish_slot(self, slot: Slot, state: SlotState, counted: str | None) -> None:
        slot.state = state
        if counted:
            self.count(counted, slot)
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        self._workers.release_worker(slot)
        self._workers.release_standby(slot)

    # ------------------------------------------------------------------ failures and restarts
    def task_failed(
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
            self._workers.release_worker(slot)
        failures = slot.record_failure(now, self.policy.within)
        budget = self._fresh_budget
        decision = decide(
            self.policy,
            failures,
            stopping=self.stopping or slot.retiring,
            worker_alive=slot.worker is not None,
            recycle_reason=slot.recycle_reason(self.limits, now) if slot.worker else None,
            fresh_allowed=budget is None or slot.fresh < budget,
        )
        self._apply(slot, decision, label, now)
        if self._hooks.task_failed:
            if payload is not None:
                exc_type = exception_name(payload[1])
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
                    self._pool,
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
            self.finish_slot(slot, SlotState.DONE, counted=None)
            return
        if decision.action == "give_up":
            log.error(
                "runtime: giving up on %s: %d failures within %.1fs exceed max_restarts=%s",
                label,
                len(slot.failures),
                self.policy.within,
                self.policy.max_restarts,
            )
            self.finish_slot(slot, SlotState.GAVE_UP, counted="gave_up")
            return
        if slot.worker is not None:
            reason = decision.recycle_reason
            if reason is not None:
                log.info("runtime: recycling the worker of %s (%s) for its restart", label, reason)
                self.count_recycled(slot, reason)
                self._workers.set.tell("worker_retired", slot.worker, reason)
                self._workers.release_worker(slot)
            elif decision.fresh_worker:
                slot.fresh += 1
                self._workers.release_worker(slot)
            elif self.policy.fresh_worker:
                self._warn_budget(slot)
        if slot.worker is None and self._workers.standby_booted(slot):
            self._workers.adopt_standby(slot)
        slot.state = SlotState.WAITING
        slot.restart_at = now + decision.delay
        slot.timer = self._workers.set.call_later(decision.delay, self._restart_due, slot)
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
        if slot.state is not SlotState.WAITING or self.stopping:
            return
        self.count("restarts", slot)
        if slot.worker is not None:
            self._workers.run_task(slot)
            return
        try:
            self._workers.spawn(slot)
        except Exception as exc:
            log.error("runtime: could not start a replacement worker: %s", exc)
            delay = self.policy.delay(len(slot.failures) + 1)
            slot.restart_at = time.monotonic() + delay
            slot.timer = self._workers.set.call_later(delay, self._restart_due, slot)

    # ------------------------------------------------------------------ resize and stop
    def _on_resize(self, target: int) -> None:
        self.target = target
        if self.stopping:
            return
        wanted = split_by_weight([(k, k.weight) for k in self.kinds], target)
        for kind, n in wanted.items():
            live = [s for s in self._slots.values() if s.live and s.kind is kind and not s.retiring]
            if len(live) < n:
                for _ in range(n - len(live)):
                    self._new_slot(kind, initial=False)
            for slot in retire_order(live, len(live) - n) if len(live) > n else ():
                slot.retiring = True
                if slot.state is SlotState.WAITING:
                    self.finish_slot(slot, SlotState.DONE, counted=None)
                elif slot.worker is not None and slot.state is SlotState.RUNNING:
                    slot.worker.handle.request_stop()
        log.info("runtime: pool resized to %d workers", target)

    def _on_stop(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        if self.stopping and self._stop_deadline is not None and deadline >= self._stop_deadline:
            return
        self._stop_deadline = deadline
        self._workers.set.hub.call_later(max(0.0, timeout), lambda: self._events.put(("deadline",)))
        if self.stopping:
            return
        self.stopping = True
        self.state = "stopping"
        for slot in self._slots.values():
            if not slot.live:
                continue
            self._workers.release_standby(slot)
            if slot.state is SlotState.WAITING:
                self.finish_slot(slot, SlotState.DONE, counted=None)
            elif slot.worker is not None:
                slot.worker.handle.request_stop()
                if slot.state is SlotState.BOOTING:
                    self.finish_slot(slot, SlotState.DONE, counted=None)

    def _abandon(self) -> None:
        with self._lock:
            for slot in self._slots.values():
                if not slot.live:
                    continue
                self._counts["unfinished"] += 1
                if slot.worker is not None:
                    self._workers.drop(
                        slot.worker,
                        f"task {slot.label(attempt=False)} did not stop in time "
                        "(check self.stopping in long loops)",
                    )
                slot.state = SlotState.DONE
                slot.worker = None

    def _shutdown_workers(self) -> None:
        workers = self._workers.set
        with self._lock:
            members = list(workers.members.values())
            if self.state != "new":
                self.state = "stopped"
            self.report = PoolReport(
                completed=self._counts["completed"],
                restarts=self._counts["restarts"],
                gave_up=self._counts["gave_up"],
                replaced=self._counts["replaced"],
                unfinished=self._counts["unfinished"],
                stopped=self.stopping,
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
                self._workers.set.tell("worker_stopped", member, "exit")
            workers.members.clear()
