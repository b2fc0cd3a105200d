"""One supervisor for a set of workers, shared by every owner (the Executor, the Pool).

A :class:`WorkerSet` owns its members' lifecycle; the owner keeps what is its own (the
executor: dispatch, batching, completion; the pool: slots, weights, restart decisions).
Each member is in one explicit :class:`State`::

    BOOTING --ready--> ACTIVE --hand_over / retire--> RETIRING --pipe closed--> GONE
       |                 ^                                                        ^
       |   (successor)   | predecessor stops taking work                          |
       +--ready--> STANDBY                                                        |
       +--boot failed / boot timeout (killed or abandoned) / died ----------------+

Lifecycle messages from a worker (``ready``, ``boot_failed``, ``over_memory``) and its
pipe closing are turned into owner callbacks (:class:`Owner`); everything else a worker
says goes to the owner untouched, so the executor's results path pays nothing for this.

Concurrency decisions, and the failures they prevent:

* **One thread of control per owner.** Every method here runs under the owner's lock
  (the executor: whichever thread reads its inbox, or a hub timer; the pool: its
  supervisor thread). Deadlines (boot timeout, and the owners' own: age, back-off,
  restarts) are hub timers whose callback is *delivered* the owner's way: called under
  the owner's lock (``lock=``), or posted to the owner's event queue (``post=``), so the
  pool's loop only ever waits on its queue and nothing polls a deadline.
* **A bootstrap that hangs never wedges the owner.** Past ``boot_timeout`` a process
  worker is killed and any other is abandoned (Python cannot pre-empt a subinterpreter
  or a thread, see :meth:`~runtime.backends.WorkerHandle.abandon`); the owner decides
  whether that breaks it (a first worker) or is retried with back-off
  (:meth:`WorkerSet.retry_delay`: 0.1 s doubling to 30 s, reset by the next boot).
* **No capacity dip on recycling.** A successor is spawned *before* its predecessor
  retires and waits as a STANDBY; :meth:`WorkerSet.hand_over` retires the predecessor and
  activates the successor in one critical section, and the predecessor's ``exit`` travels
  behind the work it holds (one pipe, read in order), so nothing is lost or run twice.
* **Nothing leaks.** Every worker ever started is kept in ``spawned`` until it is joined;
  :meth:`WorkerSet.shutdown` joins them all and abandons only the ones that will not end.
"""

from __future__ import annotations

import enum
import functools
import logging
import time

from ._events import WorkerEvent

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from ._early import EarlyInterpreter
    from ._events import Hooks
    from ._hub import Hub, Timer
    from ._lifecycle import Limits
    from .backends import WorkerHandle

    class Owner(Protocol):
        """What a WorkerSet tells its owner (every call under the owner's lock).

        ``member`` is a :class:`Member`, or the owner's subclass of it (``member_class=``).
        """

        def worker_ready(self, member: Any) -> None:
            """``member`` booted: ACTIVE, or STANDBY behind a predecessor still working
            (the owner calls :meth:`WorkerSet.hand_over` on the predecessor when it is time)."""

        def worker_boot_failed(self, member: Any, payload: Any, refused: bool) -> None:
            """``member``'s bootstrap raised (``payload``: the encoded exception; ``refused``:
            an extension refused to load there). The member is GONE."""

        def worker_boot_timed_out(self, member: Any, elapsed: float, killed: bool) -> None:
            """``member`` ran past ``boot_timeout`` and was killed (or abandoned). GONE."""

        def worker_over_memory(self, member: Any, nbytes: int) -> None:
            """``member`` reported holding more than ``max_worker_memory``."""


__all__ = ["Member", "State", "WorkerSet"]

log = logging.getLogger("runtime")

#: Back-off before respawning a worker whose boot failed or timed out (doubles up to the cap).
RETRY_FIRST = 0.1
RETRY_CAP = 30.0
#: A first guess at a worker's boot time, until this set has measured one.
BOOT_GUESS = {"process": 0.25, "subinterpreter": 0.05, "thread": 0.01}


class State(enum.Enum):
    BOOTING = "booting"
    STANDBY = "standby"  # booted, waiting to take over from its predecessor
    ACTIVE = "active"
    RETIRING = "retiring"  # takes no new work; ends after what it holds
    GONE = "gone"


