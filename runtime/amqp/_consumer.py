"""The consumer: broker I/O on one thread of the main interpreter, handlers on the workers.

This module holds the consumer's configuration, the executor it builds, its lifecycle
(``start``/``stop``/``run``, signals) and its statistics, and wires the parts that do
the work:

* :mod:`._session` -- the broker I/O thread: connect, declare, consume, reconnect;
* :mod:`._settlement` -- ack, reject/requeue, stale delivery tags after a reconnect;
* :mod:`._retries` -- what happens to a failed delivery (retry queue or dead letter).

Per delivery: the I/O thread submits ``invoke(handler, message)`` to the executor; the
future's done callback (on the executor's completion thread) queues the outcome and,
once per burst, asks the connection to settle it on the I/O thread. Observers hear
every settlement and every connect and disconnect on that thread (see
:class:`runtime.Observer`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import threading
import time
import types
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, Error
from .._events import Hooks
from .._lifecycle import DEFAULT_BOOT_TIMEOUT, Limits
from ._connection import DEFAULT_URL, parameters
from ._consumer_ops import ConsumerOps
from ._errors import AmqpError
from ._handler import handler_reference, invoke
from ._retries import Retries
from ._session import Session
from ._settlement import Settlement
from ._topology import Topology, retry_delays

if TYPE_CHECKING:
    import concurrent.futures as cf
    from collections.abc import Callable, Iterable, Mapping
    from types import FrameType, TracebackType

    from .._events import Observer
    from .._task import Task
    from ._message import Message

__all__ = ["Consumer", "ConsumerStatistics"]

log = logging.getLogger("runtime.amqp")

_NO_RECYCLES: Mapping[str, int] = types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class ConsumerStatistics:
    """An immutable snapshot of a consumer (``consumer.statistics()``).

    ``acked`` counts acks sent (successes, and originals whose retry or dead-letter copy
    the broker confirmed); ``connected`` says the connection is open, ``consuming`` that
    the consumer is subscribed to its queue, ``cancelled_by_broker`` that the broker
    cancelled that subscription (the consumer re-subscribes), ``stopping`` that a stop
    was requested. ``last_frame_age`` is the seconds since the broker last sent anything
    (None before the first frame); ``recycled`` the built-in executor's workers retired
    by a lifecycle limit, by reason (empty for an executor that does not say).
    """

    received: int
    succeeded: int
    failed: int
    retried: int
    dead_lettered: int
    requeued: int
    stale_dropped: int
    reconnects: int
    inflight: int
    connected: bool
    prefetch: int
    workers: int
    acked: int = 0
    consuming: bool = False
    cancelled_by_broker: bool = False
    stopping: bool = False
    last_frame_age: float | None = None
    recycled: Mapping[str, int] = dataclasses.field(default_factory=lambda: _NO_RECYCLES)


def _recycled(executor: Any) -> Mapping[str, int]:
    """``executor.statistics().recycled``, for any executor (most have no statistics)."""
    statistics = getattr(executor, "statistics", None)
    if statistics is None:
        return _NO_RECYCLES
    recycled = getattr(statistics(), "recycled", None)
    return types.MappingProxyType(dict(recycled)) if recycled else _NO_RECYCLES


class Consumer:
    """Consume ``queue`` with ``handler`` running on a pool of workers; at-least-once.

    ``handler`` is a ``"pkg.mod:func"`` reference (or the function itself) called with a
    :class:`Message`, or a :class:`runtime.Task` subclass whose ``handle(message)`` runs
    on one instance per worker. A handler that returns gets its message acked; one that
    raises gets it retried after ``retry_delay`` seconds (doubling, capped at
    ``max_retry_delay``) until ``max_attempts``, then dead-lettered to ``<queue>.dead``
    with the error in its headers.

    ``run()`` blocks until :meth:`stop`, SIGTERM or SIGINT, then drains gracefully.
    ``start()``/``stop()`` and ``with Consumer(...)`` run it in the background.
    ``executor`` replaces the built-in :class:`runtime.Executor` (it is then not shut down).
    ``max_tasks_per_worker`` (handler calls), ``max_worker_memory`` (bytes or ``"512M"``),
    ``max_worker_age`` (seconds) and ``boot_timeout`` (seconds, default 60) go to the
    built-in executor (see :class:`runtime.Executor`); with ``executor=`` set them there.
    ``on_failure`` (a callable or reference) receives a :class:`runtime.Failure` for every
    failed attempt; ``metrics=False`` keeps this consumer out of ``/metrics``.
    ``observers`` (:class:`runtime.Observer` instances) hear every settled delivery and
    every connect and disconnect, on the broker I/O thread; the built-in executor gets
    them too.
    """

    def __init__(
        self,
        handler: str | Callable[..., Any] | type[Task],
        queue: str,
        *,
        url: str = DEFAULT_URL,
        workers: int | float | None = None,
        backend: str = "auto",
        bootstrap: Any = None,
        prefetch: int | None = None,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        quorum: bool = False,
        delivery_limit: int | None = None,
        heartbeat: float | None = 60,
        stop_timeout: float = 30.0,
        connect_attempts: int = 5,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 15.0,
        max_reconnect_attempts: int | None = None,
        stats_interval: float | None = None,
        executor: cf.Executor | None = None,
        on_failure: Any = None,
        metrics: bool = True,
        max_tasks_per_worker: int | None = None,
        max_worker_memory: int | str | None = None,
        max_worker_age: float | None = None,
        boot_timeout: float | None = DEFAULT_BOOT_TIMEOUT,
        observers: Iterable[Observer] = (),
    ) -> None:
        from .._capabilities import capabilities
        from .._policy import resolve_workers

        # Everything that can be wrong with the arguments fails here, before any connection.
        self._handler_ref = handler_reference(handler)
        self._limits = Limits(max_tasks_per_worker, max_worker_memory, max_worker_age, boot_timeout)
        if executor is not None and self._limits != Limits():
            raise ConfigurationError(
                "max_tasks_per_worker, max_worker_memory, max_worker_age and boot_timeout "
                "configure the consumer's own executor; with executor= pass them to that "
                "executor instead"
            )
        self._observers = list(observers)
        self._hooks = Hooks(self._observers)  # ConfigurationError for a non-Observer
        params = parameters(
            url, heartbeat=heartbeat, connection_name=f"parallel-runtime consume {queue}"
        )
        self.url = url
        self.queue = queue
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.topology = Topology(
            queue,
            quorum=quorum,
            retry_delays=retry_delays(max_attempts, retry_delay, max_retry_delay),
            delivery_limit=delivery_limit,
        )
        cpus = capabilities().cpu_count
        if executor is not None:
            count = int(
                getattr(executor, "workers", None) or getattr(executor, "_max_workers", 0) or 1
            )
        else:
            count = resolve_workers(cpus if workers is None else workers, cpus)
        self.workers = count
        if prefetch is None:
            # Enough to keep every worker busy while acks travel, small enough that a busy
            # process does not sit on messages other processes could take.
            prefetch = 4 * count
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigurationError(f"prefetch must be an int >= 1, got {prefetch!r}")
        self.prefetch = prefetch
        if stop_timeout < 0:
            raise ConfigurationError(f"stop_timeout must be >= 0, got {stop_timeout}")
        self.stop_timeout = stop_timeout
        self._stats_interval = stats_interval
        self._executor_spec = (workers if workers is not None else count, backend, bootstrap)
        self._executor: cf.Executor | None = executor
        self._owns_executor = executor is None
        self._final_recycled = _NO_RECYCLES

        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._counts = collections.Counter[str]()  # written by the I/O thread only
        self._last_stats = (time.monotonic(), 0)
        self._ops = ConsumerOps(self, on_failure, metrics)
        retries = Retries(
            self.topology, max_attempts, self._handler_ref, self._counts, self._hooks, self
        )
        self._settlement = Settlement(self, queue, retries, self._counts, self._hooks)
        self._session = Session(
            self,
            params=params,
            settlement=self._settlement,
            counts=self._counts,
            hooks=self._hooks,
            stop=self._stop,
            ready=self._ready,
            on_delivery=self._on_delivery,
            tick=self._maybe_log_stats,
            connect_attempts=connect_attempts,
            reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay,
            max_reconnect_attempts=max_reconnect_attempts,
        )

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        """Boot the workers, connect, declare the topology and start consuming.

        Raises :class:`BrokerUnreachable` / :class:`InvalidURL` / :class:`TopologyMismatch`
        if the consumer cannot get going (after ``connect_attempts`` tries).
        """
        if self._thread is not None:
            raise AmqpError("this consumer was already started")
        if self._executor is None:
            from .._executor import Executor

            workers, backend, bootstrap = self._executor_spec
            limits = self._limits
            self._executor = Executor(
                workers=workers,
                backend=backend,
                bootstrap=bootstrap,
                metrics=self._ops.metrics,
                max_tasks_per_worker=limits.max_tasks_per_worker,
                max_worker_memory=limits.max_worker_memory,
                max_worker_age=limits.max_worker_age,
                boot_timeout=limits.boot_timeout,
                observers=list(self._observers),
            )
        self._thread = threading.Thread(
            target=self._io_main, name=f"runtime-amqp-{self.queue}", daemon=True
        )
        self._settlement.thread = self._session.heartbeat.thread = self._thread
        self._ops.attach(self._hooks, [self._session.heartbeat])
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._shutdown_executor()
            raise self._error

    def stop(self, timeout: float | None = None) -> ConsumerStatistics:
        """Cancel consuming, let in-flight handlers finish (up to ``stop_timeout``), ack what
        finished, requeue what did not, close the connection and shut the workers down."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._shutdown_executor()
        return self.statistics()

    def request_stop(self) -> None:
        """Ask for a graceful stop without waiting (safe from signal handlers and any thread)."""
        self._stop.set()
        self._settlement.wake()

    def run(self, *, install_signal_handlers: bool = True) -> ConsumerStatistics:
        """Consume until :meth:`stop`, SIGTERM or SIGINT; returns the final statistics.

        Raises if the consumer cannot start, or if the connection is lost for good.
        """
        previous: dict[signal.Signals, Any] = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            self.start()
            assert self._thread is not None
            while self._thread.is_alive():
                self._thread.join(1.0)
            self._shutdown_executor()
            if isinstance(self._error, Error):
                raise self._error
            return self.statistics()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._thread is not None and self._thread.is_alive():
                self.stop()

    def statistics(self) -> ConsumerStatistics:
        """A frozen snapshot; safe from any thread (it takes no lock of the consumer)."""
        counts, session = self._counts, self._session
        connection = session.connection
        last_frame = session.last_frame
        executor = self._executor
        return ConsumerStatistics(
            received=counts["received"],
            succeeded=counts["succeeded"],
            failed=counts["failed"],
            retried=counts["retried"],
            dead_lettered=counts["dead_lettered"],
            requeued=counts["requeued"],
            stale_dropped=counts["stale_dropped"],
            reconnects=counts["reconnects"],
            inflight=len(self._settlement.inflight),
            connected=bool(connection is not None and connection.is_open),
            prefetch=self.prefetch,
            workers=self.workers,
            acked=counts["acked"],
            consuming=session.consumer_tag is not None,
            cancelled_by_broker=session.cancelled_by_broker,
            stopping=self._stop.is_set(),
            last_frame_age=None if last_frame is None else max(0.0, time.monotonic() - last_frame),
            recycled=self._final_recycled if executor is None else _recycled(executor),
        )

    def __enter__(self) -> Consumer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<runtime.amqp.Consumer queue={self.queue!r} handler={self._handler_ref!r} "
            f"workers={self.workers} prefetch={self.prefetch}>"
        )

    # ------------------------------------------------------------------ helpers (any thread)
    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("runtime.amqp: %s received; draining", signal.Signals(signum).name)
        self.request_stop()

    def _shutdown_executor(self) -> None:
        executor = self._executor
        if executor is not None and self._owns_executor:
            # Handlers still running after the drain deadline had their messages requeued;
            # their results are dropped. Waiting here lets them return (nothing can pre-empt them).
            self._final_recycled = _recycled(executor)
            self._executor = None
            executor.shutdown(wait=True, cancel_futures=True)
            self._final_recycled = _recycled(executor)

    # ------------------------------------------------------------------ I/O thread
    def _io_main(self) -> None:
        error: BaseException | None = None
        try:
            if self._session.run():
                self._log_stats(final=True)
        except BaseException as exc:
            error = self._error = exc
            if self._ready.is_set():
                log.error("runtime.amqp: consumer of %r stopped: %s", self.queue, exc)
        finally:
            self._session.discard(error)
            self._ops.close()
            self._ready.set()

    def _on_delivery(self, tag: int, message: Message) -> None:
        """Hand one delivery to the workers (or back to the broker while stopping)."""
        settlement = self._settlement
        if self._stop.is_set():
            settlement.requeue(tag, message)
            return
        executor = self._executor
        try:
            assert executor is not None
            future = executor.submit(invoke, self._handler_ref, message)
        except Exception as exc:
            log.error("runtime.amqp: cannot hand a message to the workers (%s); requeued", exc)
            settlement.requeue(tag, message)
            if isinstance(exc, Error):
                self._error = exc
                self._stop.set()
            return
        settlement.track(tag, message, future)

    def _maybe_log_stats(self) -> None:
        if self._stats_interval and time.monotonic() - self._last_stats[0] >= self._stats_interval:
            self._log_stats()

    def _log_stats(self, final: bool = False) -> None:
        now = time.monotonic()
        since, done_before = self._last_stats
        counts = self._counts
        done = counts["succeeded"] + counts["failed"]
        elapsed = max(now - since, 1e-9)
        self._last_stats = (now, done)
        if not (self._stats_interval or final):
            return
        log.info(
            "runtime.amqp: %s %s: %d handled in %.1fs (%.0f msg/s); total ok=%d failed=%d retried=%d "
            "dead=%d requeued=%d reconnects=%d inflight=%d",
            self.queue,
            "final" if final else "throughput",
            done - done_before,
            elapsed,
            (done - done_before) / elapsed,
            counts["succeeded"],
            counts["failed"],
            counts["retried"],
            counts["dead_lettered"],
            counts["requeued"],
            counts["reconnects"],
            len(self._settlement.inflight),
        )
