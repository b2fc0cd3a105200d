"""The observer seam: one door for everything that watches a pool, an executor or a consumer.

An :class:`Observer` has a no-op method per event (in the spirit of trio's ``Instrument``
and dramatiq's middleware). Subclass it, implement the hooks you need, and register it on
one component (``observers=[...]`` on :class:`~runtime.Pool`, :class:`~runtime.Executor`,
:class:`~runtime.amqp.Consumer`) or for the whole process (:func:`add_observer`). Our own
metrics, health checks and failure reports (``runtime.ops``) are observers too.

Concurrency decisions, and why:

* **Hooks run inline**, in the main interpreter, on the thread that handles the event (the
  table in :class:`Observer` names it), never in a worker. Running them elsewhere would cost
  a hand-off per event on the hot path; keep hooks short, and hand slow work to a thread of
  your own. Each event is one frozen object, safe to keep or pass to another thread.
* **A hook that raises is logged and ignored**: the component goes on exactly as it would
  without the observer. A hook can never fail a job, stop a pool or lose a message.
* **Nothing to pay for what nobody watches.** :class:`Hooks` keeps, per hook name, the
  tuple of bound methods that *override* the no-op (the dispatch cache), rebuilt only when
  an observer is added or removed. A component asks ``if hooks.job_finished:`` (one
  attribute read of an empty tuple) before it builds an event, so a hook no observer
  implements costs nothing, and a component with no observers pays that one check.
* Registration is rare and may happen on any thread; dispatch reads a tuple that is
  replaced whole, never mutated, so readers need no lock.
"""

from __future__ import annotations

import collections
import logging
import threading
import weakref

# Not typing.TYPE_CHECKING: a new executor imports this module, and typing costs it milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "HOOKS",
    "BatchFinished",
    "BrokerEvent",
    "DeliveryFailed",
    "DeliverySettled",
    "Hooks",
    "JobEvent",
    "JobFailed",
    "Observer",
    "TaskEvent",
    "TaskFailure",
    "WorkerEvent",
    "add_observer",
    "remove_observer",
]

log = logging.getLogger("runtime")


if TYPE_CHECKING:
    from typing import NamedTuple

    from ._policy import Decision
    from ._task import WorkerInfo

    class WorkerEvent(NamedTuple):
        source: str
        owner: Any
        worker_id: int
        backend: str
        pid: int | None
        reason: str
        error: BaseException | str | None

    class JobEvent(NamedTuple):
        owner: Any
        function: Any
        future: Any
        worker_id: int | None

    class JobFailed(NamedTuple):
        owner: Any
        function: Any
        future: Any
        worker: WorkerInfo | None
        exception_type: str
        message: str
        traceback: str

    class BatchFinished(NamedTuple):
        owner: Any
        worker_id: int
        jobs: int
        failed: int
        seconds: float

    class TaskEvent(NamedTuple):
        owner: Any
        kind: str
        slot: int
        attempt: int
        worker_id: int

    class TaskFailure(NamedTuple):
        owner: Any
        kind: str
        slot: int
        attempt: int
        worker: WorkerInfo | None
        exception_type: str
        message: str
        traceback: str
        decision: Decision

    class DeliverySettled(NamedTuple):
        owner: Any
        queue: str
        delivery_tag: int
        message_id: str | None
        outcome: str
        attempt: int
        exception_type: str | None
        seconds: float | None

    class DeliveryFailed(NamedTuple):
        owner: Any
        queue: str
        handler: str
        message_id: str | None
        attempt: int
        action: str
        exception_type: str
        message: str
        traceback: str
        worker: WorkerInfo | None

    class BrokerEvent(NamedTuple):
        owner: Any
        queue: str
        url: str
        error: BaseException | None