class Member:
    """One worker of a set. Owners may subclass it to add fields (``member_class=``).

    ``ready`` mirrors ``state is State.ACTIVE`` as a plain attribute: the executor's
    dispatch reads it for every job.
    """

    __slots__ = (
        "booted_at",
        "handle",
        "handover",
        "initial",
        "predecessor",
        "ready",
        "reason",
        "started",
        "state",
        "successor",
        "tag",
        "timer",
    )

    def __init__(self, handle: WorkerHandle, initial: bool, tag: Any = None) -> None:
        self.handle = handle
        self.state = State.BOOTING
        self.ready = False
        self.initial = initial  # started with the owner: its boot failure is the owner's
        self.tag = tag  # the owner's: the pool's slot
        self.started = time.monotonic()
        self.booted_at = 0.0
        self.predecessor: Member | None = None
        self.successor: Member | None = None
        self.handover = False  # hand over to the successor as soon as it is ready
        self.reason = ""  # why it is retired: tasks | memory | age
        self.timer: Timer | None = None  # its pending deadline (boot, then the owner's)

    @property
    def id(self) -> int:
        return self.handle.id

    @property
    def booted(self) -> bool:
        return self.booted_at > 0

    def __repr__(self) -> str:
        return f"<worker {self.handle.id} {self.state.value}>"


