"""The executor's workers: how many it keeps, when each is replaced or recycled.

:class:`ExecutorWorkers` is the owner of the executor's :class:`~runtime._workerset.WorkerSet`
(which does spawn, boot deadlines, kill-or-abandon and the hand-over) and holds the
executor's policy for its workers; the executor keeps only dispatch, batching and
completion:

* **Replacement.** A booted worker that dies is replaced by its standby (if it has one) or
  by a fresh worker; a replacement or successor that fails to boot is retried with the
  set's back-off while the others carry on. A *first* worker that cannot boot breaks the
  executor (``broken``): every queued and later job fails with that error, instead of the
  executor waiting for ever on a bootstrap that will never work.
* **Recycling without a dip** (``max_tasks_per_worker``, ``max_worker_memory``,
  ``max_worker_age``). The successor is spawned *before* the worker retires, as a standby:
  when the worker nears its job budget (from its job rate and the measured boot time),
  twice the boot time before its age limit, or when it reports being over its memory
  limit (a soft limit: it keeps working until the standby is ready). The retiring
  worker's ``exit`` travels behind the batches it holds, so no job is lost or repeated,
  and the hand-over happens in one critical section, so the count of workers taking
  work never drops because of recycling (unless a budget runs out faster than a boot).

Everything here runs under the executor's lock: on whichever thread reads the executor's
inbox, or on the hub thread for timers (``WorkerSet.call_later`` takes the lock).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time

from ._errors import BackendUnavailable, BootstrapError
from ._workerset import Member, State, WorkerSet

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._early import EarlyInterpreter
    from ._events import Hooks
    from ._hub import Hub
    from ._lifecycle import Limits
    from .backends import WorkerHandle

__all__ = ["ExecutorWorkers"]

log = logging.getLogger("runtime")


class _Worker(Member):
    """A member of the executor's set, with the batches it holds and its job budget."""

    __slots__ = ("booting", "budget", "inflight", "since", "spent")

    def __init__(self, handle: WorkerHandle, initial: bool, tag: Any = None) -> None:
        super().__init__(handle, initial, tag)
        self.inflight: dict[int, list[Any]] = {}  # batch id -> the executor's jobs
        self.budget: int | None = tag  # jobs it may still take (max_tasks_per_worker)
        self.spent = 0  # jobs it took
        self.since = 0.0  # when it began taking work
        self.booting = False  # an initial worker counted in ExecutorWorkers.booting


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


