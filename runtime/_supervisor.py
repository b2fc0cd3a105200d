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

from ._channel import pickling_for_process
from ._common import close_at_exit, warn_if_gil_returned
from ._errors import BackendUnavailable, BootstrapError, PoolError
from ._events import TaskEvent, TaskFailure, WorkerEvent
from ._heartbeat import Heartbeat
from ._hub import Hub
from ._pickling import dumps
from ._policy import Decision, decide, interpreters_leak, split_by_weight
from ._signals import SignalAwareEvent
from ._slots import TERMINAL, Kind, Slot, SlotState, restart_backoff, retire_order
from ._statistics import PoolReport, PoolStatistics
from ._task import WorkerInfo
from ._wire import decode_exception
from ._workerset import Member, WorkerSet
from .backends import join_all

if TYPE_CHECKING:
    from ._capabilities import Capabilities
    from ._events import Hooks
    from ._lifecycle import Limits
    from ._policy import RestartPolicy
    from .ops._pool_ops import PoolOps

__all__ = ["Supervisor"]

log = logging.getLogger("runtime")

#: Failures a pool keeps for its report (the most recent ones).
_FAILURES_KEPT = 1000
_LIFECYCLE = ("ready", "boot_failed", "over_memory")


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
        self._caps = caps
        self.policy = policy
        self.limits = limits
        self.kinds = kinds
        self.target = target
        self._bootstrap = bootstrap
        self._bootstrap_name = bootstrap_name
        self._pickling = pickling
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
        self._set: WorkerSet | None = None
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
                workers_alive=0 if self._set is None else len(self._set.members),
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
                members = bool(self._workers().members)
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
            dispatch(
                WorkerEvent("pool", self._pool, handle.id, self.backend, handle.pid, reason, error)
            )

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
            if self.stopping or slot.retiring:
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
        if slot.initial and self.state == "starting":
            cls = BackendUnavailable if refused else BootstrapError
            _, name, message, tb = payload
            hint = (
                f" (the {self.backend} backend cannot load an extension the bootstrap needs; "
                "use backend='thread' or backend='process')"
                if refused
                else ""
            )
            self.fatal = cls(
                f"the bootstrap failed in a fresh {self.backend} worker: {name}: {message}{hint}",
                tb,
            )
            self.stopping = True
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
        if slot.initial and self.state == "starting":
            self.fatal = BootstrapError(
                f"{what}; it was {fate}. Make the bootstrap faster, raise "
                "boot_timeout (None: no limit), or find what it waits for"
            )
            self.stopping = True
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
                and not (self.stopping or slot.retiring)
            ):
                self._recycle_running(slot)
                return
            self._finish_slot(slot, SlotState.DONE, counted="completed")
            if self._hooks.task_finished:
                self._hooks.task_finished(
                    TaskEvent(self._pool, slot.kind.label, slot.id, slot.attempt, handle.id)
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
            if slot.initial and self.state == "starting":
                self.fatal = BootstrapError(
                    f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
                )
                self.stopping = True
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
            stopping=self.stopping or slot.retiring,
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
        if slot.state is not SlotState.WAITING or self.stopping:
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
            or self.stopping
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
        if self.stopping or slot.retiring:
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
                    self._finish_slot(slot, SlotState.DONE, counted=None)
                elif slot.worker is not None and slot.state is SlotState.RUNNING:
                    slot.worker.handle.request_stop()
        log.info("runtime: pool resized to %d workers", target)

    def _on_stop(self, timeout: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        if self.stopping and self._stop_deadline is not None and deadline >= self._stop_deadline:
            return
        self._stop_deadline = deadline
        self._workers().hub.call_later(max(0.0, timeout), lambda: self._events.put(("deadline",)))
        if self.stopping:
            return
        self.stopping = True
        self.state = "stopping"
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
                self._worker_event("worker_stopped", member, "exit")
            workers.members.clear()