class WorkerSet:
    """The workers of one owner: spawn, boot deadline, ready/failed/closed, hand-over, reaping."""

    def __init__(
        self,
        owner: Owner,
        *,
        backend: str,
        hub: Hub,
        info: Callable[[Member], dict[str, Any]],
        bootstrap: Any,
        limits: Limits,
        on_message: Callable[[WorkerHandle, tuple[Any, ...]], None],
        on_closed: Callable[[WorkerHandle], None],
        hooks: Hooks,
        source: str,
        component: Any,
        lock: Any = None,
        post: Callable[[Callable[[], None]], None] | None = None,
        reader: Any = None,
        member_class: type[Member] = Member,
    ) -> None:
        self.owner = owner
        self._hooks = hooks
        self._source = source  # "executor" or "pool", for the observers' events
        self._component = component  # the public object observers are told about
        self.backend = backend
        self.hub = hub
        self._info = info
        self._bootstrap = bootstrap
        self.boot_timeout = limits.boot_timeout
        self._memory_limit = limits.max_worker_memory
        self._on_message = on_message
        self._on_closed = on_closed
        self._lock = lock
        self._post = post
        self._reader = reader
        self._member_class = member_class
        self.members: dict[int, Member] = {}
        self.spawned: list[WorkerHandle] = []  # every worker ever started, joined at shutdown
        #: A running average of boot times: owners use it to spawn successors in time.
        self.boot_seconds = BOOT_GUESS.get(backend, 0.1)
        self._retry = RETRY_FIRST

    # ------------------------------------------------------------------ observers
    def tell(
        self, hook: str, member: Member, reason: str, error: BaseException | str | None = None
    ) -> None:
        """Hand observers a :class:`runtime.WorkerEvent` for ``member`` (when one listens)."""
        dispatch = getattr(self._hooks, hook)
        if dispatch:
            handle = member.handle
            dispatch(
                WorkerEvent(
                    self._source,
                    self._component,
                    handle.id,
                    self.backend,
                    handle.pid,
                    reason,
                    error,
                )
            )

    # ------------------------------------------------------------------ deadlines
    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> Timer:
        """A hub timer whose callback runs the owner's way (under its lock, or posted)."""
        call = functools.partial(fn, *args) if args else fn
        if self._post is not None:
            post = self._post
            return self.hub.call_later(delay, lambda: post(call))
        lock = self._lock

        def locked() -> None:
            with lock:
                call()

        return self.hub.call_later(delay, locked)

    @staticmethod
    def cancel_timer(member: Member) -> None:
        if member.timer is not None:
            member.timer.cancel()
            member.timer = None

    def retry_delay(self) -> float:
        """The back-off before the next respawn after a failed boot (doubles, capped)."""
        delay = self._retry
        self._retry = min(RETRY_CAP, delay * 2)
        return delay

    # ------------------------------------------------------------------ spawn
    def spawn(
        self,
        *,
        initial: bool = False,
        predecessor: Member | None = None,
        early: EarlyInterpreter | None = None,
        tag: Any = None,
    ) -> Member:
        """Start a worker (BOOTING). With ``predecessor``: as its successor, to be its standby.

        ``early``: an interpreter already being created for it (``runtime._early``).
        Raises :class:`~runtime.BackendUnavailable` if the worker cannot start.
        """
        from ._common import init_spec, next_worker_id
        from .backends import create_worker

        handle = create_worker(
            self.backend,
            next_worker_id(),
            self.hub,
            self._on_message,
            self._on_closed,
            reader=self._reader,
        )
        handle.early = early
        member = self._member_class(handle, initial, tag)
        self.members[handle.id] = member
        self.spawned.append(handle)
        spec = init_spec(
            self._info(member), self.backend, self._bootstrap, memory_limit=self._memory_limit
        )
        try:
            handle.start(spec)
        except Exception as exc:
            if handle.early is not None:  # never launched: nobody else ends its thread
                handle.early.discard()
                handle.early = None
            self.members.pop(handle.id, None)
            self.spawned = [h for h in self.spawned if h is not handle]
            from ._errors import BackendUnavailable

            raise BackendUnavailable(f"could not start a {self.backend} worker: {exc}") from exc
        if predecessor is not None:
            member.predecessor = predecessor
            predecessor.successor = member
        if self.boot_timeout is not None:
            member.timer = self.call_later(self.boot_timeout, self._boot_timed_out, member)
        return member

    # ------------------------------------------------------------------ lifecycle messages
    def message(self, handle: WorkerHandle, msg: tuple[Any, ...]) -> None:
        """Handle a lifecycle message (``ready``, ``boot_failed``, ``over_memory``); idempotent."""
        member = self.members.get(handle.id)
        kind = msg[0]
        if kind == "ready":
            handle.pid = msg[1]
            if member is not None and member.state is State.BOOTING:
                self._ready(member)
        elif kind == "boot_failed":
            if member is None or member.state is not State.BOOTING:
                return  # handled already
            self._gone(member)
            self.owner.worker_boot_failed(member, msg[1], msg[2])
        elif (
            kind == "over_memory"
            and member is not None
            and member.state in (State.ACTIVE, State.STANDBY)
        ):
            self.owner.worker_over_memory(member, int(msg[1]))

    def _ready(self, member: Member) -> None:
        now = time.monotonic()
        member.booted_at = now
        self.cancel_timer(member)
        self.boot_seconds += (now - member.started - self.boot_seconds) / 4
        self._retry = RETRY_FIRST
        predecessor = member.predecessor
        if (
            predecessor is not None
            and self.live(predecessor)
            and predecessor.state is not State.RETIRING
        ):
            member.state = State.STANDBY  # the owner hands over when it is time
            self.owner.worker_ready(member)
            return
        member.predecessor = None
        self.activate(member)
        self.owner.worker_ready(member)

    def activate(self, member: Member) -> None:
        member.state = State.ACTIVE
        member.ready = True

    def closed(self, handle: WorkerHandle) -> Member | None:
        """``handle``'s pipe closed: the member (now GONE) or None if it had left already."""
        self.spawned = [h for h in self.spawned if h is handle or not h.join(0)]
        member = self.members.pop(handle.id, None)
        if member is not None:
            member.ready = False
            self.cancel_timer(member)
        return member

    def _gone(self, member: Member) -> None:
        self.members.pop(member.handle.id, None)
        member.state = State.GONE
        member.ready = False
        self.cancel_timer(member)
        predecessor = member.predecessor
        if predecessor is not None and predecessor.successor is member:
            predecessor.successor = None

    def _boot_timed_out(self, member: Member) -> None:
        if not self.live(member) or member.state is not State.BOOTING:
            return
        member.timer = None
        elapsed = time.monotonic() - member.started
        self._gone(member)
        killed = self.kill_or_abandon(
            member, f"its bootstrap ran past boot_timeout={self.boot_timeout:g}s"
        )
        self.owner.worker_boot_timed_out(member, elapsed, killed)

    def kill_or_abandon(self, member: Member, reason: str) -> bool:
        """Stop ``member`` for good: a process is killed (True), any other abandoned (False).

        An abandoned worker is not joined (it may never end); its pipes close, so it ends
        by itself if the code it runs ever returns.
        """
        handle = member.handle
        self.members.pop(handle.id, None)
        member.ready = False
        if self.backend == "process" and handle.kill():
            return True
        handle.abandon(reason)
        self.spawned = [h for h in self.spawned if h is not handle]
        return False

    # ------------------------------------------------------------------ hand-over
    def hand_over(self, member: Member) -> Member | None:
        """``member`` stops taking work and its successor starts, in one critical section.

        ``member`` turns RETIRING and is sent ``exit`` behind the work it holds. Returns
        the successor that took over (ACTIVE if booted, else it activates when ready),
        or None when there was none.
        """
        member.ready = False
        member.state = State.RETIRING
        member.handover = False
        self.cancel_timer(member)
        successor = member.successor
        member.successor = None
        if successor is not None:
            successor.predecessor = None
            if successor.state is State.STANDBY:
                self.activate(successor)
        member.handle.exit()
        return successor

    def retire(self, member: Member) -> None:
        """``member`` takes no more work and ends after what it holds."""
        member.ready = False
        if member.state is not State.GONE:
            member.state = State.RETIRING
        self.cancel_timer(member)
        member.handle.exit()

    # ------------------------------------------------------------------ queries
    def live(self, member: Member) -> bool:
        return self.members.get(member.handle.id) is member

    def count(self, state: State) -> int:
        return sum(1 for m in self.members.values() if m.state is state)

    def exit_all(self) -> None:
        for member in list(self.members.values()):
            member.handle.exit()

    # ------------------------------------------------------------------ shutdown
    def join(self, timeout: float = 5.0) -> list[WorkerHandle]:
        """Join every worker this set started, except abandoned ones; the stragglers."""
        from .backends import join_all

        return join_all([h for h in self.spawned if h.abandoned is None], timeout)