class ExecutorWorkers:
    """The executor's workers, their replacement and recycling (see the module's doc).

    The executor hands in what it must be told: ``changed()`` when it should dispatch and
    check whether it may finish, ``on_broken(error)`` when a first worker could not boot,
    ``stopping()`` (it is shutting down) and ``wanted()`` (workers are still needed: not
    shutting down, or jobs still queued), ``wake_reader()`` for a state change that comes
    without a worker message.
    """

    def __init__(
        self,
        owner: Any,
        *,
        backend: str,
        hub: Hub,
        reader: Any,
        limits: Limits,
        bootstrap: Any,
        boot_name: str,
        hooks: Hooks,
        lock: Any,
        on_message: Callable[[WorkerHandle, tuple[Any, ...]], None],
        on_closed: Callable[[WorkerHandle], None],
        changed: Callable[[], None],
        on_broken: Callable[[BaseException], None],
        stopping: Callable[[], bool],
        wanted: Callable[[], bool],
        wake_reader: Callable[[], None],
    ) -> None:
        from ._early import interpreters_leak

        self.backend = backend
        self.limits = limits
        self._boot_name = boot_name
        self._changed = changed
        self._on_broken = on_broken
        self._stopping = stopping
        self._wanted = wanted
        self._wake_reader = wake_reader
        self.set = WorkerSet(
            self,
            backend=backend,
            hub=hub,
            info=self._info,
            bootstrap=bootstrap,
            limits=limits,
            on_message=on_message,
            on_closed=on_closed,
            hooks=hooks,
            source="executor",
            component=owner,
            lock=lock,
            reader=reader,
            member_class=_Worker,
        )
        self.members: dict[int, _Worker] = self.set.members  # type: ignore[assignment]
        self.broken: BaseException | None = None
        self.booting = 0  # initial workers that have neither booted nor failed
        self.boot_done = threading.Condition(lock)
        self.replaced = 0
        self.recycled = collections.Counter[str]()
        if limits.recycles and interpreters_leak(backend):
            _warn_recycling_leaks(backend)

    def _info(self, member: Member) -> dict[str, Any]:
        return {
            "id": member.handle.id,
            "backend": self.backend,
            "attempt": 1,
            "slot": None,
            "kind": None,
            "pid": 0,
        }

    def spawn(
        self,
        *,
        initial: bool = False,
        predecessor: _Worker | None = None,
        early: EarlyInterpreter | None = None,
    ) -> _Worker:
        """Start a worker. With ``predecessor``: as its standby successor."""
        worker: _Worker = self.set.spawn(  # type: ignore[assignment]
            initial=initial,
            predecessor=predecessor,
            early=early,
            tag=self.limits.max_tasks_per_worker,
        )
        if initial:
            worker.booting = True
            self.booting += 1
        self.set.tell("worker_started", worker, "standby" if predecessor else "spawn")
        return worker

    def worker_ready(self, worker: _Worker) -> None:
        """WorkerSet: ``worker`` booted (ACTIVE, or STANDBY behind a recycled worker)."""
        self.booted(worker)
        self.set.tell("worker_ready", worker, "spawn")
        if worker.state is State.ACTIVE:
            worker.since = time.monotonic()
        age = self.limits.max_worker_age
        if age is not None and not self._stopping():
            lead = min(2 * self.set.boot_seconds, age / 2)
            worker.timer = self.set.call_later(
                worker.started + age - lead - time.monotonic(), self._age_near, worker
            )
        predecessor = worker.predecessor
        if worker.state is State.STANDBY and predecessor is not None and predecessor.handover:
            self._hand_over(predecessor)  # type: ignore[arg-type]
        self._changed()  # it takes work; or, shut down before it booted, it may leave now

    def worker_boot_failed(self, worker: _Worker, payload: Any, refused: bool) -> None:
        _, name, message, tb = payload
        cls = BackendUnavailable if refused else BootstrapError
        hint = (
            f" (the {self.backend} backend cannot load an extension the bootstrap needs; "
            "use backend='thread' or backend='process')"
            if refused
            else ""
        )
        error = cls(
            f"the bootstrap failed in a fresh {self.backend} worker: {name}: {message}{hint}", tb
        )
        self.booted(worker)
        self.set.tell("worker_failed", worker, "boot_failed", error)
        if self.broken is None and (not self.members or worker.initial):
            self.broken = error
            self._on_broken(error)
        else:  # a replacement failed to boot; the others carry on
            log.error("runtime: a replacement worker could not start: %s", error)
            self._retry(worker)
        self._changed()

    def worker_boot_timed_out(self, worker: _Worker, elapsed: float, killed: bool) -> None:
        error = BootstrapError(
            f"{self.backend} worker {worker.handle.id} did not finish its bootstrap "
            f"{self._boot_name} within boot_timeout={self.limits.boot_timeout}s "
            f"(elapsed {elapsed:.2f}s); "
            + (
                "it was killed"
                if killed
                else f"a {self.backend} worker cannot be killed, so it was abandoned"
            )
        )
        self.booted(worker)
        self.set.tell("worker_failed", worker, "boot_timeout", error)
        if self.broken is None and worker.initial:
            self.broken = error
            self._on_broken(error)
        elif self.broken is None:
            log.error("runtime: %s; retrying", error)
            self._retry(worker)
        self._changed()
        # A caller reading the inbox in wait_ready()/result() re-checks what it waits for
        # (after the executor's finish check: shutdown()'s reader waits for the event it sets).
        self._wake_reader()

    def worker_over_memory(self, worker: _Worker, nbytes: int) -> None:
        if worker.state is State.RETIRING or worker.reason:
            return
        log.info(
            "runtime: %s worker %s holds %s bytes (max_worker_memory=%s); recycling it",
            self.backend,
            worker.handle.id,
            nbytes,
            self.limits.max_worker_memory,
        )
        self._recycle(worker, "memory")
        self._changed()

    def booted(self, worker: _Worker) -> None:
        """An initial ``worker`` is past its boot (ready, failed or gone)."""
        if worker.booting:
            worker.booting = False
            self.booting -= 1
            self.boot_done.notify_all()

    # ------------------------------------------------------------------ recycling
    def spend(self, worker: _Worker, jobs: int) -> None:
        """``worker`` took ``jobs`` more jobs (max_tasks_per_worker is set)."""
        worker.budget -= jobs  # type: ignore[operator]
        worker.spent += jobs
        budget: int = worker.budget  # type: ignore[assignment]
        if budget <= 0:
            self._recycle(worker, "tasks")
            return
        if worker.successor is not None or self._stopping():
            return
        # Spawn the successor when the jobs left would last about two boot times at the
        # rate this worker takes them (measured since it began; at least 50 ms of it).
        elapsed = max(time.monotonic() - worker.since, 0.05)
        if budget <= worker.spent / elapsed * 2 * self.set.boot_seconds + 1:
            self._spawn_successor(worker)

    def _spawn_successor(self, worker: _Worker) -> _Worker | None:
        try:
            return self.spawn(predecessor=worker)
        except Exception as exc:
            log.error(
                "runtime: could not start a successor for worker %s: %s", worker.handle.id, exc
            )
            return None

    def _age_near(self, worker: _Worker) -> None:
        """Timer: ``worker`` nears max_worker_age: spawn its successor now."""
        worker.timer = None
        if not self.set.live(worker) or worker.state is State.RETIRING or self._stopping():
            return
        if worker.state is State.STANDBY:  # aged while waiting to take over: look again later
            worker.timer = self.set.call_later(2 * self.set.boot_seconds, self._age_near, worker)
            return
        if worker.successor is None:
            self._spawn_successor(worker)
        age: float = self.limits.max_worker_age  # type: ignore[assignment]
        worker.timer = self.set.call_later(
            worker.started + age - time.monotonic(), self._age_reached, worker
        )

    def _age_reached(self, worker: _Worker) -> None:
        worker.timer = None
        if self.set.live(worker) and worker.state is not State.RETIRING:
            self._recycle(worker, "age")
            self._changed()

    def _recycle(self, worker: _Worker, reason: str) -> None:
        """Replace ``worker``: at once if its standby is ready (or its budget is spent),
        else as soon as the standby reports ready (it keeps working until then)."""
        if worker.state is State.RETIRING:
            return
        worker.reason = worker.reason or reason
        if not self._wanted() and reason != "tasks":
            return  # the executor is ending anyway
        successor = worker.successor
        if successor is None:
            successor = self._spawn_successor(worker)
        if reason == "tasks" or successor is None or successor.booted:
            self._hand_over(worker)
        else:
            worker.handover = True  # WorkerSet hands over when the successor is ready

    def _hand_over(self, worker: _Worker) -> None:
        """``worker`` stops taking work, its successor starts, in one critical section."""
        successor: _Worker | None = self.set.hand_over(worker)  # type: ignore[assignment]
        if successor is None:  # its successor could not start: a plain replacement
            self._retry(None)
        elif successor.ready:
            successor.since = time.monotonic()
        self.recycled[worker.reason] += 1
        self.set.tell("worker_retired", worker, worker.reason)
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
        predecessor: _Worker | None = failed.predecessor if failed is not None else None  # type: ignore[assignment]
        if predecessor is not None and predecessor.successor is failed:
            predecessor.successor = None
        delay = self.set.retry_delay()
        log.info("runtime: starting another %s worker in %.1fs", self.backend, delay)
        self.set.call_later(delay, self._respawn, predecessor)

    def _respawn(self, predecessor: _Worker | None) -> None:
        if self.broken is not None or (not self._wanted()):
            return
        if (
            predecessor is not None
            and self.set.live(predecessor)
            and predecessor.state is not State.RETIRING
        ):
            if predecessor.successor is None:
                self._spawn_successor(predecessor)
                if predecessor.successor is None:
                    self._retry(None)
            return
        self._spawn_or_retry()

    def _spawn_or_retry(self) -> None:
        """Start a plain replacement worker now, or after the back-off if that fails."""
        try:
            self.spawn()
        except Exception as exc:
            log.error("runtime: could not replace a worker: %s", exc)
            self._retry(None)

    def _replace(self, worker: _Worker) -> None:
        """A booted ``worker`` died: its standby, or a fresh worker, takes its place."""
        successor: _Worker | None = worker.successor  # type: ignore[assignment]
        predecessor: _Worker | None = worker.predecessor  # type: ignore[assignment]
        if successor is not None:  # its standby takes over now
            worker.successor = None
            successor.predecessor = None
            if successor.booted:
                self.set.activate(successor)
                successor.since = time.monotonic()
            return
        if predecessor is not None and self.set.live(predecessor):
            predecessor.successor = None  # a standby died: its predecessor gets another
            if predecessor.state is not State.RETIRING and self._spawn_successor(predecessor):
                return
        self._spawn_or_retry()

    def lost(self, worker: _Worker, handle: WorkerHandle, was_ready: bool) -> None:
        """``worker``'s pipe closed (its jobs were failed already): replace it, or break."""
        retiring = worker.state is State.RETIRING
        worker.state = State.GONE
        self.set.tell("worker_stopped", worker, "exit" if retiring else "died")
        if self._stopping() or self.broken is not None or retiring:
            return  # ending anyway, or recycled: its successor has taken its place
        if was_ready:
            log.warning("runtime: %s; replacing it", handle.describe_exit())
            self.replaced += 1
            self.set.tell("worker_replaced", worker, "died", handle.describe_exit())
            self._replace(worker)
        elif worker.initial or not self.members:
            self.broken = BootstrapError(
                f"a fresh {self.backend} worker died while bootstrapping: {handle.describe_exit()}"
            )
            self.set.tell("worker_failed", worker, "died", self.broken)
        else:  # a replacement died while booting; the others carry on
            log.error(
                "runtime: a replacement worker died while bootstrapping: %s",
                handle.describe_exit(),
            )
            self.set.tell("worker_failed", worker, "died", handle.describe_exit())
            self._retry(worker)