else:

    def _event(name: str, fields: str, doc: str) -> Any:
        cls = collections.namedtuple(name, fields)  # immutable and cheap to build (no dataclasses)
        cls.__doc__ = doc
        cls.__module__ = "runtime"
        return cls

    WorkerEvent = _event(
        "WorkerEvent",
        "source owner worker_id backend pid reason error",
        """A worker's lifecycle step: ``worker_started``/``worker_ready``/``worker_failed``/
        ``worker_retired``/``worker_replaced``/``worker_stopped``.

        ``source`` is ``"executor"``, ``"pool"`` or ``"consumer"``; ``owner`` the component;
        ``reason`` says why (``"spawn"``, ``"standby"``, ``"boot_failed"``, ``"boot_timeout"``,
        ``"died"``, ``"tasks"``/``"memory"``/``"age"`` for a recycle, ``"exit"``); ``error`` the
        exception or message that went with a failure, else None.""",
    )
    JobEvent = _event(
        "JobEvent",
        "owner function future worker_id",
        """One executor job: ``job_submitted`` (``worker_id`` None), ``job_started`` (written to
        ``worker_id``), ``job_finished`` (its future holds the result). ``function`` is the
        callable; for a ``map`` chunk it is the user's function, once per chunk.""",
    )
    JobFailed = _event(
        "JobFailed",
        "owner function future worker exception_type message traceback",
        """An executor job failed (it raised, its worker died, or it could not be sent):
        ``exception_type`` as ``module.Name``, its ``message``, the worker-side ``traceback``
        text (empty when there is none). ``worker`` is a :class:`runtime.WorkerInfo`, None for
        a job that never reached a worker. ``future`` is None for a job of a ``map`` chunk.""",
    )
    BatchFinished = _event(
        "BatchFinished",
        "owner worker_id jobs failed seconds",
        """A batch of ``jobs`` came back from ``worker_id`` (``failed`` of them failed), ``seconds``
        after it was written (measured in the main interpreter). One per results frame: the
        cheap way to time jobs.""",
    )
    TaskEvent = _event(
        "TaskEvent",
        "owner kind slot attempt worker_id",
        """A pool task returned (``task_finished``): its job is done. ``kind`` is the task's label.""",
    )
    TaskFailure = _event(
        "TaskFailure",
        "owner kind slot attempt worker exception_type message traceback decision",
        """A pool task failed (it raised, its worker died, its bootstrap failed or timed out).
        ``worker`` is a :class:`runtime.WorkerInfo` (or None); ``decision`` the pool's
        :class:`runtime.Decision` (``action``: ``restart``/``give_up``/``stop``, ``delay``,
        ``fresh_worker``, ``recycle_reason``), the value the pool acts on.""",
    )
    DeliverySettled = _event(
        "DeliverySettled",
        "owner queue delivery_tag message_id outcome attempt exception_type seconds",
        """A consumer delivery was settled: ``outcome`` is ``"ack"``, ``"retry"``,
        ``"dead_letter"``, ``"requeue"`` (given back to the broker unhandled, e.g. at a drain)
        or ``"stale"`` (its channel was lost first: the broker redelivers it). ``attempt``
        counts deliveries of the message; ``exception_type`` names the failure (None on
        success); ``seconds`` is the handler's time, None when it did not run.""",
    )
    DeliveryFailed = _event(
        "DeliveryFailed",
        "owner queue handler message_id attempt action exception_type message traceback worker",
        """A consumer's handler failed on a delivery (``attempt`` of the message), and the
        consumer decided ``action``: ``"retry"`` (a delayed copy) or ``"dead_letter"``.
        ``handler`` is its reference; ``exception_type``, ``message`` and the worker-side
        ``traceback`` describe the failure; ``worker`` is a :class:`runtime.WorkerInfo`.""",
    )
    BrokerEvent = _event(
        "BrokerEvent",
        "owner queue url error",
        """The consumer's connection: ``broker_connected`` (consuming ``queue`` from ``url``,
        credentials redacted) and ``broker_disconnected`` (``error`` says why; None on a
        clean close).""",
    )


class Observer:
    """Override the hooks you need; each is called with one frozen event object.

    Every hook runs in the main interpreter, inline, on the thread named here:

    * ``worker_started(WorkerEvent)``: the thread that spawned it (the constructor, the
      hub, a pool's supervisor);
    * ``worker_ready``, ``worker_failed``, ``worker_retired``, ``worker_replaced``,
      ``worker_stopped`` (``WorkerEvent``): an executor's inbox reader (a caller in
      ``result()``, an event loop, or the hub thread; boot timeouts: the hub thread), a
      pool's supervisor thread;
    * ``job_submitted(JobEvent)``: the caller of ``submit``/``map``;
    * ``job_started(JobEvent)``: whoever dispatched the job (the submitting caller, or
      the reader that freed a worker);
    * ``job_finished(JobEvent)``, ``job_failed(JobFailed)``, ``batch_finished(BatchFinished)``:
      the inbox reader that completed it (an unsendable job fails on the caller's thread);
    * ``task_finished(TaskEvent)``, ``task_failed(TaskFailure)``: the pool's supervisor
      thread, after it decided what to do (``event.decision``);
    * ``delivery_failed(DeliveryFailed)``, ``delivery_settled(DeliverySettled)``,
      ``broker_connected(BrokerEvent)``,
      ``broker_disconnected(BrokerEvent)``: the consumer's broker I/O thread.

    A hook that raises is logged (logger ``runtime``) and ignored.
    """

    def worker_started(self, event: WorkerEvent) -> None:
        """A worker was spawned (its bootstrap runs now)."""

    def worker_ready(self, event: WorkerEvent) -> None:
        """A worker finished its bootstrap."""

    def worker_failed(self, event: WorkerEvent) -> None:
        """A worker failed its bootstrap, ran past ``boot_timeout``, or died while booting."""

    def worker_retired(self, event: WorkerEvent) -> None:
        """A worker was retired by a lifecycle limit (``reason``: tasks, memory, age)."""

    def worker_replaced(self, event: WorkerEvent) -> None:
        """A booted worker died and is being replaced."""

    def worker_stopped(self, event: WorkerEvent) -> None:
        """A worker is gone (its pipe closed, it was killed or abandoned)."""

    def job_submitted(self, event: JobEvent) -> None:
        """An executor job was queued."""

    def job_started(self, event: JobEvent) -> None:
        """An executor job was written to a worker."""

    def job_finished(self, event: JobEvent) -> None:
        """An executor job returned; its future holds the result."""

    def job_failed(self, event: JobFailed) -> None:
        """An executor job failed."""

    def batch_finished(self, event: BatchFinished) -> None:
        """A batch of executor jobs came back from a worker."""

    def task_finished(self, event: TaskEvent) -> None:
        """A pool task returned."""

    def task_failed(self, event: TaskFailure) -> None:
        """A pool task failed; ``event.decision`` is what the pool does next."""

    def delivery_failed(self, event: DeliveryFailed) -> None:
        """A consumer's handler failed; ``event.action`` is what happens to the message."""

    def delivery_settled(self, event: DeliverySettled) -> None:
        """A consumer settled a delivery."""

    def broker_connected(self, event: BrokerEvent) -> None:
        """A consumer connected and started consuming."""

    def broker_disconnected(self, event: BrokerEvent) -> None:
        """A consumer lost (or closed) its connection."""


