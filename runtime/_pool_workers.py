"""A pool's workers: each slot's worker and its successor, on the pool's WorkerSet.

:class:`PoolWorkers` owns the pool's :class:`~runtime._workerset.WorkerSet` (spawn, boot
deadline, kill-or-abandon, the hand-over) and binds its members to slots: it starts a
slot's worker, sends it the slot's task, turns the workers' messages and exits into the
:class:`~runtime._supervisor.Supervisor`'s decisions (a task returned, failed, or its
worker died), and recycles an aged worker without a gap: the successor boots *first*,
as a standby, then the running task is asked to stop (``self.stopping``), and once it
returns it runs again on the successor. A task that ignores ``stopping`` keeps running
in its old worker, and the booted successor waits.

Everything here runs on the supervisor thread, under the pool's lock.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ._channel import pickling_for_process
from ._common import warn_if_gil_returned
from ._errors import BackendUnavailable, BootstrapError
from ._pickling import dumps
from ._slots import Kind, Slot, SlotState
from ._wire import decode_exception
from ._workerset import Member, WorkerSet

if TYPE_CHECKING:
    import queue

    from ._capabilities import Capabilities
    from ._events import Hooks
    from ._hub import Hub
    from ._lifecycle import Limits
    from ._supervisor import Supervisor

__all__ = ["PoolWorkers"]

log = logging.getLogger("runtime")

_LIFECYCLE = ("ready", "boot_failed", "over_memory")


class PoolWorkers:
    """The workers of a pool's slots (see the module's doc); the WorkerSet's owner."""

    def __init__(
        self,
        sup: Supervisor,
        *,
        pool: Any,
        hub: Hub,
        events: queue.SimpleQueue[tuple[Any, ...]],
        backend: str,
        caps: Capabilities,
        limits: Limits,
        bootstrap: Any,
        bootstrap_name: str,
        pickling: Any,
        hooks: Hooks,
    ) -> None:
        self._sup = sup
        self._pool = pool  # the component observers are told about
        self.backend = backend
        self._caps = caps
        self.limits = limits
        self._bootstrap_name = bootstrap_name
        self._pickling = pickling
        self.set = WorkerSet(
            self,
            backend=backend,
            hub=hub,
            info=self._info,
            bootstrap=bootstrap,
            limits=limits,
            on_message=lambda w, m: events.put(("msg", w, m)),
            on_closed=lambda w: events.put(("closed", w)),
            hooks=hooks,
            source="pool",
            component=pool,
            post=lambda call: events.put(("call", call)),
        )

    def spawn(self, slot: Slot, *, standby: bool = False) -> None:
        """Start a worker for ``slot``: its own (state BOOTING), or a standby successor."""
        workers = self.set
        member = workers.spawn(tag=slot, predecessor=slot.worker if standby else None)
        if standby:
            slot.standby = member
        else:
            slot.new_worker(member, member.started)
            slot.state = SlotState.BOOTING
            self.arm_age(slot)
        self.set.tell("worker_started", member, "standby" if standby else "spawn")

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

    def run_task(self, slot: Slot) -> None:
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
        self.check_age(slot)

    def _task_blob(self, kind: Kind) -> bytes:
        if self.backend != "process":
            return kind.blob
        # Channels among the task's arguments travel to a child as duplicated descriptors.
        with pickling_for_process():
            return dumps(kind.spec, self._pickling)

    def release_worker(self, slot: Slot) -> None:
        """Detach the slot's worker and ask it to finish (after what it runs)."""
        if slot.worker is not None:
            self.set.retire(slot.worker)
        slot.worker = None
        slot.recycling = False
        if slot.age_timer is not None:
            slot.age_timer.cancel()
            slot.age_timer = None

    def release_standby(self, slot: Slot) -> None:
        if slot.standby is not None:
            self.set.retire(slot.standby)
        slot.standby = None
        slot.recycling = False

    def adopt_standby(self, slot: Slot, reason: str = "age") -> None:
        """The ready standby becomes the slot's (idle) worker; the old one retires."""
        standby = slot.standby
        assert standby is not None
        workers = self.set
        old = slot.worker
        if old is not None and workers.live(old):
            workers.hand_over(old)  # retires ``old``, activates the standby
            self.set.tell("worker_retired", old, reason)
        else:
            standby.predecessor = None
            workers.activate(standby)
        self.release_worker(slot)
        slot.standby = None
        slot.new_worker(standby, standby.started)
        self.arm_age(slot)

    def drop(self, member: Member, reason: str) -> bool:
        """Give up on ``member`` for good: killed (process, True) or abandoned."""
        killed = self.set.kill_or_abandon(member, reason)
        if killed:
            log.warning("runtime: killed process worker %d: %s", member.handle.id, reason)
        self.set.tell("worker_stopped", member, "killed" if killed else "abandoned", reason)
        return killed

    # ------------------------------------------------------------------ WorkerSet callbacks
    def worker_ready(self, member: Member) -> None:
        slot: Slot = member.tag
        self.set.tell("worker_ready", member, "spawn")
        if member is slot.standby:
            self._standby_ready(slot)
        elif member is slot.worker:
            if self._sup.stopping or slot.retiring:
                self._sup.finish_slot(slot, SlotState.DONE, counted=None)
            else:
                self.run_task(slot)

    def worker_boot_failed(self, member: Member, payload: Any, refused: bool) -> None:
        slot: Slot = member.tag
        self.set.tell("worker_failed", member, "boot_failed", f"{payload[1]}: {payload[2]}")
        if member is slot.standby:
            log.warning(
                "runtime: the successor booted for slot %d failed its bootstrap: %s: %s; "
                "trying again later",
                slot.id,
                payload[1],
                payload[2],
            )
            self.release_standby(slot)
            self._standby_failed(slot)
            return
        if member is not slot.worker:
            return
        if slot.initial and self._sup.state == "starting":
            cls = BackendUnavailable if refused else BootstrapError
            _, name, message, tb = payload
            hint = (
                f" (the {self.backend} backend cannot load an extension the bootstrap needs; "
                "use backend='thread' or backend='process')"
                if refused
                else ""
            )
            self._sup.start_failed(
                cls(
                    f"the bootstrap failed in a fresh {self.backend} worker: {name}: {message}{hint}",
                    tb,
                )
            )
            return
        summary = f"bootstrap failed: {payload[1]}: {payload[2]}"
        self._sup.task_failed(slot, summary, payload[3], payload=payload)

    def worker_boot_timed_out(self, member: Member, elapsed: float, killed: bool) -> None:
        slot: Slot = member.tag
        timeout = self.limits.boot_timeout
        self.set.tell("worker_failed", member, "boot_timeout", f"{elapsed:.1f}s")
        if member is slot.standby:
            log.error(
                "runtime: the successor worker %d booted for slot %d did not finish the "
                "bootstrap %s within boot_timeout=%gs; trying again later",
                member.handle.id,
                slot.id,
                self._bootstrap_name,
                timeout,
            )
            self._lose_standby(slot)
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
        if slot.initial and self._sup.state == "starting":
            self._sup.start_failed(
                BootstrapError(
                    f"{what}; it was {fate}. Make the bootstrap faster, raise "
                    "boot_timeout (None: no limit), or find what it waits for"
                )
            )
            # The pool stops: the other bootstraps still running are given up too
            # (no stop request can reach code that has not reported ready).
            for other in self._sup.slots():
                if other.state is SlotState.BOOTING and other.worker is not None:
                    self.drop(other.worker, "the pool's start-up failed")
                    other.worker = None
                    other.state = SlotState.DONE
            return
        log.error("runtime: %s; it was %s and will be retried", what, fate)
        self._sup.task_failed(
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
    def message(self, handle: Any, msg: tuple[Any, ...]) -> None:
        workers = self.set
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
                and self.standby_booted(slot)
                and not (self._sup.stopping or slot.retiring)
            ):
                self._recycle_running(slot)
                return
            self._sup.task_done(slot, handle.id)
        elif what == "task_failed":
            exc = decode_exception(msg[1])
            self._sup.task_failed(slot, f"{type(exc).__name__}: {exc}", msg[1][3], payload=msg[1])

    def closed(self, handle: Any) -> None:
        member = self.set.closed(handle)
        if member is None:
            return
        slot: Slot = member.tag
        self.set.tell("worker_stopped", member, "exit", handle.describe_exit())
        if member is slot.standby:
            log.warning(
                "runtime: the successor booted for slot %d failed: %s; trying again later",
                slot.id,
                handle.describe_exit(),
            )
            self._lose_standby(slot)
            return
        if member is not slot.worker:
            return
        slot.worker = None
        if slot.state in (SlotState.RUNNING, SlotState.BOOTING):
            if slot.initial and self._sup.state == "starting":
                self._sup.start_failed(
                    BootstrapError(
                        f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
                    )
                )
                return
            self._sup.count("replaced", slot)
            log.warning("runtime: %s; replacing it", handle.describe_exit())
            self.set.tell("worker_replaced", member, "died", handle.describe_exit())
            self._sup.task_failed(
                slot, handle.describe_exit(), None, worker_gone=True, failed=member
            )

    # ------------------------------------------------------------------ aged workers
    def arm_age(self, slot: Slot) -> None:
        """Time the slot's worker's age (``max_worker_age``) from ``slot.age_from``."""
        age = self.limits.max_worker_age
        if age is None:
            return
        if slot.age_timer is not None:
            slot.age_timer.cancel()
        delay = max(0.0, slot.age_from + age - time.monotonic())
        slot.age_timer = self.set.call_later(delay, self._age_due, slot)

    def _age_due(self, slot: Slot) -> None:
        slot.age_timer = None
        self.check_age(slot)

    def check_age(self, slot: Slot) -> None:
        """Boot a successor for a running task whose worker passed ``max_worker_age``."""
        age = self.limits.max_worker_age
        now = time.monotonic()
        if (
            age is None
            or self._sup.stopping
            or slot.state is not SlotState.RUNNING
            or slot.worker is None
            or slot.standby is not None
            or slot.retiring
            or now - slot.age_from < age - 0.001  # a timer is never early; float sums may be
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
            self.spawn(slot, standby=True)
        except Exception as exc:
            log.error("runtime: could not start a successor worker: %s", exc)
            self._standby_failed(slot)

    def _lose_standby(self, slot: Slot) -> None:
        """The successor is gone before it took over: try again later."""
        slot.standby = None
        slot.recycling = False
        self._standby_failed(slot)

    def _standby_failed(self, slot: Slot) -> None:
        """The successor could not take over: try again after another ``max_worker_age``."""
        slot.age_from = time.monotonic()
        self.arm_age(slot)

    def standby_booted(self, slot: Slot) -> bool:
        return slot.standby is not None and slot.standby.booted

    def _standby_ready(self, slot: Slot) -> None:
        if self._sup.stopping or slot.retiring:
            self.release_standby(slot)
        elif slot.state is SlotState.RUNNING and slot.worker is not None:
            slot.recycling = True
            slot.worker.handle.request_stop()
        elif slot.state is SlotState.WAITING:
            self._sup.count_recycled(slot, "age")
            self.adopt_standby(slot)
        else:
            self.release_standby(slot)

    def _recycle_running(self, slot: Slot) -> None:
        """The task stopped for its aged worker's successor: run it again there."""
        log.info(
            "runtime: task %s stopped for recycling; starting it on its new worker",
            slot.label(attempt=False),
        )
        self._sup.count_recycled(slot, "age")
        self.adopt_standby(slot)
        self.run_task(slot)