#: Every hook name, in the order of :class:`Observer`.
HOOKS = tuple(name for name in vars(Observer) if not name.startswith("_"))


class _Dispatch(tuple):  # type: ignore[type-arg]
    """The bound methods implementing one hook; truthy only when there is one."""

    __slots__ = ()

    def __call__(self, event: Any) -> None:
        for method in self:
            try:
                method(event)
            except Exception:
                log.exception("runtime: observer hook %r raised; ignored", method)


_EMPTY = _Dispatch()


class Hooks:
    """A component's observers, with one :class:`_Dispatch` attribute per hook name.

    ``hooks.job_finished`` is an empty tuple (falsy) while no observer of the component
    nor of the process implements ``job_finished``; calling it calls each one, catching
    and logging what they raise. Process-wide observers come after the component's own.
    """

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        own = list(observers)
        for observer in own:
            if not isinstance(observer, Observer):
                from ._errors import ConfigurationError

                raise ConfigurationError(
                    f"observers must be runtime.Observer instances, got {observer!r}"
                )
        self._own = own
        with _REGISTRY_LOCK:
            _LIVE.add(self)
            self._rebuild()

    def add(self, observer: Observer) -> None:
        """Register one more observer on this component (used by ``runtime.ops``)."""
        with _REGISTRY_LOCK:
            self._own.append(observer)
            self._rebuild()

    def remove(self, observer: Observer) -> None:
        with _REGISTRY_LOCK:
            if observer in self._own:
                self._own.remove(observer)
            self._rebuild()

    @property
    def observers(self) -> tuple[Observer, ...]:
        return (*self._own, *_GLOBAL)

    def _rebuild(self) -> None:
        everyone = (*self._own, *_GLOBAL)
        for name in HOOKS:
            base = getattr(Observer, name)
            methods = [
                getattr(o, name) for o in everyone if getattr(type(o), name, base) is not base
            ]
            setattr(self, name, _Dispatch(methods) if methods else _EMPTY)

    # Declared for type checkers; set per instance by _rebuild.
    if TYPE_CHECKING:
        worker_started: _Dispatch
        worker_ready: _Dispatch
        worker_failed: _Dispatch
        worker_retired: _Dispatch
        worker_replaced: _Dispatch
        worker_stopped: _Dispatch
        job_submitted: _Dispatch
        job_started: _Dispatch
        job_finished: _Dispatch
        job_failed: _Dispatch
        batch_finished: _Dispatch
        task_finished: _Dispatch
        task_failed: _Dispatch
        delivery_failed: _Dispatch
        delivery_settled: _Dispatch
        broker_connected: _Dispatch
        broker_disconnected: _Dispatch


_REGISTRY_LOCK = threading.Lock()
_GLOBAL: list[Observer] = []
_LIVE: weakref.WeakSet[Hooks] = weakref.WeakSet()


def add_observer(observer: Observer) -> None:
    """Register ``observer`` for every pool, executor and consumer of this process,
    existing and future ones."""
    if not isinstance(observer, Observer):
        from ._errors import ConfigurationError

        raise ConfigurationError(f"add_observer() needs a runtime.Observer, got {observer!r}")
    with _REGISTRY_LOCK:
        if observer not in _GLOBAL:
            _GLOBAL.append(observer)
        for hooks in list(_LIVE):
            hooks._rebuild()


def remove_observer(observer: Observer) -> None:
    """Undo :func:`add_observer` (no error if it was not registered)."""
    with _REGISTRY_LOCK:
        if observer in _GLOBAL:
            _GLOBAL.remove(observer)
        for hooks in list(_LIVE):
            hooks._rebuild()
